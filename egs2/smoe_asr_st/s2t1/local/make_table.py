#!/usr/bin/env python3
"""The paper's comparison table: variants x seeds (one seed is the single-run case).

Usage (local/run_table.sh calls it with a template; see there for the training runs)::

    python -m local.make_table --exp_template "exp/tts_ui_{variant}_seed{seed}" \\
        --variants "hard_sharing smoe_enc smoe_dec smoe_encdec dense_wide gated_moe" \\
        --seeds "1 2 3" --out_dir exp/table_tts_ui --command "local/run_table.sh ..."
    python -m local.make_table --exp_dirs exp/train_{hard_sharing,smoe_encdec}_tiny \\
        --names "hard sharing" "S-MoE enc+dec" --out_dir exp/compare   # one run per variant

Every run folder may hold

- ``results.json`` from local/score.py (one entry per test set and task),
- ``model_info.json`` from espnet_smoe.bin.model_info (total/active parameters),
- ``checkpoint.pth`` from ESPnet's trainer (or, for a run kept in git by maint/keep_run.py,
  its ``reporter_stats.json``), whose saved reporter gives per epoch the
  training step time (``[train] train_time``, seconds per iteration), the iteration count
  and the dev-set token accuracy (``[valid] acc``, teacher forced, the checkpoint-selection
  criterion); see espnet_smoe/reporter_stats.py.

Rows are variants. Test sets are grouped by name without their ``_nb``/``_wb`` suffix
(``tts_ui_test_nb`` and ``tts_ui_test_wb`` are the NB and WB columns of ``tts_ui_test``); per
test set the columns are ASR WER and ST BLEU/chrF on each bandwidth, the best dev accuracy
over epochs, total and active parameters, the step time relative to the baseline (hard
sharing, else the first variant) and the relative WER change against the baseline. A cell is
the mean over the seeds that have the value, with its spread (``--spread``: the sample
standard deviation or the min-max range); table.json holds both, the count and every seed's
value. A missing file leaves '-' in its cells and a line under "Warnings". ``--also_against``
adds, per further baseline (the fair baselines: the parameter-matched dense model, the gated
MoE), every variant's relative WER and paired bootstrap against it.

Writes ``table.md``, ``table.json`` and ``table.png`` into ``--out_dir``, each carrying the
command, the machine (CPU model and cores, GPU names) and the git revision.
``--publish_md/--publish_json/--publish_png`` also put the table into a RESULTS.md section
between ``<!-- table:<name> begin/end -->`` markers (replaced when present, appended
otherwise) and copy the JSON and PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from espnet_smoe.reporter_stats import read_reporter_stats
from local.data_dir import BANDWIDTH_TOKENS
from local.score import ScoreError, environment_info, split_words
from local.significance import compare_runs


@dataclass(frozen=True)
class Metric:
    """A score of results.json entries: its key, the task kind carrying it, label, unit, direction."""

    key: str
    kind: str
    label: str
    unit: str
    lower_is_better: bool

    def column_label(self, bandwidth: str) -> str:
        """``ASR WER NB (%)``: the label of this metric's column on one bandwidth."""
        return f"{self.label} {bandwidth.upper()}" + (f" ({self.unit})" if self.unit else "")


METRICS = {
    "wer": Metric("wer", "asr", "ASR WER", "%", True),
    "cer": Metric("cer", "asr", "ASR CER", "%", True),
    "bleu": Metric("bleu", "st", "ST BLEU", "", False),
    "chrf": Metric("chrf", "st", "ST chrF", "", False),
}
BANDWIDTH_ORDER = tuple(BANDWIDTH_TOKENS)  # known bandwidths first (nb, wb)
# Display names of the recipe's variants (conf/tuning/train_<variant>_tiny.yaml).
VARIANT_NAMES = {"hard_sharing": "hard sharing", "smoe_enc": "S-MoE enc", "smoe_dec": "S-MoE dec",
                 "smoe_encdec": "S-MoE enc+dec", "dense_wide": "dense, param.-matched",
                 "gated_moe": "gated MoE (top-1)"}
# Display names of the test-set groups the recipe decodes.
TEST_SET_NAMES = {"tts_ui_test": "tts_ui test (held-out voices)", "ddtp_test": "DDTP test (tts_ui, out of domain)",
                  "test": "Asterisk test (real speech)"}
SPREADS = {"std": "mean ± sample standard deviation over seeds (n-1; none for one seed)",
           "range": "mean (min-max) over seeds"}
STEP_TIME_NOTE = ("mean over epochs of ESPnet's `[train] train_time` (seconds per iteration, from the reporter: "
                  "checkpoint.pth, or a kept run's reporter_stats.json), averaged over seeds; relative: the "
                  "variant's mean over the baseline's")
VALID_ACC_NOTE = ("dev-set token accuracy of the attention decoder (teacher forced, %), best epoch: "
                  "ESPnet's `[valid] acc` (same reporter), the checkpoint-selection criterion")
REL_WER_NOTE = "mean over the bandwidths of 100 * (WER - WER of the baseline) / WER of the baseline; negative is better"


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
    environment: dict | None = None  # results.json "environment"
    step_times: dict[int, float] = field(default_factory=dict)  # epoch -> s/iter
    valid_accs: dict[int, float] = field(default_factory=dict)  # epoch -> dev acc (0-1)
    # task -> epoch -> dev attention loss of that task's rows (the model's loss_att_<task>)
    task_losses: dict[str, dict[int, float]] = field(default_factory=dict)
    iterations: int | None = None  # cumulative iteration count at the last epoch

    @property
    def best_valid_acc(self) -> float | None:
        return 100.0 * max(self.valid_accs.values()) if self.valid_accs else None

    @property
    def step_time(self) -> float | None:
        return statistics.fmean(self.step_times.values()) if self.step_times else None

    @property
    def epochs(self) -> int | None:
        return max(self.step_times) if self.step_times else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TableError(f"{path}: invalid JSON ({err})") from None


def load_run(variant: str, seed: str, exp_dir: Path) -> Run:
    """Reads whatever a run folder holds; missing files leave None."""
    run = Run(variant, seed, exp_dir)
    if (exp_dir / "results.json").is_file():
        report = _read_json(exp_dir / "results.json")
        if not isinstance(report.get("results"), list):
            raise TableError(f"{exp_dir / 'results.json'}: no 'results' list (not from local/score.py)")
        run.results, run.environment = report["results"], report.get("environment")
    if (exp_dir / "model_info.json").is_file():
        run.model_info = _read_json(exp_dir / "model_info.json")
    try:  # checkpoint.pth, or a kept run's reporter_stats.json
        stats = read_reporter_stats(exp_dir)
    except FileNotFoundError:  # no finished epoch
        stats = {}
    for epoch, parts in stats.items():
        train, valid = parts.get("train", {}), parts.get("valid", {})
        if "train_time" in train:
            run.step_times[epoch] = train["train_time"]
        if "acc" in valid:
            run.valid_accs[epoch] = valid["acc"]
        for key, value in valid.items():
            if key.startswith("loss_att_") and value is not None and math.isfinite(value):
                run.task_losses.setdefault(key[len("loss_att_"):], {})[epoch] = value
        if "total_count" in train:
            run.iterations = int(train["total_count"])
    return run


def seed_cell(values: dict[str, float | None]) -> dict:
    """Mean, sample std, min, max and count of the seeds' values that are not None, and the values."""
    present = [v for v in values.values() if v is not None]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": values}
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else None,
            "min": min(present), "max": max(present), "n": len(present), "values": values}


def mean_curves(runs: list[Run]) -> dict[str, dict[int, float]]:
    """task -> epoch -> dev loss of that task, the mean over the runs (seeds) that logged it."""
    tasks = sorted({task for run in runs for task in run.task_losses})
    curves = {}
    for task in tasks:
        epochs = sorted({e for run in runs for e in run.task_losses.get(task, {})})
        curves[task] = {e: statistics.fmean(r.task_losses[task][e] for r in runs
                                            if e in r.task_losses.get(task, {})) for e in epochs}
    return curves


def collect_test_sets(runs: list[Run], wanted: list[str] | None) -> list[tuple[str, str, str]]:
    """(group, bandwidth, test_set) in display order: groups as first seen (or as ``wanted``), NB then WB.

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
    # the group: ``tts_ui_test_nb`` on nb -> ``tts_ui_test``; other names stay whole
    triples = [(t.removesuffix(f"_{seen[t]}"), seen[t], t) for t in wanted or list(seen) if t in seen]
    groups = list(dict.fromkeys(g for g, _, _ in triples))
    rank = {bw: i for i, bw in enumerate(BANDWIDTH_ORDER)}
    return sorted(triples, key=lambda x: (groups.index(x[0]), rank.get(x[1], len(rank)), x[1]))


def build_table(runs: list[Run], variants: list[str], seeds: list[str], names: dict[str, str], baseline: str,
                metrics: list[Metric], tasks: dict[str, str], test_sets: list[str] | None) -> dict:
    """Everything table.json holds, but the header (rows: variants; cells: mean/spread over seeds)."""
    triples = collect_test_sets(runs, test_sets)
    groups = list(dict.fromkeys(g for g, _, _ in triples))
    columns = [(g, m, bw, t) for g in groups for m in metrics for gg, bw, t in triples if gg == g]
    warnings = []
    for run in runs:
        if not run.exp_dir.is_dir():  # e.g. a seed that only some variants were trained with
            warnings.append(f"{run.exp_dir}: not trained (no such folder)")
            continue
        missing = [f for f, present in (("results.json", run.results is not None),
                                        ("model_info.json", run.model_info is not None),
                                        ("checkpoint.pth reporter", bool(run.step_times))) if not present]
        if missing:
            warnings.append(f"{run.exp_dir}: no {', '.join(missing)}")
    num_utts: dict[str, int] = {}
    rows = []
    for variant in variants:
        variant_runs = [r for r in runs if r.variant == variant]
        cells = {}
        for group, metric, bw, test_set in columns:
            per_seed = {}
            for run in variant_runs:
                entry = next((e for e in run.results or []
                              if e.get("test_set") == test_set and e.get("task") == tasks[metric.kind]), None)
                value = None if entry is None else entry.get(metric.key)
                per_seed[run.seed] = None if value is None else float(value)
                if entry is not None and "num_utts" in entry:
                    num_utts.setdefault(test_set, entry["num_utts"])
            cells[f"{group}.{metric.key}_{bw}"] = seed_cell(per_seed)
        params = {}
        for key in ("total_params", "active_params"):
            found = {r.model_info.get(key) for r in variant_runs if r.model_info and r.model_info.get(key)}
            if len(found) > 1:
                warnings.append(f"{names[variant]}: {key} differs between seeds ({sorted(found)})")
            params[key] = min(found) if found else None
        rows.append({
            "variant": variant, "name": names[variant], "exp_dirs": {r.seed: str(r.exp_dir) for r in variant_runs},
            "runs_with_results": sum(r.results is not None for r in variant_runs), "cells": cells, **params,
            "step_time": seed_cell({r.seed: r.step_time for r in variant_runs}),
            "valid_acc": seed_cell({r.seed: r.best_valid_acc for r in variant_runs}),
            "dev_task_loss": mean_curves(variant_runs),
            "epochs": {r.seed: r.epochs for r in variant_runs},
            "iterations": {r.seed: r.iterations for r in variant_runs},
        })  # fmt: skip
    base = next(r for r in rows if r["variant"] == baseline)
    for row in rows:
        mine, base_time = row["step_time"]["mean"], base["step_time"]["mean"]
        row["step_time_ratio"] = None if mine is None or not base_time else mine / base_time
        row["rel_wer_change"] = rel_wer_change(row, base, [(g, bw) for g, bw, _ in triples])
    # Same steps for every run, or the comparison is not fair: say so.
    budgets = {(r.epochs, r.iterations) for r in runs if r.step_times}
    if len(budgets) > 1:
        detail = "; ".join(f"{r.exp_dir}: {r.epochs} epochs, {r.iterations} iterations" for r in runs if r.step_times)
        warnings.append(f"runs trained for different numbers of epochs/iterations ({detail})")
    return {
        "variants": variants, "seeds": seeds, "baseline": baseline, "tasks": tasks,
        "test_sets": [{"group": g, "name": TEST_SET_NAMES.get(g, g), "bandwidth": bw, "test_set": t,
                       "num_utts": num_utts.get(t)} for g, bw, t in triples],
        "columns": [{"key": f"{g}.{m.key}_{bw}", "group": g, "metric": m.key, "bandwidth": bw,
                     "label": m.column_label(bw), "lower_is_better": m.lower_is_better} for g, m, bw, _ in columns],
        "training_budget": sorted([list(b) for b in budgets], key=str), "rows": rows, "warnings": warnings,
    }  # fmt: skip


def header_info(runs: list[Run], command: str, note: str | None = None) -> dict:
    """Command, machine, revision and note of this table and of the runs' scoring."""
    env = environment_info()
    scored = Counter((e.get("hostname"), e.get("cpu"), e.get("gpu"), e.get("git_revision"))
                     for e in (run.environment for run in runs) if e)
    return {
        "command": command, "note": note, "date": env["date"],
        "machine": {"hostname": env["hostname"], "cpu": env["cpu"], "gpu": env["gpu"]},
        "git_revision": env["git_revision"],
        "software": {k: env[k] for k in ("python", "torch", "espnet", "jiwer", "sacrebleu")},
        "runs_scored_on": [{"hostname": h, "cpu": c, "gpu": g, "git_revision": rev, "runs": n}
                           for (h, c, g, rev), n in scored.items()],
    }  # fmt: skip


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


def fmt_params(value) -> str:
    """Parameter count in millions (``5.07M``); '-' when unknown."""
    return "-" if value is None else f"{value / 1e6:.2f}M"


def _code(text: str) -> str:
    """Inline Markdown code that survives backquotes in the text."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def rel_wer_change(row: dict, base: dict, group_bandwidths: list[tuple[str, str]]) -> dict[str, float | None]:
    """Relative WER change (%) of a table row against a baseline row, per test-set group: the paper's headline
    number, the mean over the group's bandwidths of 100 * (WER - baseline WER) / baseline WER."""
    out = {}
    for group in dict.fromkeys(g for g, _ in group_bandwidths):
        keys = [f"{group}.wer_{bw}" for g, bw in group_bandwidths if g == group]
        changes = [100.0 * (row["cells"][k]["mean"] - base["cells"][k]["mean"]) / base["cells"][k]["mean"]
                   for k in keys if k in row["cells"] and row["cells"][k]["mean"] is not None
                   and base["cells"].get(k, {}).get("mean")]
        out[group] = statistics.fmean(changes) if changes else None
    return out


def against_other_baselines(table: dict, runs: list[Run], others: list[str], num_samples: int) -> list[dict]:
    """Every variant against each of ``others`` as well (the fair baselines of the paper's question):
    relative WER per test-set group and, with ``num_samples`` > 0, the paired bootstrap."""
    group_bandwidths = [(t["group"], t["bandwidth"]) for t in table["test_sets"]]
    out = []
    for other in others:
        base = next(r for r in table["rows"] if r["variant"] == other)
        entry = {"baseline": other, "name": base["name"],
                 "rel_wer_change": {r["variant"]: rel_wer_change(r, base, group_bandwidths) for r in table["rows"]}}
        if num_samples > 0:
            entry["significance"] = compare_runs(runs, other, num_samples=num_samples)
        out.append(entry)
    return out


def _bootstrap_lines(significance: list[dict], names: dict[str, str], base_name: str) -> list[str]:
    lines = ["", f"### Paired bootstrap against {base_name}", "",
             "Resampled test utterances (sacrebleu's paired bootstrap; each system's score on a resample is the "
             "mean over its seeds): difference variant - baseline with its 95 % interval, and the p-value.", "",
             "|variant|test set|metric|baseline|variant|difference [95 % interval]|p|",
             "|---|---|---|---:|---:|---:|---:|"]
    for c in significance:
        lines.append(f"|{names.get(c['variant'], c['variant'])}|{c['test_set']}|{c['metric']}|{c['baseline']:.2f}|"
                     f"{c['system']:.2f}|{c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]|"
                     f"{c['p_value']:.3f}|")
    return lines


def table_markdown(table: dict, title: str, spread: str, image: str | None) -> str:
    """Renders table.json content: a header, then one table per test set."""
    head, machine = table["header"], table["header"]["machine"]
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
        f"- date: {head['date']}; software: " + ", ".join(f"{k} {v}" for k, v in head["software"].items()),
        f"- seeds: {' '.join(table['seeds'])} ({found} of {n_runs} runs scored); "
        f"cells: {SPREADS[spread]}; '-': no result",
        f"- step time: {STEP_TIME_NOTE} (**{base_name}**); in brackets: seconds per iteration",
        f"- dev acc: {VALID_ACC_NOTE}",
        f"- rel. WER: {REL_WER_NOTE}",
        "- active params: the parameters one utterance uses (one expert per MoE layer)",
    ]
    if len(table["training_budget"]) == 1:
        epochs, iterations = table["training_budget"][0]
        lines.append(f"- training: every run {epochs} epoch(s), {iterations} iterations")
    for other in head["runs_scored_on"]:
        if other["cpu"] != machine["cpu"] or other["git_revision"] != head["git_revision"]:
            lines.append(f"- {other['runs']} run(s) scored on {_code(str(other['cpu']))}, GPU "
                         f"{_code(str(other['gpu']))}, revision {_code(str(other['git_revision']))}")
    groups = list(dict.fromkeys(c["group"] for c in table["columns"]))
    for group in groups:
        sets = [t for t in table["test_sets"] if t["group"] == group]
        sizes = ", ".join(f"{t['test_set']}: {t['num_utts'] if t['num_utts'] is not None else '?'} utts"
                          for t in sets)
        cols = [c for c in table["columns"] if c["group"] == group]
        header = ["variant"] + [c["label"] for c in cols]
        header += ["dev acc (%)", "total params", "active params", f"step time vs {base_name}",
                   f"rel. WER vs {base_name}"]
        lines += ["", f"### {sets[0]['name']}", "", f"Test sets: {sizes}.", "",
                  "|" + "|".join(header) + "|", "|---|" + "---:|" * (len(header) - 1)]
        for row in table["rows"]:
            change = row["rel_wer_change"].get(group)
            # step time: ``1.08x (0.540 s)``, the ratio to the baseline and the mean seconds per iteration
            step, ratio = row["step_time"]["mean"], row["step_time_ratio"]
            step = "-" if step is None else ("-" if ratio is None else f"{ratio:.2f}x") + f" ({step:.3f} s)"
            cells = [row["name"]] + [fmt_cell(row["cells"][c["key"]], spread) for c in cols]
            cells += [fmt_cell(row["valid_acc"], spread), fmt_params(row["total_params"]),
                      fmt_params(row["active_params"]), step,
                      "baseline" if row["variant"] == table["baseline"] else
                      "-" if change is None else f"{change:+.1f}%"]  # fmt: skip
            lines.append("|" + "|".join(cells) + "|")
    if not groups:
        lines += ["", "No scored results found."]
    names = {r["variant"]: r["name"] for r in table["rows"]}
    if table.get("significance"):
        lines += _bootstrap_lines(table["significance"], names, base_name)
    group_names = {t["group"]: t["name"] for t in table["test_sets"]}
    for other in table.get("also_against", []):
        lines += ["", f"### Against {other['name']}", "",
                  f"rel. WER vs {other['name']} (%, {REL_WER_NOTE.split(';')[0]}):", "",
                  "|variant|" + "|".join(group_names.values()) + "|", "|---|" + "---:|" * len(group_names)]
        for variant, changes in other["rel_wer_change"].items():
            cells = ["baseline" if variant == other["baseline"] else
                     "-" if changes.get(g) is None else f"{changes[g]:+.1f}%" for g in group_names]
            lines.append(f"|{names[variant]}|" + "|".join(cells) + "|")
        if other.get("significance"):
            lines += _bootstrap_lines(other["significance"], names, other["name"])
    if image:
        lines += ["", f"![{title}]({image})"]
    if table["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in table["warnings"]]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, title: str, spread: str) -> None:
    """One row of panels per test set (a panel per metric: bandwidths x variants, error bars =
    the spread), a row with parameters, step time and dev accuracy, and, when the runs logged
    them, a row of per-task dev-loss curves (a panel per task, a line per variant)."""
    import matplotlib

    matplotlib.use("Agg")  # No display on the training machines.
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(c["group"] for c in table["columns"]))
    metric_keys = list(dict.fromkeys(c["metric"] for c in table["columns"]))
    rows = table["rows"]
    tasks = sorted({task for r in rows for task in r.get("dev_task_loss", {})})
    ncols, nrows = max(len(metric_keys), 2, len(tasks)), len(groups) + 1 + bool(tasks)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    names = {t["group"]: t["name"] for t in table["test_sets"]}

    def err(cell: dict) -> tuple[float, float]:
        if cell["mean"] is None:
            return (0.0, 0.0)
        if spread == "std":
            return (cell["std"] or 0.0, cell["std"] or 0.0)
        return (cell["mean"] - cell["min"], cell["max"] - cell["mean"])

    def bars(ax, xs, cells, w, fmt="%.1f", errors=True, **kwargs):
        heights = [math.nan if c["mean"] is None else c["mean"] for c in cells]
        yerr = (list(zip(*[err(c) for c in cells])) or [[], []]) if errors else None
        drawn = ax.bar(xs, heights, w, yerr=yerr, capsize=2, **kwargs)
        ax.bar_label(drawn, fmt=fmt, fontsize=6, padding=1)
        ax.margins(y=0.15)

    for gi, group in enumerate(groups):
        for mi, ax in enumerate(axes[gi]):
            if mi >= len(metric_keys):
                ax.axis("off")
                continue
            cols = [c for c in table["columns"] if c["group"] == group and c["metric"] == metric_keys[mi]]
            for i, row in enumerate(rows):
                xs = [b + (i - (len(rows) - 1) / 2) * width for b in range(len(cols))]
                bars(ax, xs, [row["cells"][c["key"]] for c in cols], width, label=row["name"])
            metric = METRICS[metric_keys[mi]]
            unit = f" ({metric.unit})" if metric.unit else ""
            direction = "lower" if metric.lower_is_better else "higher"
            ax.set_title(f"{names[group]}\n{metric.label}{unit}, {direction} is better", fontsize=9)
            ax.set_xticks(range(len(cols)), [c["bandwidth"].upper() for c in cols])
    cost, xs = axes[len(groups)], list(range(len(rows)))
    for i, key in enumerate(("total_params", "active_params")):
        vals = [math.nan if r[key] is None else r[key] / 1e6 for r in rows]
        cost[0].bar([x + (i - 0.5) * 0.4 for x in xs], vals, 0.4, label=key.replace("_", " "))
    cost[0].set_title("parameters (M)", fontsize=9)
    cost[0].legend(fontsize=7)
    bars(cost[1], xs, [{"mean": r["step_time_ratio"]} for r in rows], 0.6, "%.2f", errors=False)
    cost[1].axhline(1.0, color="grey", linewidth=0.8)
    cost[1].set_title("training step time vs baseline", fontsize=9)
    if ncols > 2:
        bars(cost[2], xs, [r["valid_acc"] for r in rows], 0.6)
        cost[2].set_title("dev accuracy (%), best epoch, higher is better", fontsize=9)
    for ax in cost[:3]:
        ax.set_xticks(xs, [r["name"] for r in rows], rotation=30, ha="right", fontsize=7)
    for ax in cost[3:]:
        ax.axis("off")
    if tasks:
        for ti, ax in enumerate(axes[-1]):
            if ti >= len(tasks):
                ax.axis("off")
                continue
            for r in rows:
                curve = r.get("dev_task_loss", {}).get(tasks[ti], {})
                if curve:
                    epochs = sorted(curve, key=int)
                    ax.plot([int(e) for e in epochs], [curve[e] for e in epochs], marker=".", label=r["name"])
            ax.set_title(f"dev attention loss per utterance, task {tasks[ti]} (mean over seeds)", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.legend(fontsize=6)
    if groups:
        axes[0][0].legend(fontsize=6)
    machine = table["header"]["machine"]
    fig.suptitle(f"{title}\n{machine['cpu']}; GPU: {machine['gpu']}; rev {table['header']['git_revision']}\n"
                 + textwrap.fill(table["header"]["command"], 160), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_section(text: str, name: str, body: str) -> str:
    """Puts body between the ``table:<name>`` markers of a Markdown text (appended when absent)."""
    begin, end = f"<!-- table:{name} begin -->", f"<!-- table:{name} end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    start = text.find(begin)
    if start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            raise TableError(f"found {begin!r} without {end!r}")
        return text[:start] + block + text[stop + len(end):].lstrip("\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block


def find_runs(args) -> tuple[list[Run], list[str], list[str], dict[str, str]]:
    """Runs, variant ids, seeds and display names from the options."""
    if args.exp_dirs:
        if args.variants or args.seeds:
            raise TableError("--variants and --seeds go with --exp_template, not --exp_dirs")
        runs = [load_run(str(d), "1", d) for d in args.exp_dirs]
        variants, seeds = [r.variant for r in runs], ["1"]
        # run.sh names the folder after the tag: exp/<tag>
        default_names = {r.variant: VARIANT_NAMES.get(r.exp_dir.resolve().name, r.exp_dir.resolve().name) for r in runs}
    else:
        variants, seeds = split_words(args.variants), split_words(args.seeds)
        if not variants or not seeds:
            raise TableError("--variants and --seeds need at least one value each")
        if "{variant}" not in args.exp_template or "{seed}" not in args.exp_template:
            raise TableError("--exp_template needs {variant} and {seed}")
        runs = [load_run(v, s, Path(args.exp_template.format(variant=v, seed=s))) for s in seeds for v in variants]
        default_names = {v: VARIANT_NAMES.get(v, v) for v in variants}
    for values, what in ((variants, "variant"), (seeds, "seed")):
        if len(set(values)) != len(values):
            raise TableError(f"a {what} is listed twice: {' '.join(values)}")
    if args.names and len(args.names) != len(variants):
        raise TableError(f"{len(args.names)} --names for {len(variants)} --variants")
    names = dict(zip(variants, args.names)) if args.names else default_names
    if len(set(names.values())) != len(names):
        raise TableError(f"duplicate variant names: {', '.join(names.values())}")
    return runs, variants, seeds, names


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    runs = p.add_mutually_exclusive_group(required=True)
    runs.add_argument("--exp_template", help="run folder with {variant} and {seed}, e.g. exp/{variant}_seed{seed}")
    runs.add_argument("--exp_dirs", type=Path, nargs="+", help="one run folder per variant (a single seed)")
    p.add_argument("--variants", nargs="+", help="variant ids, in row order (with --exp_template)")
    p.add_argument("--seeds", nargs="+", help="training seeds (with --exp_template)")
    p.add_argument("--names", nargs="+", help="display names, one per variant (default: built in, else the id)")
    p.add_argument("--baseline", default=None,
                   help="variant the step time and WER are relative to (default: hard_sharing, else the first)")
    p.add_argument("--also_against", nargs="+", default=[],
                   help="more baselines (variants): relative WER and paired bootstrap of every variant against "
                        "each, e.g. the fair baselines dense_wide gated_moe")
    p.add_argument("--test_sets", nargs="+", help="test sets to show, in order (default: all scored)")
    p.add_argument("--metrics", nargs="+", default=["wer", "bleu", "chrf"], help="metric families")
    p.add_argument("--asr_task", default="asr")
    p.add_argument("--st_task", default="st_fra")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="paired bootstrap resamples against the baseline (local/significance.py); 0: none")
    p.add_argument("--spread", choices=sorted(SPREADS), default="std", help="spread shown in the table")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--title", default=None, help="default: from the out_dir name")
    p.add_argument("--command", default=None, help="command to record (default: this one)")
    p.add_argument("--note", default=None, help="what the reader must know about this run (in the header)")
    p.add_argument("--publish_md", type=Path, help="RESULTS.md to put the table into (a marked section)")
    p.add_argument("--publish_json", type=Path, help="copy of table.json")
    p.add_argument("--publish_png", type=Path, help="copy of table.png (linked from --publish_md)")
    p.add_argument("--section", default=None, help="marker name in --publish_md (default: out_dir name)")
    args = p.parse_args(argv)
    try:
        runs, variants, seeds, names = find_runs(args)
        metric_keys = split_words(args.metrics)
        unknown = [m for m in metric_keys if m not in METRICS]
        if unknown:
            raise TableError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        baseline = args.baseline or ("hard_sharing" if "hard_sharing" in variants else variants[0])
        if baseline not in variants:
            raise TableError(f"--baseline {baseline} is not among --variants")
        others = split_words(args.also_against)
        bad = [o for o in others if o not in variants or o == baseline]
        if bad:
            raise TableError(f"--also_against {' '.join(bad)}: each must be among --variants {variants} "
                             f"and not the baseline ({baseline})")
        table = build_table(runs, variants, seeds, names, baseline, [METRICS[m] for m in metric_keys],
                            {"asr": args.asr_task, "st": args.st_task}, split_words(args.test_sets) or None)
        if args.bootstrap > 0:
            try:  # needs every run's reference and hypothesis files; without them the table still stands
                table["significance"] = compare_runs(runs, baseline, num_samples=args.bootstrap)
            except (ScoreError, ValueError) as err:
                table["warnings"].append(f"no paired bootstrap: {err}")
        if others:
            try:
                table["also_against"] = against_other_baselines(table, runs, others, args.bootstrap)
            except (ScoreError, ValueError) as err:
                table["warnings"].append(f"no paired bootstrap against {' '.join(others)}: {err}")
                table["also_against"] = against_other_baselines(table, runs, others, 0)
    except TableError as err:
        print(f"make_table.py: error: {err}", file=sys.stderr)
        return 1

    given = argv if argv is not None else sys.argv[1:]
    command = args.command or shlex.join(["python", "-m", "local.make_table", *given])
    title = args.title or f"Comparison table: {args.out_dir.name.removeprefix('table_')}"
    table = {"title": title, "header": header_info(runs, command, args.note or None),
             "spread": {"shown": args.spread, "definitions": SPREADS},
             "step_time": STEP_TIME_NOTE, "valid_acc": VALID_ACC_NOTE, "rel_wer_change": REL_WER_NOTE,
             "units": {"wer": "%", "bleu": "sacrebleu BLEU, 0-100", "chrf": "sacrebleu chrF, 0-100",
                       "step_time": "seconds per training iteration", "params": "count"},
             **table}  # fmt: skip
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
