#!/usr/bin/env python3
"""S-MoE vs dense: speed of the FFN layer and of one training step.

Prints one JSON object. Every ratio compares runs measured side by side in
this process (interleaved, median of the repeats), never across runs.

(a) layer: forward+backward of SMoEFeedForward (2 experts, half the rows on
    each, routed from host ints as the model routes it, and from a device
    tensor: one host sync) vs ESPnet's PositionwiseFeedForward of the same
    size, and the naive "run every expert on every row, then mask" for
    reference.
(b) train_step: forward+backward+AdamW step of the S2T model with S-MoE in
    encoder and decoder vs the same model with dense FFNs (the recipe's tiny
    configs, or --config_dir for others), on a synthetic mixed batch.

    python bench/bench_smoe.py                       # CPU fp32
    python bench/bench_smoe.py --device cuda --dtype bfloat16
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

import espnet_smoe  # noqa: F401  (registers the S-MoE classes)
from espnet_smoe.batch import describe_rows
from espnet_smoe.smoe_feed_forward import ExpertRows, SMoEFeedForward

REPO = Path(__file__).resolve().parents[1]
TUNING = REPO / "egs2/smoe_asr_st/s2t1/conf/tuning"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, repeats: int, device: str, warmup: int = 3) -> dict:
    """Median seconds per call of each function, calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def naive_every_expert(block: SMoEFeedForward, x: torch.Tensor, expert: torch.Tensor):
    """Reference: every expert on every row, keep each row's own output."""
    out = torch.zeros_like(x)
    for e in range(block.num_experts):
        keep = (expert == e).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        out = out + keep * block._expert_forward(x, e)
    return out


def bench_layer(args, dtype) -> dict:
    B, T, D, H, E = args.batch, args.length, args.dim, args.hidden, 2
    dense = PositionwiseFeedForward(D, H, 0.0, torch.nn.ReLU()).to(args.device, dtype)
    smoe = SMoEFeedForward(D, H, E, 0.0, torch.nn.ReLU()).to(args.device, dtype)
    x = torch.randn(B, T, D, device=args.device, dtype=dtype, requires_grad=True)
    expert = torch.arange(B, device=args.device) % E  # half the rows on each expert
    experts = expert.tolist()  # as the model knows them: on the host

    def step(fn):
        def run():
            fn().float().sum().backward()
        return run

    times = interleaved(
        {
            "dense": step(lambda: dense(x)),
            "smoe": step(lambda: smoe(x, ExpertRows.from_list(experts, E, args.device))),
            "smoe_device_routing": step(lambda: smoe(x, expert)),
            "naive_mask": step(lambda: naive_every_expert(smoe, x, expert)),
        },
        args.repeats,
        args.device,
    )
    return {
        "shape": {"B": B, "T": T, "D": D, "H": H, "experts": E},
        "seconds": times,
        "ratio_smoe_vs_dense": times["smoe"] / times["dense"],
        "ratio_naive_vs_dense": times["naive_mask"] / times["dense"],
        "target_ratio": 1.10 if args.device == "cpu" else 1.05,
    }


def build_model(config: Path, vocab: int, input_size: int, device: str, dtype):
    """Build an S2T model from a recipe YAML with a synthetic token list."""
    import yaml

    from espnet_smoe.task import SMoES2TTask

    conf = yaml.safe_load(config.read_text())
    specials = ["<na>", "<nb>", "<wb>", "<asr>", "<st_fra>", "<eng>", "<notimestamps>"]
    times = [f"<{i * 0.02:.2f}>" for i in range(1501)]
    words = [f"w{i}" for i in range(vocab)]
    token_list = ["<blank>", "<unk>"] + words + specials + times + ["<sos>", "<eos>", "<sop>"]
    parser = SMoES2TTask.get_parser()
    args = parser.parse_args(
        ["--config", str(config), "--token_list", "dummy", "--input_size", str(input_size),
         "--normalize", "none", "--specaug", "none"]
    )
    args.token_list = token_list
    args.model_conf = conf.get("model_conf", {})
    model = SMoES2TTask.build_model(args).to(device, dtype)
    return model, token_list


def bench_train_step(args, dtype) -> dict:
    smoe_conf = Path(args.config_dir) / "train_smoe_encdec_tiny.yaml"
    dense_conf = Path(args.config_dir) / "train_hard_sharing_tiny.yaml"
    torch.manual_seed(0)
    smoe, tokens = build_model(smoe_conf, 300, 80, args.device, dtype)
    dense, _ = build_model(dense_conf, 300, 80, args.device, dtype)
    t = tokens.index
    B, frames, L = args.batch, args.frames, 24
    tasks = [t("<asr>"), t("<st_fra>")]
    bws = [t("<nb>"), t("<wb>")]
    text = torch.randint(2, 302, (B, L))
    text[:, 0], text[:, 2] = t("<eng>"), t("<notimestamps>")
    text[:, 1] = torch.tensor([tasks[i % 2] for i in range(B)])
    batch = {
        "speech": torch.randn(B, frames, 80, dtype=dtype),
        "speech_lengths": torch.full((B,), frames),
        "text": text,
        "text_lengths": torch.full((B,), L),
        "text_prev": torch.full((B, 1), t("<na>")),
        "text_prev_lengths": torch.ones(B, dtype=torch.long),
        "text_ctc": torch.randint(2, 302, (B, L // 2)),
        "text_ctc_lengths": torch.full((B,), L // 2),
        # bandwidth crosses task so every expert of both parts gets rows
        "bandwidth": torch.tensor([[bws[(i // 2) % 2]] for i in range(B)]),
        "bandwidth_lengths": torch.ones(B, dtype=torch.long),
    }
    host_rows = describe_rows(batch)  # what the data loader's collate adds
    batch = {k: v.to(args.device) for k, v in batch.items()}
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (smoe, dense)}

    def step(model):
        def run():
            loss = model(**{k: v.clone() for k, v in batch.items()}, host_rows=host_rows)[0]
            loss.backward()
            opts[model].step()
            opts[model].zero_grad(set_to_none=True)
        return run

    times = interleaved({"dense": step(dense), "smoe": step(smoe)}, args.repeats, args.device)
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("dense", dense), ("smoe", smoe))}
    return {
        "configs": {"smoe": str(smoe_conf.relative_to(REPO)), "dense": str(dense_conf.relative_to(REPO))},
        "batch": {"B": B, "frames": frames, "tokens": L},
        "params": n_params,
        "seconds": times,
        "ratio_smoe_vs_dense": times["smoe"] / times["dense"],
        "target_ratio": 1.05,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=300, help="feature frames per utterance (step bench)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--config_dir", default=str(TUNING))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    result = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "layer": bench_layer(args, dtype),
        "train_step": bench_train_step(args, dtype),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
