"""Kaldi-style and TSV text files: the recipe's one reader and writer of each.

Kaldi files (``wav.scp``, ``text``, ``utt2bw``, ...): one ``<key> <value>`` line per entry,
keys sorted in byte order (``LC_ALL=C sort``), the value after the first space (it may be
empty). A value cannot hold a tab or a line break: writing one is an error.

TSV files (inventories, skip logs, plans): a header line, then one row per line. The one rule
for cells: a cell is ``str(value)`` (a float with 4 decimals) in which backslash, tab, line feed
and carriage return are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``; ``read_tsv`` undoes it. Any
text thus survives a round trip and a row is always one line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
_ESCAPE_RE = re.compile(r"[\\\t\n\r]")
_UNESCAPE_RE = re.compile(r"\\[\\tnr]")


def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sort like ``LC_ALL=C sort`` (byte order of the UTF-8 encoding)."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def display_path(path: Path | str, cwd: Path | None = None) -> str:
    """Path relative to ``cwd`` (the recipe dir) when inside it, else absolute."""
    path = Path(path).absolute()
    cwd = (cwd or Path.cwd()).absolute()
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def name_keys(keys: Iterable[str], limit: int = 10) -> str:
    """The first ``limit`` keys in byte order, then how many more: for error messages."""
    keys = c_sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def key_mismatch(expected: Iterable[str], found: Iterable[str], noun: str, missing: str, extra: str) -> list[str]:
    """How two key sets differ, e.g. ``["2 key(s) not decoded: a, b"]``; empty when they agree.

    ``missing`` describes the expected keys not found, ``extra`` the found keys not expected.
    """
    expected, found = set(expected), set(found)
    return [f"{len(keys)} {noun}(s) {what}: {name_keys(keys)}"
            for keys, what in ((expected - found, missing), (found - expected, extra)) if keys]


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write text lines (each with its line end) through a temporary file: a killed stage leaves
    the old file or none, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def read_kaldi_lines(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, key, value)`` of every line, in file order (nothing checked)."""
    with open(path, encoding="utf-8") as f:
        return [(n, *line.rstrip("\n").partition(" ")[::2]) for n, line in enumerate(f, 1)]


def read_kaldi(path: Path) -> dict[str, str]:
    """``{key: value}`` of a Kaldi file; an empty line or a repeated key is an error."""
    rows: dict[str, str] = {}
    for n, key, value in read_kaldi_lines(path):
        if not key:
            raise ValueError(f"{path}:{n}: empty line; expected '<key> <value>'")
        if key in rows:
            raise ValueError(f"{path}:{n}: key {key} repeated (first seen earlier in the file)")
        rows[key] = value
    return rows


def write_kaldi(path: Path, rows: Mapping[str, str]) -> None:
    """Write ``<key> <value>`` lines in byte order of the keys."""
    for key, value in rows.items():
        if any(c in key + value for c in "\t\n\r") or not key or " " in key:
            raise ValueError(f"{path}: key {key!r}: expected a key without spaces and no tab or line break")
    write_lines(path, (f"{key} {rows[key]}\n" for key in c_sorted(rows)))


def _cell(value) -> str:
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], text)


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Mapping | Sequence]) -> int:
    """Write a header and rows (mappings keyed by the header, or sequences); returns #rows."""
    lines = ["\t".join(header) + "\n"]
    for row in rows:
        cells = [row.get(key, "") for key in header] if isinstance(row, Mapping) else list(row)
        if len(cells) != len(header):
            raise ValueError(f"{path}: row {len(lines)} has {len(cells)} cells, the header {len(header)}")
        lines.append("\t".join(map(_cell, cells)) + "\n")
    write_lines(path, lines)
    return len(lines) - 1


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a TSV as ``{column: text}``; a row with the wrong number of cells is an error."""
    with open(path, encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = []
        for n, line in enumerate(f, 2):
            cells = line.rstrip("\n").split("\t")
            if len(cells) != len(header):
                raise ValueError(f"{path}:{n}: {len(cells)} cells, expected {len(header)} ({', '.join(header)})")
            rows.append({k: _UNESCAPE_RE.sub(lambda m: _UNESCAPES[m.group(0)], c) for k, c in zip(header, cells)})
    return rows
