#!/usr/bin/env python3
"""Step time of a tiny config on one GPU: batch size, ways of finding twin rows, runs side by side.

Why: the session-10 GPU table (``local/gpu_table.py``, four tiny-config trainings side by side
on one H100, 128-row batches) ran at 0.55 s per step, 0.51 s of it in the forward pass and
0.03 s in the backward one; at 16 rows (two runs) the forward had taken 0.06 s. One suspect
was finding the rows that hold the same recording (encoded once) on the device: pair by pair,
one device round trip per pair (~260 per 128-row length-sorted tts_ui batch), or by a
fingerprint of the audio checked in one comparison (a few round trips). The plugin takes them
from the data loader instead (``host_rows``: the collate compares the audio in host memory).
This measures, in one run:

1. ``ways``: one training step (forward, backward, AdamW; bf16 autocast on CUDA; synchronised)
   per batch size, with the twin rows from the host (the plugin's way), found on the device by
   fingerprint or pair by pair (``bench/reference_path.py``'s ``shared_rows`` and
   :func:`pairwise_shared_rows`, handed to the model as host rows), and not shared at all,
   interleaved, median of ``--repeats``; plus the time of finding the twin rows alone
   (``*_grouping_s``);
2. ``side_by_side``: seconds per step of each of N processes training the same batch at once on
   the device (``--processes``), i.e. what running several trainings on one card costs, with the
   twin rows from the host and found pair by pair (each pair's round trip waits for the other
   processes' work on the card).

The batch holds ``--per_length`` recordings of each length, each as an ASR and an ST row.
``bench/bench_host_syncs.py`` counts every host sync of a step and times the whole path.

    python bench/bench_gpu_sharing.py --device cuda > bench/results/gpu_sharing_h100.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_speed import REPO, build, make_batch, token_list  # noqa: E402
from reference_path import shared_rows as fingerprint_shared_rows  # noqa: E402

from espnet_smoe.batch import HOST_ROWS, describe_rows  # noqa: E402

DEFAULT_CONFIG = REPO / "egs2/smoe_asr_st/s2t1/conf/tuning/train_smoe_encdec_tiny.yaml"
WAYS = ("host", "fingerprint", "pairwise", "not_shared")


def pairwise_shared_rows(speech, lengths, bandwidth=None):
    """Every row against every earlier distinct one, one device round trip per pair."""
    lens = lengths.tolist()
    bws = bandwidth.tolist() if bandwidth is not None else [None] * len(lens)
    unique, inverse = [], []
    for row, n in enumerate(lens):
        for pos, first in enumerate(unique):
            if lens[first] == n and bws[first] == bws[row] and torch.equal(speech[first, :n], speech[row, :n]):
                inverse.append(pos)
                break
        else:
            unique.append(row)
            inverse.append(len(unique) - 1)
    if len(unique) == len(lens):
        return None
    return torch.tensor(unique, device=speech.device), torch.tensor(inverse, device=speech.device)


def length_sorted_batch(tokens, rows: int, seconds: float, per_length: int, device: str) -> dict:
    """``make_batch``, then recordings in groups of ``per_length`` of one length (steps of 5 ms),
    with the host rows the data loader's collate adds (made on the host, before the copy)."""
    batch = make_batch(tokens, rows, seconds)
    recordings = rows // 2
    lengths = torch.tensor([int(16000 * seconds) - 80 * (r // per_length) for r in range(recordings)])
    lengths = lengths.repeat_interleave(2)  # (Batch,): ASR and ST row of a recording
    inside = torch.arange(batch["speech"].size(1)) < lengths[:, None]
    batch["speech"] = batch["speech"] * inside  # zero padding past each length
    batch["speech_lengths"] = lengths
    batch = {k: v.to(device) for k, v in batch.items() if k != HOST_ROWS}
    batch[HOST_ROWS] = describe_rows({k: v.cpu() for k, v in batch.items()})
    return batch


def host_rows_found_on_device(find, batch: dict) -> dict:
    """The batch's host rows, with the twin rows found on the device by ``find``."""
    found = find(batch["speech"], batch["speech_lengths"], batch["bandwidth"][:, 0])
    rows = dict(batch[HOST_ROWS])
    if found is None:
        rows["audio"] = list(range(batch["speech"].size(0)))
    else:
        unique, inverse = found
        rows["audio"] = unique[inverse].tolist()  # each row's first twin
    return {**batch, HOST_ROWS: rows}


def make_step(model, batch: dict, device: str, way: str = "host"):
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda" or None)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    find = {"fingerprint": fingerprint_shared_rows, "pairwise": pairwise_shared_rows}.get(way)

    def step() -> float:
        sync()
        start = time.perf_counter()
        inputs = host_rows_found_on_device(find, batch) if find is not None else batch
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(**inputs)[0]
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    return step


def ways(a) -> dict:
    """One process: each batch size x each way of finding twin rows, interleaved."""
    tokens = token_list(600, False)
    steps, batches = {}, {}
    for rows in a.batches:
        batch = batches[rows] = length_sorted_batch(tokens, rows, a.seconds, a.per_length, a.device)
        for way in WAYS:
            torch.manual_seed(0)
            model = build(a.config, {"model_conf": {"share_encoder_passes": way != "not_shared"}}, tokens)
            steps[(rows, way)] = make_step(model.to(a.device), batch, a.device, way)
    for step in steps.values():  # warm-up (CUDA kernels, allocator)
        step()
    times = {key: [] for key in steps}
    for _ in range(a.repeats):
        for key, step in steps.items():
            times[key].append(step())
    out = {}
    for rows in a.batches:
        med = {way: statistics.median(times[(rows, way)]) for way in WAYS}
        out[str(rows)] = {
            **{f"{way}_s_per_step": round(s, 4) for way, s in med.items()},
            **grouping_alone(batches[rows], a),
            **{f"host_speedup_over_{way}": round(med[way] / med["host"], 2) for way in WAYS if way != "host"},
        }
    return out


def grouping_alone(batch: dict, a) -> dict:
    """Seconds of finding the twin rows alone on the device, both ways, on the batch's waveforms."""
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    out = {}
    for way, find in (("pairwise", pairwise_shared_rows), ("fingerprint", fingerprint_shared_rows)):
        times = []
        for _ in range(a.repeats + 1):
            sync()
            start = time.perf_counter()
            host_rows_found_on_device(find, batch)
            sync()
            times.append(time.perf_counter() - start)
        out[f"{way}_grouping_s"] = round(statistics.median(times[1:]), 5)
    return out


def worker(a) -> None:
    """Train on one batch for ``--worker_seconds``; print the median step time (JSON)."""
    tokens = token_list(600, False)
    torch.manual_seed(0)
    model = build(a.config, {}, tokens).to(a.device)
    batch = length_sorted_batch(tokens, a.batches[0], a.seconds, a.per_length, a.device)
    step = make_step(model, batch, a.device, a.way)
    for _ in range(3):
        step()
    times, end = [], time.perf_counter() + a.worker_seconds
    while time.perf_counter() < end:
        times.append(step())
    print(json.dumps({"steps": len(times), "s_per_step": statistics.median(times)}))


def side_by_side(a) -> dict:
    """N workers at once on the device, per way of finding twin rows and N: their median step time."""
    return {way: side_by_side_way(a, way) for way in ("host", "pairwise")}


def side_by_side_way(a, way: str) -> dict:
    out = {}
    for n in a.processes:
        cmd = [sys.executable, __file__, "--worker", "--way", way, "--device", a.device, "--config", str(a.config),
               "--batches", str(a.side_by_side_batch), "--seconds", str(a.seconds), "--per_length",
               str(a.per_length), "--worker_seconds", str(a.worker_seconds)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        results = []
        for p in procs:
            text, _ = p.communicate()
            if p.returncode:
                raise SystemExit(f"bench_gpu_sharing: worker exited with {p.returncode}")
            results.append(json.loads(text.strip().splitlines()[-1]))
        per_step = statistics.mean(r["s_per_step"] for r in results)
        out[str(n)] = {"s_per_step_per_process": round(per_step, 4),
                       "steps_per_second_all_processes": round(n / per_step, 2)}
    base = out[str(a.processes[0])]["steps_per_second_all_processes"]
    for n in out:
        out[n]["throughput_vs_first"] = round(out[n]["steps_per_second_all_processes"] / base, 2)
    return out


def cpu_name() -> str:
    """The CPU's model name and core count (platform.processor() is empty on Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.machine()
    return f"{model} ({os.cpu_count()} cores)"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64, 128], help="rows per batch")
    p.add_argument("--seconds", type=float, default=2.7, help="longest recording (tts_ui median: 2.7 s)")
    p.add_argument("--per_length", type=int, default=6, help="recordings of each length")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--processes", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--side_by_side_batch", type=int, default=128)
    p.add_argument("--worker_seconds", type=float, default=10.0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--way", default="host", choices=WAYS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    result = {
        "what": "tiny S-MoE training step on one device: ways of finding the rows of one recording, N runs at once",
        "config": str(a.config.relative_to(REPO)) if a.config.is_relative_to(REPO) else str(a.config),
        "device": torch.cuda.get_device_name() if a.device == "cuda" else cpu_name(),
        "torch": torch.__version__, "seconds_per_recording": a.seconds, "recordings_per_length": a.per_length,
        "ways": ways(a),
    }
    if a.processes:
        result["side_by_side_rows"] = a.side_by_side_batch
        result["side_by_side"] = side_by_side(a)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
