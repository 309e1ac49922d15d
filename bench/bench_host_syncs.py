#!/usr/bin/env python3
"""Host syncs and step time of a training step: the plugin's path beside the reference path.

A training step on a GPU costs what its arithmetic costs only if the host never waits for the device.
This measures, in one process, on one synthetic length-sorted batch per size (each recording as an
ASR and an ST row, both bandwidths, ``--per_length`` recordings of each length, padding; the
collate's ``host_rows`` attached as the data loader attaches them):

1. ``syncs``: host-synchronising operations in one forward+backward
   (:class:`espnet_smoe.host_syncs.HostSyncCounter`), for ``after`` (the plugin's path) and
   ``before`` (``bench/reference_path.py``: ESPnet's per-row loss preparation, routing read from
   device tensors, twin rows found by a fingerprint on the device, a bincount per S-MoE block);
   also ESPnet's own dense ``ESPnetS2TModel`` (``espnet_dense``, the hard-sharing config);
2. ``step``: seconds per training step (forward, backward, AdamW; on CUDA bf16 autocast without
   GradScaler and the fused AdamW) and audio-seconds per second, for the same variants, calls
   interleaved, median of ``--repeats``;
3. ``side_by_side`` (``--processes``, by default 1 and 2 on CUDA): N processes training the same
   batch at once on the device, per variant: seconds per step of each, audio-seconds per second
   of all;
4. ``targets`` (CUDA): the 128-row tiny step against the 0.55 s measured on an H100 (>= 5x), the
   31 M-parameter one against 0.36 s (>= 2x), S-MoE enc+dec / ESPnet dense <= 1.05.

    nice python bench/bench_host_syncs.py --threads 1 > bench/results/host_syncs_cpu.json
    python bench/bench_host_syncs.py --device cuda > bench/results/host_syncs_cuda.json

Rehearsal of the CUDA run's every part at toy size on a CPU:

    python bench/bench_host_syncs.py --device cpu --threads 1 --families tiny 31m --rows 4 8 \
        --seconds 0.3 --repeats 1 --processes 1 2 --side_by_side_rows 8 --worker_seconds 2
"""

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_sharing import cpu_name, length_sorted_batch  # noqa: E402
from bench_train_speed import REPO, token_list  # noqa: E402
from reference_path import reference_path  # noqa: E402

from espnet_smoe.host_syncs import HostSyncCounter  # noqa: E402
from espnet_smoe.task import SMoES2TTask  # noqa: E402

CONF = REPO / "egs2/smoe_asr_st/s2t1/conf"
FAMILIES = {  # hard sharing's config also builds ESPnet's dense model
    "tiny": {"hard_sharing": CONF / "tuning/train_hard_sharing_tiny.yaml",
             "smoe_encdec": CONF / "tuning/train_smoe_encdec_tiny.yaml"},
    "31m": {"hard_sharing": CONF / "train_hard_sharing.yaml", "smoe_encdec": CONF / "train_smoe_encdec.yaml"},
}
# variant -> (config, model: the plugin's or ESPnet's, reference path?)
VARIANTS = {
    "espnet_dense": ("hard_sharing", "espnet", False),
    "hard_sharing_before": ("hard_sharing", "smoe", True),
    "hard_sharing_after": ("hard_sharing", "smoe", False),
    "smoe_encdec_before": ("smoe_encdec", "smoe", True),
    "smoe_encdec_after": ("smoe_encdec", "smoe", False),
}
REPORTED = {"tiny": 0.55, "31m": 0.36}  # s per 128-row step on the H100 (RESULTS.md, GPU runs)
PLUGIN_MODEL_CONF = ("mask_guiding_targets", "moe_aux_loss_weight", "share_encoder_passes")


def build(config: Path, model: str, tokens, device: str) -> torch.nn.Module:
    """The config's model (``model: smoe``), or ESPnet's own S2T model with its parts."""
    conf = yaml.safe_load(config.read_text())
    if model == "espnet":
        conf["model"] = "espnet"
        conf["model_conf"] = {k: v for k, v in conf.get("model_conf", {}).items() if k not in PLUGIN_MODEL_CONF}
    path = Path("/tmp") / f"bench_host_syncs_{model}_{config.name}"
    path.write_text(yaml.safe_dump(conf))
    args = SMoES2TTask.get_parser().parse_args(["--config", str(path), "--token_list", "none", "--normalize", "none"])
    args.token_list = tokens
    return SMoES2TTask.build_model(args).to(device).train()


def make_step(model, batch: dict, device: str, reference: bool, optim: torch.optim.Optimizer):
    """One training step, timed; bf16 autocast on CUDA (no GradScaler: bf16 needs none)."""
    cuda = device == "cuda"

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with reference_path() if reference else contextlib.nullcontext():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
                loss = model(**batch)[0]
            loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def optimizer(model, device: str) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda" or None)


def count_syncs(model, batch: dict, reference: bool) -> dict:
    with reference_path() if reference else contextlib.nullcontext(), HostSyncCounter() as syncs:
        model(**batch)[0].backward()
    model.zero_grad(set_to_none=True)
    return {"total": syncs.total, **dict(sorted(syncs.counts.items()))}


def audio_seconds(batch: dict) -> float:
    return float(batch["speech_lengths"].sum()) / 16000


def family_runs(a, family: str, tokens) -> tuple:
    """Sync counts and step times of every variant at every size, for one family of configs."""
    models = {}
    for name, (config, model, _) in VARIANTS.items():
        key = (config, model)
        if key not in models:
            torch.manual_seed(0)
            built = build(FAMILIES[family][config], model, tokens, a.device)
            models[key] = (built, optimizer(built, a.device))
    syncs, steps = {}, {}
    for rows in a.rows:
        batch = length_sorted_batch(tokens, rows, a.seconds, a.per_length, a.device)
        syncs[str(rows)] = {}
        for name, (config, model, reference) in VARIANTS.items():
            module, optim = models[(config, model)]
            syncs[str(rows)][name] = count_syncs(module, batch, reference)
            steps[(rows, name)] = make_step(module, batch, a.device, reference, optim)
        steps[(rows, "audio")] = audio_seconds(batch)
    timed = [key for key in steps if key[1] != "audio"]
    for key in timed:  # warm-up: kernels, allocator, autotuning
        steps[key]()
    times = {key: [] for key in timed}
    for _ in range(a.repeats):
        for key in timed:
            times[key].append(steps[key]())
    step_out = {}
    for rows in a.rows:
        med = {name: statistics.median(times[(rows, name)]) for name in VARIANTS}
        audio = steps[(rows, "audio")]
        out = {name: {"s_per_step": round(s, 4), "audio_s_per_s": round(audio / s, 1)} for name, s in med.items()}
        out["speedup_hard_sharing"] = round(med["hard_sharing_before"] / med["hard_sharing_after"], 2)
        out["speedup_smoe_encdec"] = round(med["smoe_encdec_before"] / med["smoe_encdec_after"], 2)
        out["ratio_smoe_encdec_vs_espnet_dense"] = round(med["smoe_encdec_after"] / med["espnet_dense"], 3)
        out["ratio_hard_sharing_vs_espnet_dense"] = round(med["hard_sharing_after"] / med["espnet_dense"], 3)
        step_out[str(rows)] = out
    return syncs, step_out


def worker(a) -> None:
    """Train one variant on one batch for ``--worker_seconds``; print its median step (JSON)."""
    tokens = token_list(600, False)
    config, model, reference = VARIANTS[a.variant]
    torch.manual_seed(0)
    module = build(FAMILIES[a.families[0]][config], model, tokens, a.device)
    batch = length_sorted_batch(tokens, a.rows[0], a.seconds, a.per_length, a.device)
    step = make_step(module, batch, a.device, reference, optimizer(module, a.device))
    for _ in range(2):
        step()
    times, end = [], time.perf_counter() + a.worker_seconds
    while time.perf_counter() < end or not times:
        times.append(step())
    print(json.dumps({"steps": len(times), "s_per_step": statistics.median(times), "audio_s": audio_seconds(batch)}))


def side_by_side(a) -> dict:
    """N workers at once on the device, per variant and N."""
    out = {}
    for variant in a.side_by_side_variants:
        out[variant] = {}
        for n in a.processes:
            cmd = [sys.executable, __file__, "--worker", "--variant", variant, "--device", a.device,
                   "--families", a.side_by_side_family, "--rows", str(a.side_by_side_rows),
                   "--seconds", str(a.seconds), "--per_length", str(a.per_length),
                   "--worker_seconds", str(a.worker_seconds), "--threads", str(a.threads)]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
            results = []
            for p in procs:
                text, _ = p.communicate()
                if p.returncode:
                    raise SystemExit(f"bench_host_syncs: worker {variant} exited with {p.returncode}")
                results.append(json.loads(text.strip().splitlines()[-1]))
            per_step = statistics.mean(r["s_per_step"] for r in results)
            out[variant][str(n)] = {
                "s_per_step_per_process": round(per_step, 4),
                "audio_s_per_s_all_processes": round(sum(r["audio_s"] / r["s_per_step"] for r in results), 1),
            }
    return out


def targets(step: dict) -> dict:
    """The issue's GPU targets, from the 128-row steps of this run."""
    out = {}
    for family, reported in REPORTED.items():
        row = step.get(family, {}).get("128")
        if row is None:
            continue
        for variant in ("hard_sharing_after", "smoe_encdec_after"):
            speedup = reported / row[variant]["s_per_step"]
            out[f"{family}_{variant}_speedup_vs_{reported}s"] = round(speedup, 2)
        need = 5.0 if family == "tiny" else 2.0
        out[f"{family}_meets_{need:g}x"] = all(out[f"{family}_{v}_speedup_vs_{reported}s"] >= need
                                               for v in ("hard_sharing_after", "smoe_encdec_after"))
        out[f"{family}_smoe_vs_dense_meets_1.05"] = row["ratio_smoe_encdec_vs_espnet_dense"] <= 1.05
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=None,
                   help="configs: tiny (CPU default), tiny and 31m (CUDA default)")
    p.add_argument("--rows", type=int, nargs="+", default=None,
                   help="rows per batch (default: 16 64 128 on CPU, 16 32 64 128 256 on CUDA)")
    p.add_argument("--seconds", type=float, default=2.7, help="longest recording (tts_ui median: 2.7 s)")
    p.add_argument("--per_length", type=int, default=6, help="recordings of each length")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per variant (CPU 3, CUDA 10)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--processes", type=int, nargs="*", default=None, help="side by side (CUDA default: 1 2)")
    p.add_argument("--side_by_side_family", default="tiny", choices=sorted(FAMILIES))
    p.add_argument("--side_by_side_rows", type=int, default=128)
    p.add_argument("--side_by_side_variants", nargs="+", choices=list(VARIANTS),
                   default=["espnet_dense", "hard_sharing_after", "smoe_encdec_before", "smoe_encdec_after"])
    p.add_argument("--worker_seconds", type=float, default=8.0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="smoe_encdec_after", help=argparse.SUPPRESS)
    a = p.parse_args()
    cuda = a.device == "cuda"
    a.families = a.families or (["tiny", "31m"] if cuda else ["tiny"])
    a.rows = a.rows or ([16, 32, 64, 128, 256] if cuda else [16, 64, 128])
    a.repeats = a.repeats or (10 if cuda else 3)
    a.processes = [1, 2] if a.processes is None and cuda else (a.processes or [])
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.worker:
        worker(a)
        return
    tokens = token_list(600, False)
    result = {
        "what": "host syncs and seconds per training step: the plugin's path (after) beside the reference "
                "path (before, bench/reference_path.py) and ESPnet's dense ESPnetS2TModel, same batches",
        "device": torch.cuda.get_device_name() if cuda else cpu_name(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "amp": "bf16 autocast, no GradScaler" if cuda else "fp32",
        "optimizer": "AdamW fused" if cuda else "AdamW",
        "seconds_per_recording": a.seconds, "recordings_per_length": a.per_length, "repeats": a.repeats,
        "configs": {f: {k: str(v.relative_to(REPO)) for k, v in FAMILIES[f].items()} for f in a.families},
        "syncs": {}, "step": {},
    }
    for family in a.families:
        result["syncs"][family], result["step"][family] = family_runs(a, family, tokens)
    if a.processes:
        result["side_by_side"] = {"family": a.side_by_side_family, "rows": a.side_by_side_rows,
                                  "processes": side_by_side(a)}
    if cuda:
        result["targets"] = targets(result["step"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
