#!/usr/bin/env python3
"""Decoding stage speed: the recipe's decoding stage (run.sh stage 9) before and after, side by side.

Both ways decode the same test set in both tasks with the same model and
beam, through the launcher as run.sh calls it (process start-up included):

* ``per_task``: as the decoding stage did before, one process per task, one utterance at
  a time, joint CTC/attention for both tasks (``--ctc_tasks asr st_fra``);
* ``one_process``: as it does now, one process for both tasks, batched beam
  search (``--batch_size``) over utterances sorted by length, CTC only for ASR.

Prints one JSON object: wall seconds of each (median of ``--repeats``,
interleaved), the speed-up, and the real-time factor (decoding seconds per
second of test audio, both tasks counted).

    python bench/bench_decode.py --exp egs2/smoe_asr_st/s2t1/exp/train_smoe_encdec_tiny \\
        --data egs2/smoe_asr_st/s2t1/data/test_wb > bench/results/decode_cpu.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf


def decode(exp: Path, data: Path, model: str, out: Path, tasks, extra) -> float:
    cmd = [sys.executable, "-m", "espnet_smoe.bin.s2t_inference", "--ngpu", "0",
           "--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / model),
           "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
           "--data_path_and_name_and_type", f"{data / 'utt2bw'},bandwidth,text",
           "--lang_sym", "eng", "--output_dir", str(out), "--task_sym", *tasks, *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, required=True, help="experiment dir with config.yaml")
    parser.add_argument("--model", default="valid.acc.ave.pth")
    parser.add_argument("--data", type=Path, required=True, help="test data dir (wav.scp, utt2bw)")
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    lines = (args.data / "wav.scp").read_text(encoding="utf-8").splitlines()
    seconds = {line.split()[0]: sf.info(line.split(maxsplit=1)[1].strip()).duration for line in lines}
    audio = sum(seconds.values())
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    # ESPnet streams each data file in its own order, so the length-sorted
    # order (as stage 9's split_keys.py --sort_by_duration writes it) is a copy
    # of the files, not a key file
    sorted_data = work / "data"
    sorted_data.mkdir()
    order = sorted(seconds, key=seconds.get)
    for name in ("wav.scp", "utt2bw"):
        rows = dict(line.split(maxsplit=1) for line in (args.data / name).read_text(encoding="utf-8").splitlines())
        (sorted_data / name).write_text("".join(f"{k} {rows[k]}\n" for k in order), encoding="utf-8")
    common = ["--beam_size", str(args.beam_size), "--ctc_weight", "0.3"]
    ways = {
        "per_task": lambda r: sum(
            decode(args.exp, sorted_data, args.model, work / f"old{r}_{t}", [t],
                   common + ["--batch_size", "1", "--ctc_tasks", "asr", "st_fra"])
            for t in ("asr", "st_fra")),
        "one_process": lambda r: decode(args.exp, sorted_data, args.model, work / f"new{r}", ["asr", "st_fra"],
                                        common + ["--batch_size", str(args.batch_size)]),
    }
    times = {name: [] for name in ways}
    for r in range(args.repeats):
        for name, way in ways.items():
            times[name].append(way(r))
    wall = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "what": "decoding stage (run.sh stage 9) of one test set, both tasks, process start-up included",
        "exp": str(args.exp), "model": args.model, "data": str(args.data), "utterances": len(seconds),
        "audio_seconds": round(audio, 1), "beam_size": args.beam_size, "batch_size": args.batch_size,
        "machine": platform.machine(), "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "speedup": round(wall["per_task"] / wall["one_process"], 2),
        "rtf": {k: round(v / (2 * audio), 3) for k, v in wall.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
