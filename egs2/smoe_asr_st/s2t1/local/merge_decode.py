#!/usr/bin/env python3
"""Merges the 1-best outputs of split decoding jobs.

Usage::

    python -m local.merge_decode --nj N --dir DIR

    python -m local.merge_decode --nj N --dir DIR --task st_fra --keys data/test_nb/wav.scp --out_dir OUT

reads the keys of ``DIR/keys.{1..N}.scp`` (from local/split_keys.py) and
concatenates ``DIR/output.J/[<task>/]1best_recog/<file>`` for ``<file>`` in text,
text_nospecial, token, token_int and score into ``OUT/1best_recog/<file>``
(``OUT`` defaults to ``DIR``), sorted by key. ``--task``: the jobs decoded
several tasks (``s2t_inference --task_sym asr st_fra`` writes one sub-folder
per task); merge this task's. ``--keys FILE``: the jobs decoded several sets
(``split_keys.py`` with several ``--scp``: keys ``<set>/<key>``); merge the keys
of this Kaldi file (e.g. the set's wav.scp in folder ``<set>``), which must all be
in the jobs' key files, without the prefix. A file written by no job is skipped
(e.g. ``text`` when the model has no tokenizer); one written by only some jobs is
an error. Each merged file must hold exactly the decoded keys, otherwise the
missing or unexpected keys are named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local.file_io import key_mismatch, name_keys, read_kaldi, write_lines

DEFAULT_FILES = ("text", "text_nospecial", "token", "token_int", "score")


class MergeError(Exception):
    """Inconsistent decoding outputs."""


def merge(out_dir: Path, nj: int, files: list[str], task: str = "", target_dir: Path | None = None,
          keys: Path | None = None) -> list[str]:
    """Merges the job outputs into ``target_dir/1best_recog``.

    Args:
        out_dir: The decoding folder holding keys.J.scp and output.J.
        nj: Number of jobs.
        files: Names of the 1best_recog files to merge.
        task: Sub-folder of each output.J holding this task's results ("": none).
        target_dir: Where the merged 1best_recog goes (default: ``out_dir``).
        keys: A Kaldi file whose keys are merged (default: all keys of keys.J.scp).

    Returns:
        The names of the files merged.

    Raises:
        MergeError: On missing job outputs, duplicate keys or key mismatch.
        ValueError: On a malformed file (an empty line, a key twice in one file).
    """
    expected: set[str] = set()
    for j in range(1, nj + 1):
        key_file = out_dir / f"keys.{j}.scp"
        if not key_file.is_file():
            raise MergeError(f"{key_file} not found (was the scp split with --nj {nj}?)")
        expected.update(read_kaldi(key_file))
    decoded = expected
    prefix = ""
    if keys is not None:
        if any(k.startswith(f"{keys.resolve().parent.name}/") for k in decoded):  # jobs of several sets
            prefix = f"{keys.resolve().parent.name}/"
        expected = {prefix + k for k in read_kaldi(keys)}
        if expected - decoded:
            raise MergeError(f"{len(expected - decoded)} key(s) of {keys} not in {out_dir}/keys.*.scp: "
                             f"{name_keys(expected - decoded)}")
    where = f"{out_dir}/output.*/{task + '/' if task else ''}1best_recog"
    merged = []
    for name in files:
        paths = [out_dir / f"output.{j}" / task / "1best_recog" / name for j in range(1, nj + 1)]
        missing = [str(p) for p in paths if not p.is_file()]
        if len(missing) == len(paths):
            continue
        if missing:
            raise MergeError(f"{name} is missing from {len(missing)} of {nj} jobs: "
                             f"{', '.join(missing)} (did those jobs fail? see {out_dir}/logs)")
        lines: dict[str, str] = {}
        for path in paths:
            for key, value in read_kaldi(path).items():
                if key in lines:
                    raise MergeError(f"{path}: key {key!r} also decoded by another job")
                lines[key] = value
        outside = set(lines) - decoded
        if outside:
            raise MergeError(f"{where}/{name}: {len(outside)} key(s) not in keys.*.scp: {name_keys(outside)}")
        lines = {key: value for key, value in lines.items() if key in expected}
        problems = key_mismatch(expected, lines, "key", "not decoded", "unexpected")
        if problems:
            raise MergeError(f"{where}/{name}: " + "; ".join(problems))
        target = (target_dir or out_dir) / "1best_recog" / name
        write_lines(target, (f"{key[len(prefix):]} {lines[key]}\n" for key in sorted(lines)))
        merged.append(name)
    if not merged:
        raise MergeError(f"none of {', '.join(files)} found under {where}")
    return merged


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, required=True, help="number of jobs")
    parser.add_argument("--dir", type=Path, required=True, help="decoding folder")
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="1best_recog files")
    parser.add_argument("--task", default="", help="task sub-folder of each job's output")
    parser.add_argument("--out_dir", type=Path, default=None, help="default: --dir")
    parser.add_argument("--keys", type=Path, default=None, help="merge only the keys of this Kaldi file")
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error(f"--nj must be >= 1, got {args.nj}")
    try:
        merged = merge(args.dir, args.nj, args.files, args.task, args.out_dir, args.keys)
    except (OSError, ValueError, MergeError) as err:
        print(f"merge_decode.py: error: {err}", file=sys.stderr)
        return 1
    print(f"merge_decode.py: merged {', '.join(merged)} of {args.nj} jobs into {args.out_dir or args.dir}/1best_recog",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
