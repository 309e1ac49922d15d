#!/usr/bin/env python3
"""An experiment folder holds one training: run.sh's stage 11 never resumes it with other options.

ESPnet's ``--resume true`` continues whatever ``checkpoint.pth`` the output folder holds, with
the options of the new call. Two runs that share a folder (an explicit ``--tag``, or an edited
config) would so become one experiment without a word. Before training, run.sh calls::

    python -m local.exp_guard --exp_dir exp/<tag> --s2t_config conf/x.yaml --s2t_args "--max_epoch 5" \\
        --train_data data/train_mix --valid_data data/dev_mix --token_dir data/token_list/... \\
        --stats_dir exp/stats_...

The first call records the options in ``<exp_dir>/train_options.json``: the config's settings
(its parsed YAML, so comments may change), the extra training arguments (as words), and the
data, token and statistics folders. A later call with the same options passes (a stopped
training resumes); with others it fails, naming each difference, and the training does not
start. A folder that holds a training but no record (made without this check) fails too:
nobody can tell which options it was trained with.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml

from local.file_io import write_lines
from local.log import setup_logging
from local.stage import config_digest

RECORD = "train_options.json"
FOLDERS = ("train_data", "valid_data", "token_dir", "stats_dir")


class GuardError(Exception):
    """The folder belongs to another training; the message says how it differs."""


def train_options(s2t_config: Path, s2t_args: str, **folders: Path) -> dict:
    """What makes a training the one it is, in the form the record keeps."""
    try:
        settings = yaml.safe_load(Path(s2t_config).read_text(encoding="utf-8"))
    except OSError as err:
        raise GuardError(f"--s2t_config {s2t_config}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise GuardError(f"--s2t_config {s2t_config}: not YAML ({err})") from None
    try:
        words = shlex.split(s2t_args)
    except ValueError as err:
        raise GuardError(f"--s2t_args {s2t_args!r}: {err}") from None
    return {"s2t_config": str(s2t_config), "s2t_config_digest": config_digest(settings),
            "s2t_config_settings": settings, "s2t_args": words,
            **{name: os.path.normpath(folders[name]) for name in FOLDERS}}


def differences(recorded: dict, current: dict) -> list[str]:
    """One line per option that differs: its name, the recorded value, the current one."""
    lines = []
    if recorded.get("s2t_config_digest") != current["s2t_config_digest"]:
        old, new = recorded.get("s2t_config_settings") or {}, current["s2t_config_settings"] or {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        lines.append(f"--s2t_config: {recorded.get('s2t_config')} there, {current['s2t_config']} here, "
                     f"with other settings ({', '.join(changed)})")
    if recorded.get("s2t_args") != current["s2t_args"]:
        lines.append(f"--s2t_args: {shlex.join(recorded.get('s2t_args') or [])!r} there, "
                     f"{shlex.join(current['s2t_args'])!r} here")
    for name in FOLDERS:
        if recorded.get(name) != current[name]:
            lines.append(f"{name}: {recorded.get(name)} there, {current[name]} here")
    return lines


def trained(exp_dir: Path) -> bool:
    """Whether ESPnet has saved a training state there (what --resume would continue)."""
    return (exp_dir / "checkpoint.pth").exists() or any(exp_dir.glob("*epoch.pth"))


def check(exp_dir: Path, options: dict) -> bool:
    """Records ``options`` for a new folder; passes a folder recorded with the same ones.

    Returns:
        True when the folder was new (the record was written now).
    Raises:
        GuardError: the folder was trained with other options, or without a record.
    """
    record = exp_dir / RECORD
    advice = (f"Train elsewhere (another --tag; the default tag holds --s2t_config's name and --s2t_args), or "
              f"remove {exp_dir} to train it again.")
    if record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
        except ValueError as err:
            raise GuardError(f"{record}: not JSON ({err}); remove {exp_dir} to train it again") from None
        diff = differences(recorded, options)
        if diff:
            raise GuardError(f"{exp_dir} was trained with other options; resuming it would make one experiment of "
                             f"two:\n  " + "\n  ".join(diff) + f"\n{advice}")
        return False
    if trained(exp_dir):
        raise GuardError(f"{exp_dir} holds a training (checkpoint) but no {RECORD}: the options it was trained with "
                         f"are unknown, so it is not resumed.\n{advice}")
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_lines(record, [json.dumps(options, indent=1, sort_keys=True) + "\n"])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, required=True)
    parser.add_argument("--s2t_config", type=Path, required=True)
    parser.add_argument("--s2t_args", default="", help="run.sh's --s2t_args, one string")
    for name in FOLDERS:
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        options = train_options(args.s2t_config, args.s2t_args, **{n: getattr(args, n) for n in FOLDERS})
        new = check(args.exp_dir, options)
    except GuardError as err:
        print(f"exp_guard: {err}", file=sys.stderr)
        return 1
    logging.info("%s: %s", args.exp_dir, f"new experiment, options in {RECORD}" if new else
                 f"the options of its training ({RECORD}): resuming")
    return 0


if __name__ == "__main__":
    sys.exit(main())
