#!/usr/bin/env python3
"""Keeps a finished table run's results in git, and puts them back on another machine.

A run of the comparison table trains for ~40 minutes on a 2-core CPU, and the table needs
14 of them, so they are trained over days, on machines that may have only the repository.
So local/run_table.sh keeps, per finished run, the files the table reads --
``results.json`` (scores), ``model_info.json`` (parameters), the hypothesis files that
results.json names (for the paired bootstrap) and the per-epoch training statistics
(``reporter_stats.json``, instead of the 20 MB ``checkpoint.pth``) -- in a folder small
enough to commit, with the run's ``config.yaml``, and restores them into ``exp/<tag>`` when
that run is missing. Corpus files stay out: the kept folder holds the SHA-256 of the test
references it was scored against and of the training texts, shapes and BPE model it was
trained on (``inputs.json``), and restoring checks that the data stages rebuilt the same ones
(the tts_ui corpus is built from Debian's current catalogs, which change over time).

Run from the recipe folder (results.json paths are relative to it)::

    python -m maint.keep_run save exp/tts_ui_hard_sharing_seed1 results/runs/tts_ui_hard_sharing_seed1
    python -m maint.keep_run restore results/runs/tts_ui_hard_sharing_seed1 exp/tts_ui_hard_sharing_seed1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from espnet_smoe.reporter_stats import STATS_JSON, reporter_stats_json

INPUTS = "inputs.json"  # path -> SHA-256 of each corpus file the run was trained or scored on


class KeepError(Exception):
    """A run that cannot be kept or restored; the message names the file."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_inputs(config_path: Path) -> list[str]:
    """The text, shape and BPE files an ESPnet training config names (the audio only through its lengths)."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    paths = [path for path, _, kind in config.get("train_data_path_and_name_and_type", []) if kind == "text"]
    paths += config.get("train_shape_file", [])
    return paths + ([config["bpemodel"]] if config.get("bpemodel") else [])


def save(exp_dir: Path, keep_dir: Path) -> None:
    """Copies what the table reads from a finished run into ``keep_dir`` (replaced whole)."""
    results_path = exp_dir / "results.json"
    if not results_path.is_file():
        raise KeepError(f"{results_path}: missing (the run has not been scored)")
    entries = json.loads(results_path.read_text(encoding="utf-8")).get("results", [])
    staging = keep_dir.with_name(keep_dir.name + ".partial")  # a stopped save leaves no half folder
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    inputs = {}
    for entry in entries:
        hyp = Path(entry["hyp"])
        if hyp.is_absolute() or not hyp.is_relative_to(exp_dir):
            raise KeepError(f"{results_path}: hypothesis {hyp} is not a relative path inside {exp_dir}")
        (staging / hyp.relative_to(exp_dir)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(hyp, staging / hyp.relative_to(exp_dir))
        inputs[entry["ref"]] = _sha256(Path(entry["ref"]))
    for name in ("results.json", "model_info.json", "config.yaml"):
        shutil.copyfile(exp_dir / name, staging / name)
    for path in training_inputs(exp_dir / "config.yaml"):
        inputs[path] = _sha256(Path(path))
    (staging / STATS_JSON).write_text(reporter_stats_json(exp_dir), encoding="utf-8")
    (staging / INPUTS).write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(keep_dir, ignore_errors=True)
    staging.rename(keep_dir)


def restore(keep_dir: Path, exp_dir: Path) -> None:
    """Copies a kept run back into ``exp_dir`` after checking the corpus files it was trained and scored on."""
    if not (keep_dir / INPUTS).is_file():
        raise KeepError(f"{keep_dir / INPUTS}: missing (not a folder written by 'keep_run save')")
    for path, digest in json.loads((keep_dir / INPUTS).read_text(encoding="utf-8")).items():
        if not Path(path).is_file():
            raise KeepError(f"{keep_dir}: its input {path} is missing (run the data stages first)")
        if _sha256(Path(path)) != digest:
            raise KeepError(f"{path}: differs from the file {keep_dir} was trained or scored on (sha256 "
                            f"{digest[:12]}...): the data stages built another corpus (sizes, seed, or Debian's "
                            f"catalogs moved on), or the statistics stage listed the utterances in another order "
                            f"(the order follows its number of loader workers); rebuild the data as the run had "
                            f"it, or retrain the run (remove {keep_dir})")
    shutil.copytree(keep_dir, exp_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(INPUTS))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("source", type=Path, help="save: the run's exp folder; restore: the kept folder")
    parser.add_argument("target", type=Path, help="save: the kept folder; restore: the run's exp folder")
    args = parser.parse_args(argv)
    try:
        (save if args.action == "save" else restore)(args.source, args.target)
    except KeepError as err:
        raise SystemExit(f"keep_run {args.action}: {err}") from None


if __name__ == "__main__":
    main()
