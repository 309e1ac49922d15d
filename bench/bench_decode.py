#!/usr/bin/env python3
"""Decoding stage speed: the recipe's decoding stage (run.sh stage 12), three ways side by side.

Each way decodes the same test sets in both tasks with the same model and beam,
through the launcher as run.sh calls it (process start-up included), in one job:

* ``per_task``: one process per test set and task, one
  utterance at a time, joint CTC/attention for both tasks (``--ctc_tasks asr st_fra``);
* ``per_set``: one process per test set for both tasks, batched beam search
  (``--batch_size``) over utterances sorted by length, CTC only for ASR;
* ``all_sets``: what the stage does, ``per_set`` with one process for all test sets
  (ESPnet's import and the model load once), in a venv with compiled bytecode
  (``tools/setup_venv.sh``); ``all_sets_no_bytecode`` without it.

``per_task``, ``per_set`` and ``all_sets_no_bytecode`` compile every imported module from
source, as a venv without bytecode does: uv installs no bytecode by default, and where
``PYTHONDONTWRITEBYTECODE=1`` is set each process spends ~15 s more on importing ESPnet.

Prints one JSON object: wall seconds of each (median of ``--repeats``,
interleaved), the speed-ups over ``per_task``, and the real-time factor
(decoding seconds per second of test audio, both tasks counted).

    python bench/bench_decode.py --exp egs2/smoe_asr_st/s2t1/exp/train_smoe_encdec_tiny \
        --data egs2/smoe_asr_st/s2t1/data/test_nb --data egs2/smoe_asr_st/s2t1/data/test_wb \
        > bench/results/decode_cpu.json
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


def decode(exp: Path, data: Path, model: str, out: Path, tasks, extra, bytecode: bool = True) -> float:
    """Wall seconds of one decoding process. ``bytecode=False``: Python finds no compiled modules (an empty
    ``PYTHONPYCACHEPREFIX``) and compiles every module it imports from source, as in a venv made without
    ``--compile-bytecode`` on a machine with ``PYTHONDONTWRITEBYTECODE=1``."""
    cmd = [sys.executable, "-m", "espnet_smoe.bin.s2t_inference", "--ngpu", "0",
           "--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / model),
           "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
           "--data_path_and_name_and_type", f"{data / 'utt2bw'},bandwidth,text",
           "--lang_sym", "eng", "--output_dir", str(out), "--task_sym", *tasks, *extra]
    start = time.perf_counter()
    env = dict(os.environ)
    if not bytecode:
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="no_pyc_"))
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, required=True, help="experiment dir with config.yaml")
    parser.add_argument("--model", default="valid.acc.ave.pth")
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="test data dir (wav.scp, utt2bw); repeat it for several sets")
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    seconds = {}
    for data in args.data:
        for line in (data / "wav.scp").read_text(encoding="utf-8").splitlines():
            key, path = line.split(maxsplit=1)
            seconds[key] = sf.info(path.strip()).duration
    audio = sum(seconds.values())
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))

    def sorted_copy(name: str, sets: list[Path]) -> Path:
        """wav.scp and utt2bw of ``sets`` in one folder, shortest first (as stage 12's split_keys.py writes
        them: ESPnet streams each data file in its own order, so the order is a copy, not a key file)."""
        rows = {"wav.scp": {}, "utt2bw": {}}
        for data in sets:
            for file, table in rows.items():
                table.update(line.split(maxsplit=1) for line in (data / file).read_text(encoding="utf-8").splitlines())
        out = work / name
        out.mkdir()
        order = sorted(rows["wav.scp"], key=seconds.get)
        for file, table in rows.items():
            (out / file).write_text("".join(f"{k} {table[k]}\n" for k in order), encoding="utf-8")
        return out

    one_set = [sorted_copy(data.name, [data]) for data in args.data]
    all_sets = sorted_copy("all_sets", args.data)
    common = ["--beam_size", str(args.beam_size), "--ctc_weight", "0.3"]
    batched = common + ["--batch_size", str(args.batch_size)]
    ways = {
        "per_task": lambda r: sum(
            decode(args.exp, data, args.model, work / f"per_task{r}_{data.name}_{t}", [t],
                   common + ["--batch_size", "1", "--ctc_tasks", "asr", "st_fra"], bytecode=False)
            for data in one_set for t in ("asr", "st_fra")),
        "per_set": lambda r: sum(
            decode(args.exp, data, args.model, work / f"per_set{r}_{data.name}", ["asr", "st_fra"], batched,
                   bytecode=False)
            for data in one_set),
        "all_sets_no_bytecode": lambda r: decode(args.exp, all_sets, args.model, work / f"all_sets_src{r}",
                                                 ["asr", "st_fra"], batched, bytecode=False),
        "all_sets": lambda r: decode(args.exp, all_sets, args.model, work / f"all_sets{r}", ["asr", "st_fra"], batched),
    }
    times = {name: [] for name in ways}
    for r in range(args.repeats):
        for name, way in ways.items():
            times[name].append(way(r))
    wall = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "what": "decoding stage (run.sh stage 12): the test sets in both tasks, one job, process start-up included",
        "exp": str(args.exp), "model": args.model, "data": [str(d) for d in args.data], "utterances": len(seconds),
        "audio_seconds": round(audio, 1), "beam_size": args.beam_size, "batch_size": args.batch_size,
        "machine": platform.machine(), "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        "speedup_over_per_task": {k: round(wall["per_task"] / v, 2) for k, v in wall.items()},
        "rtf": {k: round(v / (2 * audio), 3) for k, v in wall.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
