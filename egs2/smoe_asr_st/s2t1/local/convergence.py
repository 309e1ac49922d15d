#!/usr/bin/env python3
"""Where a training converges: dev curves against steps and test scores along the way.

For each run it reads the per-epoch dev statistics of ESPnet's reporter (``checkpoint.pth``,
or the ``reporter_stats.json`` of a kept run) and the test scores of the checkpoints ESPnet's
``--nbest_averaging_interval N`` saves every N epochs (``valid.acc.ave.till<E>epoch.pth``: the
model a run stopped at epoch E would have given), each decoded and scored into
``<exp>/decode_<...>till<E>epoch/results.json`` (``local/score.py --out_dir`` that folder).
The run's own final scores (``<exp>/results.json``) are the point at its last epoch.

It reports, per run, the dev loss minimum and the first step whose dev loss is within
``--tolerance`` (default 2 %) of it: where more training stops paying on the dev set.

    python -m local.convergence --run "hard sharing=exp/tts_ui_hard_sharing_conv_seed1" \\
        --run "S-MoE enc+dec=exp/tts_ui_smoe_encdec_conv_seed1" --out results/convergence_tts_ui
    # -> results/convergence_tts_ui.json and .png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from espnet_smoe.reporter_stats import read_reporter_stats

DEV_KEYS = ("loss", "acc", "cer_ctc")  # ESPnet's [valid] statistics that the curves show
TILL_EPOCH = re.compile(r"till(\d+)epoch$")


def dev_curve(exp_dir: Path) -> dict:
    """``{"epoch": [...], "steps": [...], key: [...]}`` of the run's dev statistics, epochs in order.

    Raises:
        KeyError: If an epoch lacks one of DEV_KEYS (names the run, the epoch and what it has).
    """
    curve = {"epoch": [], "steps": [], **{k: [] for k in DEV_KEYS}}
    for epoch, parts in read_reporter_stats(exp_dir).items():
        valid = parts.get("valid", {})
        missing = [k for k in DEV_KEYS if k not in valid]
        if missing:
            raise KeyError(f"{exp_dir}: epoch {epoch} has no valid {missing}; it has {sorted(valid)}")
        curve["epoch"].append(epoch)
        curve["steps"].append(int(parts["train"]["total_count"]))
        for k in DEV_KEYS:
            curve[k].append(float(valid[k]))
    return curve


def converged_at(steps: list[int], losses: list[float], tolerance: float) -> dict:
    """The dev loss minimum and the first step within ``tolerance`` (a fraction) of it.

    Args:
        steps: cumulative optimizer steps per epoch, ``(E,)``.
        losses: dev loss per epoch, ``(E,)``; positive.
        tolerance: 0.02 for "within 2 %".
    """
    if not losses or len(steps) != len(losses):
        raise ValueError(f"expected one dev loss per epoch, got {len(losses)} losses for {len(steps)} epochs")
    best = min(range(len(losses)), key=losses.__getitem__)
    first = next(i for i, loss in enumerate(losses) if loss <= losses[best] * (1 + tolerance))
    return {"best_loss": losses[best], "best_step": steps[best], "within_tolerance_step": steps[first],
            "within_tolerance_loss": losses[first], "last_step": steps[-1]}


def _scores(results_json: Path) -> list[dict]:
    keep = ("test_set", "bandwidth", "task", "wer", "cer", "bleu", "chrf")
    entries = json.loads(results_json.read_text(encoding="utf-8"))["results"]
    return [{k: e[k] for k in keep if k in e} for e in entries]


def test_points(exp_dir: Path, curve: dict) -> list[dict]:
    """Test scores of the run's decoded checkpoints, each at the step of its epoch, steps in order."""
    steps_of = dict(zip(curve["epoch"], curve["steps"]))
    points = []
    for results in sorted(exp_dir.glob("decode_*/results.json")):
        match = TILL_EPOCH.search(results.parent.name)
        if not match:
            continue
        epoch = int(match.group(1))
        if epoch not in steps_of:
            raise ValueError(f"{results}: epoch {epoch} is not in the run's reporter (epochs "
                             f"{curve['epoch'][0]}-{curve['epoch'][-1]})")
        points.append({"checkpoint": results.parent.name, "steps": steps_of[epoch], "scores": _scores(results)})
    final = exp_dir / "results.json"
    if final.is_file():
        points.append({"checkpoint": "final", "steps": curve["steps"][-1], "scores": _scores(final)})
    return sorted(points, key=lambda p: p["steps"])


def summarise(runs: dict[str, Path], tolerance: float) -> dict:
    """``{name: {"dev": curve, "converged": ..., "test": [...]}}`` for every run."""
    out = {}
    for name, exp_dir in runs.items():
        curve = dev_curve(exp_dir)
        out[name] = {"exp": str(exp_dir), "dev": curve,
                     "converged": converged_at(curve["steps"], curve["loss"], tolerance),
                     "test": test_points(exp_dir, curve)}
    return out


def plot(summary: dict, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test_keys = sorted({(s["test_set"], m) for run in summary.values() for p in run["test"]
                        for s in p["scores"] for m in ("wer", "cer", "chrf") if m in s})
    panels = len(DEV_KEYS) + len(test_keys)
    ncols = 3  # dev statistics on the first row, then one row per test set (WER, CER, chrF)
    nrows = -(-panels // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    axes = [list(grid.flat)]
    for ax in axes[0][panels:]:
        ax.set_visible(False)
    for ax, key in zip(axes[0], DEV_KEYS):
        for name, run in summary.items():
            ax.plot(run["dev"]["steps"], run["dev"][key], marker=".", label=name)
            if key == "loss":
                ax.axvline(run["converged"]["within_tolerance_step"], ls=":", lw=0.8, color="grey")
        ax.set_title(f"dev {key}", fontsize=9)
    for ax, (test_set, metric) in zip(axes[0][len(DEV_KEYS):], test_keys):
        for name, run in summary.items():
            xs, ys = [], []
            for p in run["test"]:
                for s in p["scores"]:
                    if s["test_set"] == test_set and metric in s:
                        xs.append(p["steps"])
                        ys.append(s[metric])
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(f"{test_set} {metric.upper()}", fontsize=9)
    for ax in axes[0][:panels]:
        ax.set_xlabel("optimizer steps", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=EXP_DIR",
                        help="a run folder (or a kept run's folder with reporter_stats.json)")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .png written")
    parser.add_argument("--tolerance", type=float, default=0.02, help="fraction above the best dev loss")
    parser.add_argument("--title", default="dev statistics and test scores against optimizer steps")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, sep, exp_dir = spec.partition("=")
        if not sep or not Path(exp_dir).is_dir():
            parser.error(f"--run {spec!r}: expected NAME=EXP_DIR with an existing folder")
        runs[name] = Path(exp_dir)
    summary = summarise(runs, args.tolerance)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot(summary, args.out.with_suffix(".png"), args.title)
    for name, run in summary.items():
        c = run["converged"]
        print(f"{name}: dev loss best {c['best_loss']:.2f} at step {c['best_step']}, within "
              f"{100 * args.tolerance:g} % from step {c['within_tolerance_step']} (last step {c['last_step']})")


if __name__ == "__main__":
    main()
