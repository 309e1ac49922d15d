#!/usr/bin/env python3
"""Learning curves per wall-clock minute, read from ESPnet's saved reporter.

ESPnet's trainer keeps every epoch's statistics in ``<exp>/checkpoint.pth``
(``reporter.stats[epoch]["train"|"valid"][key]``, with the epoch's duration
under ``time``). This plots a valid statistic of several runs against the
training wall-clock time (train + valid time summed over epochs), so runs of
different step cost compare by what a CPU-minute buys.

    python bench/learning_curves.py --run before=exp/a --run after=exp/b \\
        --keys acc cer_ctc --out bench/results/curves   # -> curves.json, curves.png

A run may also be given as the JSON that ``python -m espnet_smoe.reporter_stats``
wrote (a run whose folder is gone); ``--x steps`` plots against optimizer steps
instead, for runs that shared the machine with other work.
"""

import argparse
import json
from pathlib import Path

from espnet_smoe.reporter_stats import read_reporter_stats


def read_curve(exp_dir: Path, keys) -> dict:
    """{"minutes": [...], "steps": [...], "epoch": [...], key: [...]} of the valid statistics of one run
    (exp_dir: a run folder, or a reporter_stats JSON file)."""
    if exp_dir.suffix == ".json":
        stats = {int(e): parts for e, parts in json.loads(exp_dir.read_text()).items()}
    else:
        stats = read_reporter_stats(exp_dir)
    curve = {"minutes": [], "steps": [], "epoch": [], **{k: [] for k in keys}}
    elapsed = 0.0
    for epoch, parts in sorted(stats.items()):
        elapsed += sum(parts[part]["time"] for part in ("train", "valid") if part in parts)
        curve["minutes"].append(round(elapsed / 60, 3))
        curve["steps"].append(int(parts["train"]["total_count"]))
        curve["epoch"].append(epoch)
        for k in keys:
            if k not in parts.get("valid", {}):
                raise KeyError(f"{exp_dir}/checkpoint.pth: epoch {epoch} has no valid {k}; "
                               f"it has {sorted(parts.get('valid', {}))}")
            curve[k].append(parts["valid"][k])
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=EXP_DIR")
    parser.add_argument("--keys", nargs="+", default=["acc", "cer_ctc"], help="valid statistics")
    parser.add_argument("--out", type=Path, required=True, help="prefix of .json and .png")
    parser.add_argument("--title", default="valid statistics per training minute")
    parser.add_argument("--x", choices=["minutes", "steps"], default="minutes", help="the x axis")
    args = parser.parse_args()
    runs = {}
    for spec in args.run:
        name, sep, exp_dir = spec.partition("=")
        if not sep:
            parser.error(f"--run {spec!r}: expected NAME=EXP_DIR")
        runs[name] = read_curve(Path(exp_dir), args.keys)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], args.keys):
        for name, curve in runs.items():
            ax.plot(curve[args.x], curve[key], marker=".", label=name)
        ax.set_xlabel("training wall-clock (min)" if args.x == "minutes" else "optimizer steps")
        ax.set_ylabel(f"valid {key}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    rows = -(-len(labels) // 3)  # legend below the panels, three runs per line
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.suptitle(args.title)
    fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
