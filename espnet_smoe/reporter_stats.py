"""Per-epoch statistics of a training run, read from ESPnet's saved reporter.

ESPnet's trainer keeps every epoch's summary in ``<exp>/checkpoint.pth``
(``["reporter"]["stats"][epoch]["train"|"valid"][key]``): the mean of each reported
value over the epoch's iterations (``loss``, ``acc``, ``train_time`` in seconds per
iteration...), the epoch's duration ``time`` and the cumulative iteration count
``total_count``. The bench's learning curves and the recipe's result table read them
here instead of parsing ``train.log``. A run folder kept without its checkpoint (the
recipe keeps finished table runs in git) carries the same numbers in ``reporter_stats.json``,
this module's own output.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

STATS_JSON = "reporter_stats.json"  # this module's output, read when a run has no checkpoint.pth


def _number(value) -> float:
    # ESPnet stores durations as {"__timedelta_seconds__": s}
    if isinstance(value, dict) and "__timedelta_seconds__" in value:
        return float(value["__timedelta_seconds__"])
    return float(value)


def read_reporter_stats(exp_dir: Path) -> dict[int, dict[str, dict[str, float]]]:
    """``{epoch: {"train"|"valid": {key: value}}}`` of a run, epochs in order, durations in seconds.

    Read from ``checkpoint.pth``, or from ``reporter_stats.json`` when the run has no checkpoint.

    Raises:
        FileNotFoundError: If the run has neither (no finished epoch).
        KeyError: If the checkpoint holds no reporter state.
    """
    path, kept = Path(exp_dir) / "checkpoint.pth", Path(exp_dir) / STATS_JSON
    if not path.is_file() and kept.is_file():
        stats = json.loads(kept.read_text(encoding="utf-8"))
        return {int(epoch): stats[epoch] for epoch in sorted(stats, key=int)}
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (has {exp_dir} finished an epoch?)")
    # weights_only=False: the reporter state holds plain Python objects, not only tensors
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "reporter" not in state:
        raise KeyError(f"{path}: no 'reporter' state; expected an ESPnet trainer checkpoint")
    stats = state["reporter"]["stats"]
    return {
        int(epoch): {part: {k: _number(v) for k, v in values.items()} for part, values in stats[epoch].items()}
        for epoch in sorted(stats)
    }


def reporter_stats_json(exp_dir: Path) -> str:
    """The run's statistics as the JSON text that ``reporter_stats.json`` holds."""
    return json.dumps(read_reporter_stats(exp_dir), indent=1) + "\n"


if __name__ == "__main__":  # python -m espnet_smoe.reporter_stats <exp_dir> [--out stats.json]
    import argparse

    parser = argparse.ArgumentParser(description="Per-epoch reporter statistics of a run as JSON")
    parser.add_argument("exp_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: standard output")
    args = parser.parse_args()
    text = reporter_stats_json(args.exp_dir)
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
