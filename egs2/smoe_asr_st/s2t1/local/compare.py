#!/usr/bin/env python3
"""Compares scored experiments: one table row and one bar group per variant.

Usage::

    python -m local.compare --exp_dirs exp/a exp/b \\
        --names "hard sharing" "S-MoE enc" --out_dir exp/compare
    python -m local.compare --variants_file conf/variants.tsv --out_dir exp/compare

Each experiment folder holds the ``results.json`` written by local/score.py
and, optionally, a ``model_info.json`` with ``total_params`` and
``active_params`` (shown as '-' when absent). Names default to the
experiment tag. A variants file has one ``name<TAB>exp_dir`` per line ('#'
starts a comment).

The first variant is the baseline: the last column is the relative WER change
against it, averaged over bandwidths. Writes ``compare.md``, ``compare.json``
and ``compare.png`` (one bar-chart panel per metric) into ``--out_dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Metric:
    """A score found in results.json entries.

    Attributes:
        key: Field name in a results.json entry.
        kind: Which task carries it: ``asr`` or ``st``.
        label: Column label prefix.
        unit: Unit suffix for labels ('' for none).
        lower_is_better: Direction, for the chart's axis label.
    """

    key: str
    kind: str
    label: str
    unit: str
    lower_is_better: bool

    def column_label(self, bandwidth: str) -> str:
        """``ASR WER NB (%)``: the label of this metric's column on one bandwidth."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label} {bandwidth.upper()}{unit}"


# Adding a column family (e.g. chrF) is a matter of naming it in --metrics.
METRICS = {
    "wer": Metric("wer", "asr", "ASR WER", "%", True),
    "cer": Metric("cer", "asr", "ASR CER", "%", True),
    "bleu": Metric("bleu", "st", "ST BLEU", "", False),
    "chrf": Metric("chrf", "st", "ST chrF", "", False),
}

# Known bandwidths first, in this order; any other value follows.
BANDWIDTH_ORDER = ("nb", "wb")


class CompareError(Exception):
    """Missing or ambiguous comparison inputs."""


@dataclass
class Variant:
    """One experiment to compare."""

    name: str
    exp_dir: Path
    results: list[dict]
    model_info: dict | None


@dataclass(frozen=True)
class Column:
    """One metric on one bandwidth."""

    metric: Metric
    bandwidth: str

    @property
    def key(self) -> str:
        return f"{self.metric.key}_{self.bandwidth}"

    @property
    def label(self) -> str:
        return self.metric.column_label(self.bandwidth)


def read_variants_file(path: Path) -> list[tuple[str, Path]]:
    """Reads ``name<TAB>exp_dir`` lines.

    Raises:
        CompareError: If the file is missing or a line has not two fields.
    """
    if not path.is_file():
        raise CompareError(f"{path} not found")
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise CompareError(
                f"{path}:{lineno}: expected 'name<TAB>exp_dir', got {line!r}"
            )
        pairs.append((fields[0].strip(), Path(fields[1].strip())))
    if not pairs:
        raise CompareError(f"{path}: no variants listed")
    return pairs


def load_variant(name: str | None, exp_dir: Path) -> Variant:
    """Loads results.json (required) and model_info.json (optional).

    Args:
        name: Display name, or None to use the experiment tag.
        exp_dir: The experiment folder.

    Raises:
        CompareError: If results.json is missing or malformed.
    """
    results_path = exp_dir / "results.json"
    if not results_path.is_file():
        raise CompareError(
            f"{results_path} not found (run local/score.py for {exp_dir} first)"
        )
    try:
        report = json.loads(results_path.read_text(encoding="utf-8"))
        results = list(report["results"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CompareError(
            f"{results_path}: not a local/score.py results file ({err})"
        ) from None
    info_path = exp_dir / "model_info.json"
    model_info = None
    if info_path.is_file():
        try:
            model_info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CompareError(f"{info_path}: invalid JSON ({err})") from None
    tag = report.get("tag") or exp_dir.resolve().name
    return Variant(name or tag, exp_dir, results, model_info)


def pick_entry(
    variant: Variant, task: str, bandwidth: str, test_sets: list[str] | None
) -> dict | None:
    """Finds the results entry of one task on one bandwidth.

    Args:
        variant: The experiment.
        task: Task name in results.json (e.g. ``asr``).
        bandwidth: ``nb`` or ``wb``.
        test_sets: If given, only entries of these test sets are considered.

    Returns:
        The entry, or None if the experiment has none.

    Raises:
        CompareError: If several test sets qualify.
    """
    entries = [
        r
        for r in variant.results
        if r.get("task") == task
        and r.get("bandwidth") == bandwidth
        and (test_sets is None or r.get("test_set") in test_sets)
    ]
    if len(entries) > 1:
        names = ", ".join(sorted(r.get("test_set", "?") for r in entries))
        raise CompareError(
            f"{variant.exp_dir}/results.json: several {bandwidth} test sets for "
            f"{task} ({names}); choose one per bandwidth with --test_sets"
        )
    return entries[0] if entries else None


def bandwidths_of(variants: list[Variant], test_sets: list[str] | None) -> list[str]:
    """Bandwidths present in any variant, known ones first."""
    found = {
        r["bandwidth"]
        for v in variants
        for r in v.results
        if "bandwidth" in r and (test_sets is None or r.get("test_set") in test_sets)
    }
    known = [bw for bw in BANDWIDTH_ORDER if bw in found]
    return known + sorted(found - set(known))


def relative_change(
    values: list[float | None], baseline: list[float | None]
) -> float | None:
    """Mean over bandwidths of ``(value - baseline) / baseline``, in percent.

    Bandwidths where either side is missing, or the baseline is 0, are left
    out; None if none is left. Each bandwidth weighs the same, whatever the
    size of its test set.
    """
    changes = [
        100.0 * (v - b) / b
        for v, b in zip(values, baseline)
        if v is not None and b is not None and b != 0
    ]
    return sum(changes) / len(changes) if changes else None


def build_table(
    variants: list[Variant],
    metrics: list[Metric],
    tasks: dict[str, str],
    test_sets: list[str] | None,
) -> dict:
    """Collects every value of the comparison.

    Args:
        variants: Experiments; the first is the baseline.
        metrics: Metric families, one column per bandwidth each.
        tasks: Task name per metric kind (``asr``/``st``).
        test_sets: Optional test-set filter.

    Returns:
        The content of compare.json.
    """
    bandwidths = bandwidths_of(variants, test_sets)
    columns = [Column(m, bw) for m in metrics for bw in bandwidths]
    rows = []
    for variant in variants:
        values, sources = {}, {}
        for col in columns:
            task = tasks[col.metric.kind]
            entry = pick_entry(variant, task, col.bandwidth, test_sets)
            value = None if entry is None else entry.get(col.metric.key)
            values[col.key] = None if value is None else float(value)
            sources[col.key] = None if entry is None else entry.get("test_set")
        info = variant.model_info or {}
        rows.append(
            {
                "name": variant.name,
                "exp_dir": str(variant.exp_dir),
                "values": values,
                "test_sets": sources,
                "total_params": info.get("total_params"),
                "active_params": info.get("active_params"),
            }
        )
    # The relative change is about WER, whether or not WER columns are shown.
    base = [_wer(variants[0], tasks["asr"], bw, test_sets) for bw in bandwidths]
    for row, variant in zip(rows, variants):
        mine = [_wer(variant, tasks["asr"], bw, test_sets) for bw in bandwidths]
        row["rel_wer_change"] = relative_change(mine, base)
    return {
        "baseline": rows[0]["name"],
        "bandwidths": bandwidths,
        "tasks": tasks,
        "columns": [
            {
                "key": c.key,
                "label": c.label,
                "metric": c.metric.key,
                "bandwidth": c.bandwidth,
            }
            for c in columns
        ],
        "rel_wer_change": (
            "mean over bandwidths of 100 * (WER - WER_baseline) / WER_baseline; "
            "negative is better"
        ),
        "variants": rows,
    }


def _wer(
    variant: Variant, task: str, bandwidth: str, test_sets: list[str] | None
) -> float | None:
    entry = pick_entry(variant, task, bandwidth, test_sets)
    return None if entry is None or entry.get("wer") is None else float(entry["wer"])


def _fmt_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_params(value) -> str:
    """Parameter count in millions (``5.07M``); '-' when unknown."""
    return "-" if value is None else f"{value / 1e6:.2f}M"


def _fmt_change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def table_markdown(table: dict) -> str:
    """Renders compare.json content as compare.md."""
    header = ["variant"] + [c["label"] for c in table["columns"]]
    header += ["total params", "active params", "rel. WER vs baseline"]
    lines = [
        "<!-- Generated by local/compare.py. -->",
        "# Comparison",
        "",
        f"Baseline: **{table['baseline']}** (first row).",
        "",
        "|" + "|".join(header) + "|",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for i, row in enumerate(table["variants"]):
        cells = [row["name"]]
        cells += [_fmt_number(row["values"][c["key"]]) for c in table["columns"]]
        cells += [fmt_params(row["total_params"]), fmt_params(row["active_params"])]
        cells.append("baseline" if i == 0 else _fmt_change(row["rel_wer_change"]))
        lines.append("|" + "|".join(cells) + "|")
    lines += [
        "",
        f"- rel. WER: {table['rel_wer_change']}.",
        "- '-': no result (or no model_info.json) for that experiment.",
        "- Test sets and experiment folders:",
    ]
    for row in table["variants"]:
        used = sorted({t for t in row["test_sets"].values() if t})
        used_text = ", ".join(used) or "none"
        lines.append(f"  - {row['name']}: `{row['exp_dir']}` ({used_text})")
    return "\n".join(lines) + "\n"


def plot(table: dict, metrics: list[Metric], path: Path) -> None:
    """Draws one grouped bar chart per metric: bandwidth groups, variant bars.

    Args:
        table: compare.json content.
        metrics: Metrics to draw, one panel each.
        path: Output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")  # No display on the training machines.
    import matplotlib.pyplot as plt

    bandwidths = table["bandwidths"]
    variants = table["variants"]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False
    )
    width = 0.8 / max(len(variants), 1)
    for ax, metric in zip(axes[0], metrics):
        for i, row in enumerate(variants):
            heights = [row["values"].get(f"{metric.key}_{bw}") for bw in bandwidths]
            heights = [math.nan if h is None else h for h in heights]
            # Centre the group of bars on the bandwidth's tick.
            offset = (i - (len(variants) - 1) / 2) * width
            xs = [b + offset for b in range(len(bandwidths))]
            bars = ax.bar(xs, heights, width, label=row["name"])
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        direction = "lower is better" if metric.lower_is_better else "higher is better"
        unit = f" ({metric.unit})" if metric.unit else ""
        ax.set_title(f"{metric.label}{unit}, {direction}")
        ax.set_xticks(range(len(bandwidths)), [bw.upper() for bw in bandwidths])
        ax.margins(y=0.15)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--exp_dirs", type=Path, nargs="+", help="experiment folders")
    source.add_argument(
        "--variants_file", type=Path, help="file of 'name<TAB>exp_dir' lines"
    )
    parser.add_argument(
        "--names", nargs="+", help="display names, one per --exp_dirs (default: tag)"
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--test_sets",
        nargs="+",
        help="test sets to use when a bandwidth has several (e.g. test_nb test_wb)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["wer", "bleu"],
        choices=sorted(METRICS),
        help="metric families, one column per bandwidth each",
    )
    parser.add_argument("--asr_task", default="asr", help="task name of ASR results")
    parser.add_argument("--st_task", default="st_fra", help="task name of ST results")
    args = parser.parse_args(argv)

    try:
        if args.variants_file is not None:
            if args.names:
                raise CompareError("--names goes with --exp_dirs, not --variants_file")
            pairs = read_variants_file(args.variants_file)
        else:
            names = args.names or [None] * len(args.exp_dirs)
            if len(names) != len(args.exp_dirs):
                raise CompareError(
                    f"{len(args.names)} --names for {len(args.exp_dirs)} --exp_dirs"
                )
            pairs = list(zip(names, args.exp_dirs))
        variants = [load_variant(name, exp_dir) for name, exp_dir in pairs]
        all_names = [v.name for v in variants]
        duplicates = sorted({n for n in all_names if all_names.count(n) > 1})
        if duplicates:
            raise CompareError(f"duplicate variant names: {', '.join(duplicates)}")
        test_sets = None
        if args.test_sets:
            # run.sh may pass the list as one quoted string.
            test_sets = [t for item in args.test_sets for t in item.split()]
        metrics = [METRICS[m] for m in args.metrics]
        tasks = {"asr": args.asr_task, "st": args.st_task}
        table = build_table(variants, metrics, tasks, test_sets)
    except CompareError as err:
        print(f"compare.py: error: {err}", file=sys.stderr)
        return 1

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "compare.json").write_text(
        json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    markdown = table_markdown(table)
    (args.out_dir / "compare.md").write_text(markdown, encoding="utf-8")
    plot(table, metrics, args.out_dir / "compare.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
