"""Shared helpers for the Asterisk core-sounds data preparation (stages 1-3).

Transcript format (``core-sounds-<lang>.txt[.gz]`` in the Debian packages and
the upstream tarballs): one ``name: text`` line per prompt, ``;`` comment lines,
blank lines, names with a subfolder (``digits/1``), entries with no text
(``dir-welcome:``), annotations in brackets (``[ascending tones]``,
``<beep ascending>``, ``dot [.]``) and trailing stage directions in parentheses
(``(10 seconds of silence)``, ``IAX (note: does not say "2")``).

Text normalisation (:func:`normalize_text`), applied identically to English
and French:

1. Unicode NFC; tabs, carriage returns and newlines become spaces.
2. Bracketed annotations ``[...]`` and ``<...>`` are removed wherever they are.
3. A parenthesised remark that ends the text (or is all of it) is removed: in
   this corpus those are stage directions.  Parentheses inside a sentence are
   kept, they are real wording (fr ``priv-callee-options``:
   "(ne m'appelez plus, jamais)").
4. Runs of whitespace collapse to one space; leading/trailing space is stripped.

Case, digits and punctuation are otherwise kept as written.
"""

from __future__ import annotations

import gzip
import logging
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple

# Subfolders that hold one prompt family each (the family is the folder name).
SUBFOLDER_FAMILIES = ("digits", "letters", "phonetic", "dictate", "followme", "silence")


# --------------------------------------------------------------------------- text
class TranscriptEntry(NamedTuple):
    """One parsed ``name: text`` line (``raw`` is the text as written)."""

    name: str
    raw: str
    line_no: int


_NAME_RE = re.compile(r"^[^\s:]+$")


def read_text_file(path: Path) -> str:
    """Read a (possibly gzipped) transcript: UTF-8, falling back to Latin-1 (older upstream French tarballs)."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        logging.warning("%s is not UTF-8; decoding it as Latin-1", path)
        return data.decode("latin-1")


def parse_transcript(path: Path) -> tuple[dict[str, TranscriptEntry], dict[str, int]]:
    """Parse a core-sounds transcript.

    Returns ``(entries, stats)``: entries keyed by prompt name (first occurrence
    wins), stats counting ``entries, comments, blank, malformed, duplicate``.
    Malformed lines and duplicates are logged with their line number.
    """
    entries: dict[str, TranscriptEntry] = {}
    stats = {"entries": 0, "comments": 0, "blank": 0, "malformed": 0, "duplicate": 0}
    for line_no, line in enumerate(read_text_file(path).splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            stats["blank"] += 1
            continue
        if stripped.startswith(";") or stripped.startswith("#"):
            stats["comments"] += 1
            continue
        name, sep, text = stripped.partition(":")
        name = name.strip()
        if not sep or not _NAME_RE.match(name):
            stats["malformed"] += 1
            logging.warning("%s:%d: malformed line skipped: %r", path, line_no, line)
            continue
        if name in entries:
            stats["duplicate"] += 1
            logging.warning("%s:%d: duplicate entry %r ignored (first at line %d)", path, line_no, name,
                            entries[name].line_no)
            continue
        entries[name] = TranscriptEntry(name, text.strip(), line_no)
        stats["entries"] += 1
    return entries, stats


_BRACKETS_RE = re.compile(r"\[[^\[\]]*\]|<[^<>]*>")
_TRAILING_PAREN_RE = re.compile(r"\([^()]*\)[\s.]*$")
_SPACE_RE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Light, language-independent normalisation (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    text = _BRACKETS_RE.sub(" ", text)
    text = _TRAILING_PAREN_RE.sub(" ", text.rstrip())
    return _SPACE_RE.sub(" ", text).strip()


def clean_field(text: str) -> str:
    """Make a value safe for one TSV cell (no tabs/newlines), otherwise unchanged."""
    return _SPACE_RE.sub(" ", text.replace("\t", " ")).strip()


# --------------------------------------------------------------------------- names
def prompt_family(name: str) -> str:
    """Split unit: the subfolder for ``digits/1``-style names, else the prefix before '-'."""
    return name.split("/" if "/" in name else "-", 1)[0]


def flat_name(name: str) -> str:
    """``digits/h-1`` -> ``digits-h-1`` (used in utterance ids and file names)."""
    return name.replace("/", "-")


def utt_base(name: str, bandwidth: str) -> str:
    """Utterance base id, e.g. ``en_nb_vm-tocallback``."""
    if bandwidth not in ("nb", "wb"):
        raise ValueError(f"bandwidth must be nb or wb, got {bandwidth!r}")
    return f"en_{bandwidth}_{flat_name(name)}"


def is_silence(name: str) -> bool:
    return prompt_family(name) == "silence" and "/" in name
