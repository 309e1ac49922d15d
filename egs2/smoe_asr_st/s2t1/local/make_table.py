#!/usr/bin/env python3
"""The paper's comparison table over several training seeds (issue #4).

Usage (local/run_table.sh calls it; see there for the training runs)::

    python -m local.make_table --exp_template "exp/tts_ui_{variant}_seed{seed}" \\
        --variants "hard_sharing smoe_enc smoe_dec smoe_encdec dense_wide gated_moe" \\
        --seeds "1 2 3" --out_dir exp/table_tts_ui --command "local/run_table.sh ..."

Every run folder (``--exp_template`` with ``{variant}`` and ``{seed}``) may hold

- ``results.json`` from local/score.py (one entry per test set and task),
- ``model_info.json`` from espnet_smoe.bin.model_info (total/active parameters),
- ``train.log`` from ESPnet, whose ``<N>epoch results: [train] ... train_time=X``
  lines give the training step time (X: seconds per iteration, mean over the
  epoch's iterations) and whose ``[valid] ... acc=Y`` parts give the dev-set
  token accuracy (teacher forced), the checkpoint-selection criterion.

Rows are variants. Test sets are grouped by name without their ``_nb``/``_wb``
suffix (``tts_ui_test_nb`` and ``tts_ui_test_wb`` are the NB and WB columns of
``tts_ui_test``); per test set the columns are ASR WER and ST BLEU/chrF on each
bandwidth, then the best dev accuracy over epochs, total and active parameters
and the step time relative to the baseline (hard sharing). The dev accuracy
still separates variants when a small budget leaves every WER near 100 %.
A cell is the mean over the seeds that have the value, with its spread: the
sample standard deviation (n-1) or the min-max range
(``--spread``); table.json holds both, the count and every seed's value.
A missing file leaves '-' in its cells and a line under "Warnings".

Writes ``table.md``, ``table.json`` and ``table.png`` into ``--out_dir``, each
carrying the command, the machine (CPU model and cores, GPU names) and the git
revision. ``--publish_md/--publish_json/--publish_png`` also put the table into
a RESULTS.md section between ``<!-- table:<name> begin/end -->`` markers
(replaced when present, appended otherwise) and copy the JSON and PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from local.compare import BANDWIDTH_ORDER, METRICS, Metric, fmt_params
from local.score import environment_info

# Display names of the recipe's variants (conf/tuning/train_<variant>_tiny.yaml).
VARIANT_NAMES = {
    "hard_sharing": "hard sharing",
    "smoe_enc": "S-MoE enc",
    "smoe_dec": "S-MoE dec",
    "smoe_encdec": "S-MoE enc+dec",
    "dense_wide": "dense, param.-matched",
    "gated_moe": "gated MoE (top-1)",
}
# Display names of the test-set groups the recipe decodes.
TEST_SET_NAMES = {
    "tts_ui_test": "tts_ui test (held-out voices)",
    "ddtp_test": "DDTP test (tts_ui, out of domain)",
    "test": "Asterisk test (real speech)",
}
SPREADS = {
    "std": "mean ± sample standard deviation over seeds (n-1; none for one seed)",
    "range": "mean (min-max) over seeds",
}
STEP_TIME_NOTE = (
    "mean over epochs of ESPnet's `[train] train_time` (seconds per iteration) in "
    "train.log, averaged over seeds; relative: the variant's mean over the baseline's"
)

EPOCH_LINE = re.compile(r"(\d+)epoch results: \[train\] (.*?)(?:, \[valid\]|$)")
VALID_PART = re.compile(r"(\d+)epoch results: .*?\[valid\] (.*?)(?:, \[\w+\]|$)")
VALID_ACC = re.compile(r"(?:^|, )acc=([0-9.eE+-]+)")
VALID_ACC_NOTE = (
    "dev-set token accuracy of the attention decoder (teacher forced, %), best epoch: "
    "ESPnet's `[valid] acc` in train.log, the checkpoint-selection criterion"
)
TRAIN_TIME = re.compile(r"(?:^|, )train_time=([0-9.eE+-]+)")
TOTAL_COUNT = re.compile(r"(?:^|, )total_count=(\d+)")


class TableError(Exception):
    """Unusable table inputs (bad options, malformed files)."""


@dataclass
class Run:
    """One training run: one variant, one seed."""

    variant: str
    seed: str
    exp_dir: Path
    results: list[dict] | None = None
    model_info: dict | None = None
    step_times: dict[int, float] = field(default_factory=dict)  # epoch -> s/iter
    iterations: int | None = None  # cumulative [train] total_count at the last epoch
    environment: dict | None = None  # results.json "environment"
    valid_accs: dict[int, float] = field(default_factory=dict)  # epoch -> dev acc (0-1)

    @property
    def best_valid_acc(self) -> float | None:
        """Best dev accuracy over the logged epochs, in %."""
        return 100.0 * max(self.valid_accs.values()) if self.valid_accs else None

    @property
    def step_time(self) -> float | None:
        """Mean seconds per training iteration over the logged epochs."""
        if not self.step_times:
            return None
        return statistics.fmean(self.step_times.values())

    @property
    def epochs(self) -> int | None:
        return max(self.step_times) if self.step_times else None


@dataclass(frozen=True)
class Column:
    """One metric of one test-set group on one bandwidth."""

    group: str
    metric: Metric
    bandwidth: str

    @property
    def key(self) -> str:
        return f"{self.group}.{self.metric.key}_{self.bandwidth}"

    @property
    def label(self) -> str:
        return self.metric.column_label(self.bandwidth)


def split_words(items: list[str] | None) -> list[str]:
    """Flattens options given as one quoted string or several words."""
    return [w for item in items or [] for w in item.split()]


def parse_train_log(path: Path) -> tuple[dict[int, float], int | None]:
    """Per-epoch training step times and the last iteration count of a train.log.

    Args:
        path: ESPnet's train.log.

    Returns:
        {epoch: train_time in seconds per iteration}, and the cumulative
        ``[train] total_count`` of the last epoch (None if not logged). A
        resumed run that logged an epoch twice keeps the last line.
    """
    times: dict[int, float] = {}
    count = None
    last_epoch = -1
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = EPOCH_LINE.search(line)
        if not match:
            continue
        epoch, train_part = int(match.group(1)), match.group(2)
        time_match = TRAIN_TIME.search(train_part)
        if time_match:
            times[epoch] = float(time_match.group(1))
        count_match = TOTAL_COUNT.search(train_part)
        if count_match and epoch >= last_epoch:
            count, last_epoch = int(count_match.group(1)), epoch
    return times, count


def parse_valid_accs(path: Path) -> dict[int, float]:
    """Per-epoch dev-set accuracy (0-1) from the ``[valid]`` part of a train.log.

    Args:
        path: ESPnet's train.log.

    Returns:
        {epoch: acc}; a resumed run that logged an epoch twice keeps the last line.
    """
    accs: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = VALID_PART.search(line)
        if match:
            acc = VALID_ACC.search(match.group(2))
            if acc:
                accs[int(match.group(1))] = float(acc.group(1))
    return accs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TableError(f"{path}: invalid JSON ({err})") from None


def load_run(variant: str, seed: str, exp_dir: Path) -> Run:
    """Reads whatever a run folder holds; missing files leave None."""
    run = Run(variant, seed, exp_dir)
    results_path = exp_dir / "results.json"
    if results_path.is_file():
        report = _read_json(results_path)
        if not isinstance(report.get("results"), list):
            raise TableError(f"{results_path}: no 'results' list (not from local/score.py)")
        run.results = report["results"]
        run.environment = report.get("environment")
    info_path = exp_dir / "model_info.json"
    if info_path.is_file():
        run.model_info = _read_json(info_path)
    log_path = exp_dir / "train.log"
    if log_path.is_file():
        run.step_times, run.iterations = parse_train_log(log_path)
        run.valid_accs = parse_valid_accs(log_path)
    return run


def group_of(test_set: str, bandwidth: str) -> str:
    """``tts_ui_test_nb`` on nb -> ``tts_ui_test``; other names stay whole."""
    suffix = f"_{bandwidth}"
    return test_set[: -len(suffix)] if test_set.endswith(suffix) else test_set


def stats(values: list[float | None]) -> dict:
    """Mean, sample std, min, max and count of the values that are not None."""
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(present),
        "std": statistics.stdev(present) if len(present) > 1 else None,
        "min": min(present),
        "max": max(present),
        "n": len(present),
    }


def _find(results: list[dict], test_set: str, task: str) -> dict | None:
    for entry in results:
        if entry.get("test_set") == test_set and entry.get("task") == task:
            return entry
    return None


def collect_test_sets(runs: list[Run], wanted: list[str] | None) -> list[tuple[str, str, str]]:
    """(group, bandwidth, test_set) triples in display order.

    Groups keep the order of first appearance (or of ``wanted``), bandwidths
    are NB then WB.

    Raises:
        TableError: If a test set has several bandwidths in the results.
    """
    seen: dict[str, str] = {}
    for run in runs:
        for entry in run.results or []:
            name, bandwidth = entry.get("test_set"), entry.get("bandwidth")
            if name is None or bandwidth is None or (wanted and name not in wanted):
                continue
            if seen.setdefault(name, bandwidth) != bandwidth:
                raise TableError(f"test set {name} has results on both {seen[name]} and {bandwidth}")
    order = wanted or list(seen)
    triples = [(group_of(t, seen[t]), seen[t], t) for t in order if t in seen]
    groups = list(dict.fromkeys(g for g, _, _ in triples))
    rank = {bw: i for i, bw in enumerate(BANDWIDTH_ORDER)}
    return sorted(triples, key=lambda x: (groups.index(x[0]), rank.get(x[1], len(rank)), x[1]))


def build_table(
    runs: list[Run],
    variants: list[str],
    seeds: list[str],
    names: dict[str, str],
    baseline: str,
    metrics: list[Metric],
    tasks: dict[str, str],
    test_sets: list[str] | None,
) -> dict:
    """Everything table.json holds, but the header.

    Args:
        runs: Every variant x seed run (loaded or not).
        variants: Variant ids, in row order.
        seeds: Seeds, in order.
        names: Display name per variant id.
        baseline: Variant id the step time is relative to.
        metrics: Metric families (wer, bleu, chrf ...).
        tasks: Task name per metric kind (``asr``/``st``).
        test_sets: Optional test-set filter and order.
    """
    triples = collect_test_sets(runs, test_sets)
    test_set_of = {(g, bw): t for g, bw, t in triples}
    groups = list(dict.fromkeys(g for g, _, _ in triples))
    columns = [
        Column(g, m, bw)
        for g in groups
        for m in metrics
        for bw in [b for gg, b, _ in triples if gg == g]
    ]
    by_variant = {v: [r for r in runs if r.variant == v] for v in variants}
    warnings = []
    for run in runs:
        missing = [
            f for f, present in (("results.json", run.results is not None),
                                 ("model_info.json", run.model_info is not None),
                                 ("train.log epoch lines", bool(run.step_times)))
            if not present
        ]  # fmt: skip
        if missing:
            warnings.append(f"{run.exp_dir}: no {', '.join(missing)}")

    num_utts: dict[str, int] = {}
    rows = []
    for variant in variants:
        variant_runs = by_variant[variant]
        cells = {}
        for col in columns:
            test_set = test_set_of[(col.group, col.bandwidth)]
            per_seed = {}
            for run in variant_runs:
                entry = _find(run.results or [], test_set, tasks[col.metric.kind])
                value = None if entry is None else entry.get(col.metric.key)
                per_seed[run.seed] = None if value is None else float(value)
                if entry is not None and "num_utts" in entry:
                    num_utts.setdefault(test_set, entry["num_utts"])
            cells[col.key] = {**stats(list(per_seed.values())), "values": per_seed}
        params = {}
        for key in ("total_params", "active_params"):
            found = {r.model_info.get(key) for r in variant_runs if r.model_info and r.model_info.get(key)}
            if len(found) > 1:
                warnings.append(f"{names[variant]}: {key} differs between seeds ({sorted(found)})")
            params[key] = min(found) if found else None
        step = {r.seed: r.step_time for r in variant_runs}
        valid_acc = {r.seed: r.best_valid_acc for r in variant_runs}
        rows.append(
            {
                "variant": variant,
                "name": names[variant],
                "exp_dirs": {r.seed: str(r.exp_dir) for r in variant_runs},
                "runs_with_results": sum(r.results is not None for r in variant_runs),
                "cells": cells,
                **params,
                "step_time": {**stats(list(step.values())), "values": step},
                "valid_acc": {**stats(list(valid_acc.values())), "values": valid_acc},
                "epochs": {r.seed: r.epochs for r in variant_runs},
                "iterations": {r.seed: r.iterations for r in variant_runs},
            }
        )
    base_row = next(r for r in rows if r["variant"] == baseline)
    base_time = base_row["step_time"]["mean"]
    for row in rows:
        mine = row["step_time"]["mean"]
        row["step_time_ratio"] = None if mine is None or not base_time else mine / base_time

    # Same steps for every run, or the comparison is not fair: say so.
    budgets = {(r.epochs, r.iterations) for r in runs if r.step_times}
    if len(budgets) > 1:
        detail = "; ".join(f"{r.exp_dir}: {r.epochs} epochs, {r.iterations} iterations"
                           for r in runs if r.step_times)
        warnings.append(f"runs trained for different numbers of epochs/iterations ({detail})")

    return {
        "variants": variants,
        "seeds": seeds,
        "baseline": baseline,
        "tasks": tasks,
        "test_sets": [
            {"group": g, "name": TEST_SET_NAMES.get(g, g), "bandwidth": bw, "test_set": t,
             "num_utts": num_utts.get(t)}
            for g, bw, t in triples
        ],  # fmt: skip
        "columns": [
            {"key": c.key, "group": c.group, "metric": c.metric.key, "bandwidth": c.bandwidth,
             "label": c.label, "lower_is_better": c.metric.lower_is_better}
            for c in columns
        ],  # fmt: skip
        "training_budget": sorted([list(b) for b in budgets], key=str),
        "rows": rows,
        "warnings": warnings,
    }


def header_info(runs: list[Run], command: str, note: str | None = None) -> dict:
    """Command, machine, revision and note of this table and of the runs' scoring."""
    env = environment_info()
    scored = {}
    for run in runs:
        if run.environment:
            e = run.environment
            key = (e.get("hostname"), e.get("cpu"), e.get("gpu"), e.get("git_revision"))
            scored.setdefault(key, []).append(str(run.exp_dir))
    return {
        "command": command,
        "note": note,
        "date": env["date"],
        "machine": {"hostname": env["hostname"], "cpu": env["cpu"], "gpu": env["gpu"]},
        "git_revision": env["git_revision"],
        "software": {k: env[k] for k in ("python", "torch", "espnet", "jiwer", "sacrebleu")},
        "runs_scored_on": [
            {"hostname": h, "cpu": c, "gpu": g, "git_revision": rev, "runs": len(dirs)}
            for (h, c, g, rev), dirs in scored.items()
        ],
    }


# ---------------------------------------------------------------- rendering


def fmt_cell(cell: dict, spread: str, digits: int = 2) -> str:
    """``12.34 ± 0.56`` / ``12.34 (11.90-12.80)``; '-' without values."""
    if cell["mean"] is None:
        return "-"
    text = f"{cell['mean']:.{digits}f}"
    if spread == "std" and cell["std"] is not None:
        text += f" ± {cell['std']:.{digits}f}"
    elif spread == "range" and cell["n"] > 1:
        text += f" ({cell['min']:.{digits}f}-{cell['max']:.{digits}f})"
    return text


def fmt_step(row: dict) -> str:
    """``1.08x (0.54 s)``: ratio to the baseline and the mean seconds per iteration."""
    mean, ratio = row["step_time"]["mean"], row["step_time_ratio"]
    if mean is None:
        return "-"
    return ("-" if ratio is None else f"{ratio:.2f}x") + f" ({mean:.3f} s)"


def _code(text: str) -> str:
    """Inline Markdown code that survives backquotes in the text."""
    ticks = "``" if "`" in text else "`"
    return f"{ticks} {text} {ticks}" if ticks == "``" else f"`{text}`"


def table_markdown(table: dict, title: str, spread: str, image: str | None) -> str:
    """Renders table.json content: a header, then one table per test set."""
    head = table["header"]
    machine = head["machine"]
    base_name = next(r["name"] for r in table["rows"] if r["variant"] == table["baseline"])
    n_runs = len(table["variants"]) * len(table["seeds"])
    found = sum(r["runs_with_results"] for r in table["rows"])
    lines = [
        f"## {title}",
        "",
        "<!-- Generated by local/make_table.py (local/run_table.sh); rerun it, do not edit. -->",
        f"- command: {_code(head['command'])}",
        f"- machine: {_code(machine['cpu'])}; GPU: {_code(machine['gpu'])}; host {_code(machine['hostname'])}",
        f"- git revision: {_code(head['git_revision'])}",
        *([f"- note: {head['note']}"] if head.get("note") else []),
        f"- date: {head['date']}; software: "
        + ", ".join(f"{k} {v}" for k, v in head["software"].items()),
        f"- seeds: {' '.join(table['seeds'])} ({found} of {n_runs} runs scored); "
        f"cells: {SPREADS[spread]}; '-': no result",
        f"- step time: {STEP_TIME_NOTE} (**{base_name}**); in brackets: seconds per iteration",
        f"- dev acc: {VALID_ACC_NOTE}",
        "- active params: the parameters one utterance uses (one expert per MoE layer)",
    ]
    budget = table["training_budget"]
    if len(budget) == 1:
        epochs, iterations = budget[0]
        lines.append(f"- training: every run {epochs} epoch(s), {iterations} iterations")
    for other in head["runs_scored_on"]:
        if other["cpu"] != machine["cpu"] or other["git_revision"] != head["git_revision"]:
            lines.append(
                f"- {other['runs']} run(s) scored on {_code(str(other['cpu']))}, GPU "
                f"{_code(str(other['gpu']))}, revision {_code(str(other['git_revision']))}"
            )

    groups = list(dict.fromkeys(c["group"] for c in table["columns"]))
    for group in groups:
        sets = [t for t in table["test_sets"] if t["group"] == group]
        sizes = ", ".join(
            f"{t['test_set']}: {t['num_utts'] if t['num_utts'] is not None else '?'} utts" for t in sets
        )
        cols = [c for c in table["columns"] if c["group"] == group]
        header = ["variant"] + [c["label"] for c in cols]
        header += ["dev acc (%)", "total params", "active params", f"step time vs {base_name}"]
        lines += ["", f"### {sets[0]['name']}", "", f"Test sets: {sizes}.", ""]
        lines.append("|" + "|".join(header) + "|")
        lines.append("|---|" + "---:|" * (len(header) - 1))
        for row in table["rows"]:
            cells = [row["name"]] + [fmt_cell(row["cells"][c["key"]], spread) for c in cols]
            cells += [fmt_cell(row["valid_acc"], spread), fmt_params(row["total_params"]),
                      fmt_params(row["active_params"]), fmt_step(row)]
            lines.append("|" + "|".join(cells) + "|")
    if not groups:
        lines += ["", "No scored results found."]
    if image:
        lines += ["", f"![{title}]({image})"]
    if table["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in table["warnings"]]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, title: str, spread: str) -> None:
    """One row of panels per test set (a panel per metric: bandwidths x variants,
    error bars = the spread), and a last row with parameters and step time."""
    import matplotlib

    matplotlib.use("Agg")  # No display on the training machines.
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(c["group"] for c in table["columns"]))
    metric_keys = list(dict.fromkeys(c["metric"] for c in table["columns"]))
    rows = table["rows"]
    ncols = max(len(metric_keys), 2)
    fig, axes = plt.subplots(
        len(groups) + 1, ncols, figsize=(4.6 * ncols, 3.4 * (len(groups) + 1)), squeeze=False
    )
    width = 0.8 / max(len(rows), 1)
    names = {t["group"]: t["name"] for t in table["test_sets"]}

    def offset(i: int) -> float:
        return (i - (len(rows) - 1) / 2) * width

    def err(cell: dict) -> tuple[float, float]:
        if cell["mean"] is None:
            return (0.0, 0.0)
        if spread == "std":
            s = cell["std"] or 0.0
            return (s, s)
        return (cell["mean"] - cell["min"], cell["max"] - cell["mean"])

    for gi, group in enumerate(groups):
        for mi in range(ncols):
            ax = axes[gi][mi]
            if mi >= len(metric_keys):
                ax.axis("off")
                continue
            cols = [c for c in table["columns"] if c["group"] == group and c["metric"] == metric_keys[mi]]
            for i, row in enumerate(rows):
                cells = [row["cells"][c["key"]] for c in cols]
                heights = [math.nan if c["mean"] is None else c["mean"] for c in cells]
                errs = list(zip(*[err(c) for c in cells])) or [[], []]
                xs = [b + offset(i) for b in range(len(cols))]
                bars = ax.bar(xs, heights, width, yerr=errs, capsize=2, label=row["name"])
                ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
            metric = METRICS[metric_keys[mi]]
            unit = f" ({metric.unit})" if metric.unit else ""
            direction = "lower" if metric.lower_is_better else "higher"
            ax.set_title(f"{names[group]}\n{metric.label}{unit}, {direction} is better", fontsize=9)
            ax.set_xticks(range(len(cols)), [c["bandwidth"].upper() for c in cols])
            ax.margins(y=0.15)
    cost = axes[len(groups)]
    xs = range(len(rows))
    labels = [r["name"] for r in rows]
    for i, key in enumerate(("total_params", "active_params")):
        vals = [math.nan if r[key] is None else r[key] / 1e6 for r in rows]
        cost[0].bar([x + (i - 0.5) * 0.4 for x in xs], vals, 0.4, label=key.replace("_", " "))
    cost[0].set_title("parameters (M)", fontsize=9)
    cost[0].legend(fontsize=7)
    ratios = [math.nan if r["step_time_ratio"] is None else r["step_time_ratio"] for r in rows]
    bars = cost[1].bar(xs, ratios, 0.6)
    cost[1].bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    cost[1].axhline(1.0, color="grey", linewidth=0.8)
    cost[1].margins(y=0.15)
    cost[1].set_title("training step time vs baseline", fontsize=9)
    if ncols > 2:
        accs = [math.nan if r["valid_acc"]["mean"] is None else r["valid_acc"]["mean"] for r in rows]
        acc_errs = list(zip(*[err(r["valid_acc"]) for r in rows])) or [[], []]
        bars = cost[2].bar(xs, accs, 0.6, yerr=acc_errs, capsize=2)
        cost[2].bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        cost[2].margins(y=0.15)
        cost[2].set_title("dev accuracy (%), best epoch, higher is better", fontsize=9)
    for ax in cost[:3]:
        ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=7)
    for ax in cost[3:]:
        ax.axis("off")
    if groups:
        axes[0][0].legend(fontsize=6)
    machine = table["header"]["machine"]
    fig.suptitle(
        f"{title}\n{machine['cpu']}; GPU: {machine['gpu']}; rev {table['header']['git_revision']}\n"
        + textwrap.fill(table["header"]["command"], 160),
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_section(text: str, name: str, body: str) -> str:
    """Puts body between the ``table:<name>`` markers of a Markdown text.

    The section is replaced when the markers are present, appended otherwise.
    """
    begin, end = f"<!-- table:{name} begin -->", f"<!-- table:{name} end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    start = text.find(begin)
    if start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            raise TableError(f"found {begin!r} without {end!r}")
        after = text[stop + len(end):]
        return text[:start] + block + after.lstrip("\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp_template", required=True,
                        help="run folder with {variant} and {seed}, e.g. exp/{variant}_seed{seed}")
    parser.add_argument("--variants", nargs="+", required=True, help="variant ids, in row order")
    parser.add_argument("--seeds", nargs="+", required=True, help="training seeds")
    parser.add_argument("--names", nargs="+", help="display names, one per variant (default: built in)")
    parser.add_argument("--baseline", default=None,
                        help="variant the step time is relative to (default: hard_sharing, else the first)")
    parser.add_argument("--test_sets", nargs="+", help="test sets to show, in order (default: all scored)")
    parser.add_argument("--metrics", nargs="+", default=["wer", "bleu", "chrf"], help="metric families")
    parser.add_argument("--asr_task", default="asr")
    parser.add_argument("--st_task", default="st_fra")
    parser.add_argument("--spread", choices=sorted(SPREADS), default="std", help="spread shown in the table")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--title", default=None, help="default: from the out_dir name")
    parser.add_argument("--command", default=None, help="command to record (default: this one)")
    parser.add_argument("--note", default=None,
                        help="what the reader must know about this run, e.g. its reduced size (in the header)")
    parser.add_argument("--publish_md", type=Path, help="RESULTS.md to put the table into (a marked section)")
    parser.add_argument("--publish_json", type=Path, help="copy of table.json")
    parser.add_argument("--publish_png", type=Path, help="copy of table.png (linked from --publish_md)")
    parser.add_argument("--section", default=None, help="marker name in --publish_md (default: out_dir name)")
    args = parser.parse_args(argv)

    try:
        variants, seeds = split_words(args.variants), split_words(args.seeds)
        metric_keys = split_words(args.metrics)
        if not variants or not seeds:
            raise TableError("--variants and --seeds need at least one value each")
        for dup_list, what in ((variants, "variant"), (seeds, "seed")):
            if len(set(dup_list)) != len(dup_list):
                raise TableError(f"a {what} is listed twice: {' '.join(dup_list)}")
        unknown = [m for m in metric_keys if m not in METRICS]
        if unknown:
            raise TableError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        if "{variant}" not in args.exp_template or "{seed}" not in args.exp_template:
            raise TableError("--exp_template needs {variant} and {seed}")
        if args.names:
            if len(args.names) != len(variants):
                raise TableError(f"{len(args.names)} --names for {len(variants)} --variants")
            names = dict(zip(variants, args.names))
        else:
            names = {v: VARIANT_NAMES.get(v, v) for v in variants}
        baseline = args.baseline or ("hard_sharing" if "hard_sharing" in variants else variants[0])
        if baseline not in variants:
            raise TableError(f"--baseline {baseline} is not among --variants")
        runs = [
            load_run(v, s, Path(args.exp_template.format(variant=v, seed=s)))
            for s in seeds
            for v in variants
        ]
        table = build_table(
            runs, variants, seeds, names, baseline, [METRICS[m] for m in metric_keys],
            {"asr": args.asr_task, "st": args.st_task},
            split_words(args.test_sets) or None,
        )  # fmt: skip
    except TableError as err:
        print(f"make_table.py: error: {err}", file=sys.stderr)
        return 1

    given = argv if argv is not None else sys.argv[1:]
    command = args.command or shlex.join(["python", "-m", "local.make_table", *given])
    title = args.title or f"Comparison table: {args.out_dir.name.removeprefix('table_')}"
    table = {
        "title": title,
        "header": header_info(runs, command, args.note or None),
        "spread": {"shown": args.spread, "definitions": SPREADS},
        "step_time": STEP_TIME_NOTE,
        "valid_acc": VALID_ACC_NOTE,
        "units": {"wer": "%", "bleu": "sacrebleu BLEU, 0-100", "chrf": "sacrebleu chrF, 0-100",
                  "step_time": "seconds per training iteration", "params": "count"},
        **table,
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_text = json.dumps(table, indent=2, ensure_ascii=False) + "\n"
    (args.out_dir / "table.json").write_text(json_text, encoding="utf-8")
    plot(table, args.out_dir / "table.png", title, args.spread)
    markdown = table_markdown(table, title, args.spread, "table.png")
    (args.out_dir / "table.md").write_text(markdown, encoding="utf-8")
    print(markdown)

    if args.publish_json:
        args.publish_json.parent.mkdir(parents=True, exist_ok=True)
        args.publish_json.write_text(json_text, encoding="utf-8")
    image = None
    if args.publish_png:
        args.publish_png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out_dir / "table.png", args.publish_png)
        if args.publish_md:
            image = Path(os.path.relpath(args.publish_png, args.publish_md.parent)).as_posix()
    if args.publish_md:
        old = args.publish_md.read_text(encoding="utf-8") if args.publish_md.is_file() else "# RESULTS\n"
        try:
            new = replace_section(old, args.section or args.out_dir.name,
                                  table_markdown(table, title, args.spread, image))
        except TableError as err:
            print(f"make_table.py: error: {args.publish_md}: {err}", file=sys.stderr)
            return 1
        args.publish_md.parent.mkdir(parents=True, exist_ok=True)
        args.publish_md.write_text(new, encoding="utf-8")
        print(f"make_table.py: table section written to {args.publish_md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
