#!/usr/bin/env python3
"""Splits Kaldi scps into key files for parallel decoding.

Usage::

    nj=$(python -m local.split_keys --scp data/test_nb/wav.scp --scp data/test_wb/wav.scp \
             --extra data/test_nb/utt2bw --extra data/test_wb/utt2bw --nj 8 --out_dir DIR)

writes ``DIR/keys.1.scp .. DIR/keys.<nj>.scp``. Several ``--scp`` (e.g. every test
set) are split as one, so ESPnet and the model load once per job rather than once
per set and job; their keys are written as ``<set>/<key>`` (``<set>``: the scp's
folder name), as sets may share keys (tts_ui's NB and WB tests do).
Every key lands in exactly one file; chunk sizes differ by at most one. ``nj`` is
capped at the number of keys, and the effective value is the only thing printed
on stdout so that run.sh can use it for ``JOB=1:${nj}``. The files keep the full
scp lines: ESPnet's ``--key_file`` only reads the first column.

Without ``--sort_by_duration`` the chunks are contiguous, in the order of the
scps. With it, all keys are ordered from the shortest audio to the longest and
dealt to the jobs in turn (key i to job ``i % nj + 1``): each job decodes
utterances of similar length together in its batched beam search instead of
padding short ones, and every job gets a similar amount of audio. ESPnet's
decoding reads its data files as streams in file order, so a sorted job decodes
from its own files: ``keys.J.scp`` is a wav.scp, and ``--extra FILE`` (e.g. a
set's utt2bw) writes ``DIR/<FILE's name>.J`` with the same keys in the same
order; extra files of the same name (one per set, keys prefixed alike) are one.
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


def remove_stale(out_dir: Path, nj: int, names: list[str]) -> None:
    """Deletes keys.J.scp and <name>.J (an extra file's chunk) with J > nj, left by an earlier run with more jobs."""
    chunk = re.compile("|".join([r"keys\.(\d+)\.scp", *(rf"{re.escape(name)}\.(\d+)" for name in names)]))
    for path in out_dir.iterdir():
        match = chunk.fullmatch(path.name)
        if match and int(next(g for g in match.groups() if g)) > nj:
            path.unlink()


def read_sets(scps: list[Path], extra: list[Path]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The scps' lines as one ``{key: value}`` and the extra files' as ``{file name: {key: value}}``;
    with several scps each key is ``<set>/<key>``, ``<set>`` the name of the file's folder.

    Raises:
        ValueError: On a malformed file, or a key twice after prefixing (set folders of one name).
    """
    several = len(scps) > 1
    rows: dict[str, str] = {}
    source: dict[str, Path] = {}
    extras: dict[str, dict[str, str]] = {}
    for path in [*scps, *extra]:
        table = rows if path in scps else extras.setdefault(path.name, {})
        prefix = f"{path.resolve().parent.name}/" if several else ""
        for key, value in read_kaldi(path).items():
            if prefix + key in table:
                raise ValueError(f"key {key} is in both {source[prefix + key]} and {path} (with several --scp, "
                                 "keys become <set>/<key>: the set folders need different names)")
            table[prefix + key], source[prefix + key] = value, path
    return rows, extras


def split(scps: list[Path], nj: int, out_dir: Path, sort_by_duration: bool = False, extra: list[Path] = ()) -> int:
    """Writes the key files (and the ``extra`` files' chunks); returns the number of jobs.

    Raises:
        ValueError: On a malformed scp or extra file, or unreadable audio (with --sort_by_duration).
    """
    rows, extras = read_sets(list(scps), list(extra))
    if not rows:
        raise ValueError(f"{', '.join(map(str, scps))}: no entries to split")
    if nj > len(rows):
        print(f"split_keys.py: {len(rows)} keys only: using nj={len(rows)} instead of {nj}", file=sys.stderr)
        nj = len(rows)
    if sort_by_duration:
        ordered = by_duration(list(rows), rows)
        chunks = [ordered[j::nj] for j in range(nj)]
    else:
        chunks = split_contiguous(list(rows), nj)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, nj, list(extras))
    for j, keys in enumerate(chunks, 1):
        write_lines(out_dir / f"keys.{j}.scp", (f"{key} {rows[key]}\n" for key in keys))
        for name, values in extras.items():
            missing = [key for key in keys if key not in values]
            if missing:
                raise ValueError(f"no {name} line for {missing[0]} (--extra files: {', '.join(map(str, extra))})")
            write_lines(out_dir / f"{name}.{j}", (f"{key} {values[key]}\n" for key in keys))
    return nj


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scp", type=Path, action="append", required=True,
                        help="input scp; repeat it to split several sets as one")
    parser.add_argument("--nj", type=int, required=True, help="requested jobs")
    parser.add_argument("--out_dir", type=Path, required=True, help="output folder")
    parser.add_argument("--sort_by_duration", action="store_true", help="shortest first, dealt to the jobs in turn")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="per-utterance file to split like the scps (same keys, same order)")
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
