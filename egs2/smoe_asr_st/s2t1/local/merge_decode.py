#!/usr/bin/env python3
"""Merges the 1-best outputs of split decoding jobs.

Usage::

    python -m local.merge_decode --nj N --dir DIR

    python -m local.merge_decode --nj N --dir DIR --task st_fra --out_dir OUT

reads the keys of ``DIR/keys.{1..N}.scp`` (from local/split_keys.py) and
concatenates ``DIR/output.J/[<task>/]1best_recog/<file>`` for ``<file>`` in text,
text_nospecial, token, token_int and score into ``OUT/1best_recog/<file>``
(``OUT`` defaults to ``DIR``), sorted by key. ``--task``: the jobs decoded
several tasks (``s2t_inference --task_sym asr st_fra`` writes one sub-folder
per task); merge this task's. A file written by no job is skipped (e.g. ``text`` when the
model has no tokenizer); one written by only some jobs is an error. Each merged
file must hold exactly the decoded keys, otherwise the missing or unexpected
keys are named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FILES = ("text", "text_nospecial", "token", "token_int", "score")

# How many keys to name in an error before summarising.
MAX_NAMED = 10


class MergeError(Exception):
    """Inconsistent decoding outputs."""


def _keys_of(path: Path) -> list[str]:
    """First column of each non-empty line of a Kaldi-style file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split(maxsplit=1)[0] for line in lines if line.strip()]


def _name_keys(keys: set[str]) -> str:
    shown = sorted(keys)[:MAX_NAMED]
    more = f" ... and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
    return ", ".join(shown) + more


def read_job_lines(path: Path) -> dict[str, str]:
    """Reads ``key value`` lines (value may be empty) keyed by utterance.

    Raises:
        MergeError: If a key appears twice in the file.
    """
    lines: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key = line.split(maxsplit=1)[0]
        if key in lines:
            raise MergeError(f"{path}:{lineno}: duplicate key {key!r}")
        lines[key] = line
    return lines


def merge(out_dir: Path, nj: int, files: list[str], task: str = "", target_dir: Path | None = None) -> list[str]:
    """Merges the job outputs into ``target_dir/1best_recog``.

    Args:
        out_dir: The decoding folder holding keys.J.scp and output.J.
        nj: Number of jobs.
        files: Names of the 1best_recog files to merge.
        task: Sub-folder of each output.J holding this task's results ("": none).
        target_dir: Where the merged 1best_recog goes (default: ``out_dir``).

    Returns:
        The names of the files merged.

    Raises:
        MergeError: On missing job outputs, duplicate keys or key mismatch.
    """
    expected: set[str] = set()
    for j in range(1, nj + 1):
        key_file = out_dir / f"keys.{j}.scp"
        if not key_file.is_file():
            raise MergeError(
                f"{key_file} not found (was the scp split with --nj {nj}?)"
            )
        expected.update(_keys_of(key_file))

    merged = []
    for name in files:
        paths = [
            out_dir / f"output.{j}" / task / "1best_recog" / name for j in range(1, nj + 1)
        ]
        present = [p for p in paths if p.is_file()]
        if not present:
            continue
        if len(present) < len(paths):
            missing = [str(p) for p in paths if not p.is_file()]
            raise MergeError(
                f"{name} is missing from {len(missing)} of {nj} jobs: "
                f"{', '.join(missing)} (did those jobs fail? see {out_dir}/logs)"
            )
        lines: dict[str, str] = {}
        for path in paths:
            for key, line in read_job_lines(path).items():
                if key in lines:
                    raise MergeError(
                        f"{path}: key {key!r} also decoded by another job"
                    )
                lines[key] = line
        missing_keys = expected - lines.keys()
        extra_keys = lines.keys() - expected
        if missing_keys or extra_keys:
            problems = []
            if missing_keys:
                problems.append(
                    f"{len(missing_keys)} key(s) not decoded: "
                    f"{_name_keys(missing_keys)}"
                )
            if extra_keys:
                problems.append(
                    f"{len(extra_keys)} key(s) not in keys.*.scp: "
                    f"{_name_keys(set(extra_keys))}"
                )
            where = f"{out_dir}/output.*/{task + '/' if task else ''}1best_recog/{name}"
            raise MergeError(f"{where}: " + "; ".join(problems))
        target = (target_dir or out_dir) / "1best_recog" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(lines[key] + "\n" for key in sorted(lines))
        target.write_text(text, encoding="utf-8")
        merged.append(name)
    if not merged:
        raise MergeError(
            f"none of {', '.join(files)} found under {out_dir}/output.*/{task + '/' if task else ''}1best_recog"
        )
    return merged


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, required=True, help="number of jobs")
    parser.add_argument("--dir", type=Path, required=True, help="decoding folder")
    parser.add_argument(
        "--files", nargs="+", default=list(DEFAULT_FILES), help="1best_recog files"
    )
    parser.add_argument("--task", default="", help="task sub-folder of each job's output")
    parser.add_argument("--out_dir", type=Path, default=None, help="default: --dir")
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error(f"--nj must be >= 1, got {args.nj}")
    try:
        merged = merge(args.dir, args.nj, args.files, args.task, args.out_dir)
    except (OSError, MergeError) as err:
        print(f"merge_decode.py: error: {err}", file=sys.stderr)
        return 1
    print(
        f"merge_decode.py: merged {', '.join(merged)} of {args.nj} jobs "
        f"into {args.out_dir or args.dir}/1best_recog",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
