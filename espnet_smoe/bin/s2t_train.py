#!/usr/bin/env python3
"""ESPnet's S2T training with the S-MoE classes registered.

Takes every flag of ``espnet2.bin.s2t_train`` plus the ``bandwidth`` data
name, e.g. ``--train_data_path_and_name_and_type dump/train/utt2bw,bandwidth,text``.

With ``--resume true`` a run killed at any point restarts from its last
finished epoch (ESPnet's ``checkpoint.pth``). A checkpoint cut short (the disk
filled up, or the process died while writing it) is reported here, naming the
file, before ESPnet would fail on it with a bare unpickling error.
"""

import argparse
from pathlib import Path

import torch

import espnet_smoe  # noqa: F401  (registers smoe_conformer, smoe_transformer, smoe, smoe_s2t)
from espnet_smoe.bin import reset_root_logging
from espnet_smoe.task import SMoES2TTask


def get_parser():
    return SMoES2TTask.get_parser()


def check_resume_checkpoint(cmd=None) -> None:
    """Raise a clear error when ``--resume`` would load an unreadable ``checkpoint.pth``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--output_dir", default=None)
    pre.add_argument("--resume", default="false")
    pre.add_argument("--collect_stats", default="false")
    args, _ = pre.parse_known_args(cmd)
    if args.output_dir is None or str(args.resume).lower() != "true" or str(args.collect_stats).lower() == "true":
        return
    checkpoint = Path(args.output_dir) / "checkpoint.pth"
    if not checkpoint.exists():
        return
    try:
        # mmap: checks the archive without reading every tensor (ESPnet loads it again right after)
        states = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        missing = {"model", "reporter", "optimizers", "schedulers"} - set(states)
    except Exception as exc:
        raise RuntimeError(
            f"{checkpoint}: cannot be read ({type(exc).__name__}: {exc}); it is probably truncated. "
            f"Move it away to restart from scratch, or copy a complete one over it."
        ) from exc
    if missing:
        raise RuntimeError(f"{checkpoint}: not an ESPnet training checkpoint (no {sorted(missing)})")


def main(cmd=None):
    check_resume_checkpoint(cmd)
    reset_root_logging()
    SMoES2TTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
