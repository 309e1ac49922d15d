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

Like merge_decode.py, it imports nothing from ``local`` (its tests run it as a script).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def read_scp_lines(path: Path) -> list[str]:
    """The non-empty lines of an scp (without their newline); no entries or a key twice is a ValueError."""
    lines: list[str] = []
    first_seen: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            key = line.split(maxsplit=1)[0]
            if key in first_seen:
                raise ValueError(f"{path}:{lineno}: duplicate key {key!r} (first at line {first_seen[key]})")
            first_seen[key] = lineno
            lines.append(line)
    if not lines:
        raise ValueError(f"{path}: no entries to split")
    return lines


def split_contiguous(items: list[str], nj: int) -> list[list[str]]:
    """Splits items into ``nj`` (``1 <= nj <= len(items)``) contiguous chunks whose sizes differ by <= 1."""
    base, extra = divmod(len(items), nj)
    # the first `extra` chunks take one more item
    bounds = [j * base + min(j, extra) for j in range(nj + 1)]
    return [items[bounds[j]:bounds[j + 1]] for j in range(nj)]


def by_duration(lines: list[str]) -> list[str]:
    """The wav.scp lines ordered by audio duration (ties: original order)."""
    import soundfile

    def seconds(line: str) -> float:
        key, path = line.split(maxsplit=1)
        try:
            return soundfile.info(path.strip()).duration
        except RuntimeError as err:
            raise ValueError(f"cannot read the audio of {key} ({path.strip()}): {err}") from err

    return sorted(lines, key=seconds)


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
    lines = read_scp_lines(scp)
    extras = {path: {line.split(maxsplit=1)[0]: line for line in read_scp_lines(path)} for path in extra}
    if nj > len(lines):
        print(f"split_keys.py: {scp} has only {len(lines)} keys: using nj={len(lines)} instead of {nj}",
              file=sys.stderr)
        nj = len(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, nj)
    for j, chunk in enumerate(split_contiguous(lines, nj), 1):
        if sort_by_duration:
            try:
                chunk = by_duration(chunk)
            except ValueError as err:
                raise ValueError(f"{scp}: {err}") from None
        (out_dir / f"keys.{j}.scp").write_text("\n".join(chunk) + "\n", encoding="utf-8")
        for path, rows in extras.items():
            try:
                lines_j = [rows[line.split(maxsplit=1)[0]] for line in chunk]
            except KeyError as err:
                raise ValueError(f"{path} has no line for {err.args[0]} of {scp}") from None
            (out_dir / f"{path.name}.{j}").write_text("\n".join(lines_j) + "\n", encoding="utf-8")
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
