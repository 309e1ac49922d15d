#!/usr/bin/env python3
"""Splits a Kaldi scp into contiguous key files for parallel decoding.

Usage::

    nj=$(python -m local.split_keys --scp data/test_nb/wav.scp --nj 8 --out_dir DIR)

writes ``DIR/keys.1.scp .. DIR/keys.<nj>.scp``. Every key lands in exactly one
file, in the order of the scp; chunk sizes differ by at most one. ``nj`` is
capped at the number of keys, and the effective value is the only thing
printed on stdout so that run.sh can use it for ``JOB=1:${nj}``. The files keep
the full scp lines: ESPnet's ``--key_file`` only reads the first column.

``--sort_by_duration``: each chunk lists its keys from the shortest audio to
the longest (a wav.scp of plain paths), so the batched beam search of a job
decodes utterances of similar length together instead of padding short ones.
ESPnet's decoding reads its data files as streams in file order, so a sorted
job decodes from its own files: ``keys.J.scp`` is a wav.scp, and ``--extra
FILE`` (e.g. the set's utt2bw) writes ``DIR/<FILE's name>.J`` with the same
keys in the same order.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from local.file_io import read_kaldi, write_lines


def split_contiguous(items: list[str], nj: int) -> list[list[str]]:
    """Splits items into ``nj`` (``1 <= nj <= len(items)``) contiguous chunks whose sizes differ by <= 1."""
    base, extra = divmod(len(items), nj)
    # the first `extra` chunks take one more item
    bounds = [j * base + min(j, extra) for j in range(nj + 1)]
    return [items[bounds[j]:bounds[j + 1]] for j in range(nj)]


def by_duration(keys: list[str], scp: dict[str, str]) -> list[str]:
    """The keys of a wav.scp (``{key: audio path}``) ordered by audio duration (ties: original order)."""
    import soundfile

    def seconds(key: str) -> float:
        path = scp[key].strip()
        try:
            return soundfile.info(path).duration
        except RuntimeError as err:
            raise ValueError(f"cannot read the audio of {key} ({path}): {err}") from err

    return sorted(keys, key=seconds)


def remove_stale(out_dir: Path, nj: int) -> None:
    """Deletes keys.J.scp with J > nj left by an earlier run with more jobs."""
    for path in out_dir.glob("keys.*.scp"):
        match = re.fullmatch(r"keys\.(\d+)\.scp", path.name)
        if match and int(match.group(1)) > nj:
            path.unlink()


def split(scp: Path, nj: int, out_dir: Path, sort_by_duration: bool = False, extra: list[Path] = ()) -> int:
    """Writes the key files (and the ``extra`` files' chunks); returns the number of jobs.

    Raises:
        ValueError: On a malformed scp or extra file, or unreadable audio (with --sort_by_duration).
    """
    rows = read_kaldi(scp)
    if not rows:
        raise ValueError(f"{scp}: no entries to split")
    extras = {path: read_kaldi(path) for path in extra}
    if nj > len(rows):
        print(f"split_keys.py: {scp} has only {len(rows)} keys: using nj={len(rows)} instead of {nj}",
              file=sys.stderr)
        nj = len(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, nj)
    for j, keys in enumerate(split_contiguous(list(rows), nj), 1):
        if sort_by_duration:
            try:
                keys = by_duration(keys, rows)
            except ValueError as err:
                raise ValueError(f"{scp}: {err}") from None
        write_lines(out_dir / f"keys.{j}.scp", (f"{key} {rows[key]}\n" for key in keys))
        for path, values in extras.items():
            try:
                lines = [f"{key} {values[key]}\n" for key in keys]
            except KeyError as err:
                raise ValueError(f"{path} has no line for {err.args[0]} of {scp}") from None
            write_lines(out_dir / f"{path.name}.{j}", lines)
    return nj


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scp", type=Path, required=True, help="input scp")
    parser.add_argument("--nj", type=int, required=True, help="requested jobs")
    parser.add_argument("--out_dir", type=Path, required=True, help="output folder")
    parser.add_argument("--sort_by_duration", action="store_true", help="shortest first in each chunk")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="per-utterance file to split like the scp (same keys, same order)")
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error(f"--nj must be >= 1, got {args.nj}")
    try:
        print(split(args.scp, args.nj, args.out_dir, args.sort_by_duration, args.extra))
    except (OSError, ValueError) as err:
        print(f"split_keys.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
