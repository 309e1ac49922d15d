#!/usr/bin/env python3
"""Training throughput of the tiny configs: what each choice in the default config buys.

One training step (forward, backward, AdamW) of the S2T model built from a
recipe YAML, on a synthetic length-sorted batch of real-looking sizes
(``--batch`` waveforms of ``--seconds`` each, 4 target tokens per second), for
a ladder of variants measured side by side in this process (calls interleaved,
median of ``--repeats``). Prints one JSON object: seconds per step,
audio-seconds per second of training, and the speed-up of each variant over
the first one.

Ladder (each step keeps the previous ones):

1. ``owsm_tokens``: OWSM's token layout, 1501 timestamp tokens in the list
   (1813 tokens for 300 pieces), 80 mel bins, 10 ms hop, 6x subsampling;
2. ``two_timestamps``: only ``<0.00> <30.00>`` (314 tokens);
3. ``mel40``: 40 instead of 80 mel bins (the subsampling convolutions run on
   half the frequency axis);
4. ``hop20_conv2d4_600pieces``: 20 ms hop and 4x convolutional subsampling
   (80 ms encoder frames instead of 60 ms), 600 sentencepiece pieces;
5. ``shared_encoder_pass``: the ASR and ST rows of a recording encoded once
   (``model_conf.share_encoder_passes``), as the default config does;
6. ``bf16``: (5) under CPU bf16 autocast; on CPUs without native bf16 it is
   slower, and ``amp_choice`` says which to use.

The batch holds each recording twice, as an ASR and an ST sample, the way
length-sorted batching of the recipe's data puts them together.

    python bench/bench_train_speed.py > bench/results/train_speed_cpu.json
"""

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import yaml

import espnet_smoe  # noqa: F401  (registers the S-MoE classes)
from espnet_smoe.batch import HOST_ROWS, describe_rows
from espnet_smoe.task import SMoES2TTask

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "egs2/smoe_asr_st/s2t1/conf/tuning/train_smoe_encdec_tiny.yaml"
SPECIALS = ["<asr>", "<st_fra>", "<nb>", "<wb>", "<na>", "<notimestamps>", "<eng>"]

# variant -> (config overrides, all timestamp tokens?, bf16 autocast?); the "after" variants
# use the recipe's 600 pieces (run.sh --vocab_size), the "before" ones its former 300
_BEFORE = {"frontend_conf": {"n_mels": 80, "hop_length": 160}, "encoder_conf": {"input_layer": "conv2d6"},
           "model_conf": {"share_encoder_passes": False}}
_AFTER = {"frontend_conf": {"n_mels": 40, "hop_length": 320}, "encoder_conf": {"input_layer": "conv2d"}}
LADDER = {
    "owsm_tokens": (_BEFORE, True, False),
    "two_timestamps": (_BEFORE, False, False),
    "mel40": ({**_BEFORE, "frontend_conf": {"n_mels": 40, "hop_length": 160}}, False, False),
    "hop20_conv2d4_600pieces": ({**_AFTER, "model_conf": {"share_encoder_passes": False}}, False, False),
    "shared_encoder_pass": ({**_AFTER, "model_conf": {"share_encoder_passes": True}}, False, False),
    "bf16": ({**_AFTER, "model_conf": {"share_encoder_passes": True}}, False, True),
}


def token_list(pieces: int, all_timestamps: bool):
    stamps = [f"<{i * 0.02:.2f}>" for i in range(1501)] if all_timestamps else ["<0.00>", "<30.00>"]
    return ["<blank>", "<unk>"] + SPECIALS + stamps + [f"p{i}" for i in range(pieces)] + ["<sos>", "<eos>", "<sop>"]


def build(config: Path, overrides: dict, tokens):
    conf = yaml.safe_load(config.read_text())
    for key, value in overrides.items():
        conf[key] = {**(conf.get(key) or {}), **value}
    path = Path("/tmp") / f"bench_train_speed_{abs(hash(json.dumps(overrides, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(conf))
    args = SMoES2TTask.get_parser().parse_args(["--config", str(path), "--token_list", "none", "--normalize", "none"])
    args.token_list = tokens
    return SMoES2TTask.build_model(args).train()


def make_batch(tokens, batch: int, seconds: float):
    t = tokens.index
    first_piece = tokens.index("p0")
    n_tok = max(2, int(4 * seconds))
    text = torch.randint(first_piece, len(tokens) - 3, (batch, 3 + n_tok))
    text[:, 0], text[:, 2] = t("<eng>"), t("<notimestamps>")
    text[:, 1] = torch.tensor([t("<asr>") if i % 2 else t("<st_fra>") for i in range(batch)])
    samples = int(16000 * seconds)
    audio = (torch.randn(batch // 2, samples) * 0.1).repeat_interleave(2, dim=0)  # rows 2i, 2i+1: one recording
    bandwidth = [t("<nb>") if (i // 2) % 2 else t("<wb>") for i in range(batch)]
    out = {
        "speech": audio, "speech_lengths": torch.full((batch,), samples),
        "text": text, "text_lengths": torch.full((batch,), text.size(1)),
        "text_prev": torch.full((batch, 1), t("<na>")), "text_prev_lengths": torch.ones(batch, dtype=torch.long),
        "text_ctc": text[:, 3:].clone(), "text_ctc_lengths": torch.full((batch,), n_tok),
        "bandwidth": torch.tensor([[b] for b in bandwidth]), "bandwidth_lengths": torch.ones(batch, dtype=torch.long),
    }
    out[HOST_ROWS] = describe_rows(out)  # what the data loader's collate adds
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.5, help="per utterance (tts_ui median: 2.7 s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = {}
    for name, (overrides, all_stamps, amp) in LADDER.items():
        torch.manual_seed(0)
        tokens = token_list(600 if name not in ("owsm_tokens", "two_timestamps", "mel40") else 300, all_stamps)
        model = build(args.config, copy.deepcopy(overrides), tokens)
        batch = make_batch(tokens, args.batch, args.seconds)
        optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, batch=batch, optim=optim, amp=amp):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = model(**batch)[0]
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)

        steps[name] = (step, len(tokens), sum(p.numel() for p in model.parameters()))
    for step, _, _ in steps.values():  # warm-up
        step()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, (step, _, _) in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    audio = args.batch * args.seconds
    first = next(iter(steps))
    base = statistics.median(times[first])
    result = {}
    for name, (_, n_tokens, n_params) in steps.items():
        sec = statistics.median(times[name])
        result[name] = {"tokens": n_tokens, "params": n_params, "seconds_per_step": round(sec, 4),
                        "audio_seconds_per_second": round(audio / sec, 1), "speedup": round(base / sec, 2)}
    fp32 = statistics.median(times["shared_encoder_pass"])
    bf16 = statistics.median(times["bf16"])
    print(json.dumps({
        "what": "tiny S-MoE enc+dec training step, side by side",
        "config": str(args.config.relative_to(REPO)) if args.config.is_relative_to(REPO) else str(args.config),
        "machine": platform.machine(), "cpu_bf16_flags": _bf16_flags(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "batch": args.batch, "seconds_per_utterance": args.seconds,
        "variants": result,
        "amp_choice": "bf16" if bf16 < fp32 else "fp32",
        "amp_note": f"bf16 autocast step {bf16 / fp32:.2f}x the fp32 one on this CPU",
    }, indent=2))


def _bf16_flags() -> list:
    """The CPU's native bf16 instruction sets (none: autocast emulates bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16")})


if __name__ == "__main__":
    main()
