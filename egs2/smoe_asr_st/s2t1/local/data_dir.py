"""S2T data dirs: the prompt tokens, the one writer, and ``validate_data_dir``.

A data dir holds Kaldi files keyed by utterance id (see ``file_io``):

* ``wav.scp`` (audio path), ``utt2bw`` (``<nb>`` or ``<wb>``), ``utt2spk`` and ``spk2utt``;
* ``text``: the decoder target after its prompt, ``<eng><task><notimestamps> words``;
* ``text.ctc``: the English transcript (the CTC target of every task); ``text.prev``: ``<na>``;
* test dirs also: the plain references ``text.asr`` (English) and ``text.st_fra`` (French).

Training dirs hold each recording twice, ``<base>_asr`` and ``<base>_st_fra``; test dirs once,
as ``<base>`` (the task is chosen at decoding time).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Mapping

from local.file_io import c_sorted, read_kaldi_lines, write_kaldi

LANG_TOKEN = "<eng>"
TASK_TOKENS = {"asr": "<asr>", "st_fra": "<st_fra>"}
NOTIME_TOKEN = "<notimestamps>"
NA_TOKEN = "<na>"
BANDWIDTH_TOKENS = {"nb": "<nb>", "wb": "<wb>"}
# the special tokens that open a `text` line (any number of <...> tokens, then spaces)
PROMPT_RE = re.compile(r"^(?:<[^<>\s]+>)+\s*")
# files whose values are texts that must not be empty
TEXT_FILES = ("text", "text.ctc", "text.prev", "text.asr", "text.st_fra")


class DataDirError(ValueError):
    """A data dir breaks the contract above (the message names the file, line and utterance)."""


def prompt_text(task: str, target: str) -> str:
    """``text`` value of one utterance: the prompt of ``task`` and the target."""
    return f"{LANG_TOKEN}{TASK_TOKENS[task]}{NOTIME_TOKEN} {target}"


def new_files() -> dict[str, dict[str, str]]:
    """Empty ``{file name: {utt: value}}`` for ``add_utterance``."""
    return defaultdict(dict)


def add_utterance(files: dict, utt: str, wav: str, bw: str, task: str, target: str, transcript: str) -> None:
    """One utterance: audio, bandwidth token, prompt + target, CTC transcript, no previous text."""
    files["wav.scp"][utt] = wav
    files["text"][utt] = prompt_text(task, target)
    files["text.ctc"][utt] = transcript
    files["text.prev"][utt] = NA_TOKEN
    files["utt2bw"][utt] = BANDWIDTH_TOKENS[bw]


def add_recording(files: dict, base: str, wav: str, bw: str, en: str, fr: str, test: bool = False) -> list[str]:
    """One recording with its English transcript and French translation; returns its utterance ids.

    A training dir gets ``<base>_asr`` and, when ``fr`` is not empty, ``<base>_st_fra``; a test dir
    (``test``) gets ``<base>`` once, with the plain references ``text.asr`` and ``text.st_fra``.
    """
    if test:
        add_utterance(files, base, wav, bw, "asr", en, en)
        files["text.asr"][base], files["text.st_fra"][base] = en, fr
        return [base]
    tasks = [("asr", en)] + ([("st_fra", fr)] if fr else [])
    for task, target in tasks:
        add_utterance(files, f"{base}_{task}", wav, bw, task, target, en)
    return [f"{base}_{task}" for task, _ in tasks]


def write_data_dir(out: Path, files: Mapping[str, Mapping[str, str]], utt2spk: Mapping[str, str] | None = None) -> int:
    """Write every file of ``files`` plus ``utt2spk``/``spk2utt`` and validate the dir; returns #utterances.

    ``utt2spk`` defaults to one speaker per utterance. Speaker ids must prefix their utterance
    ids (Kaldi's sorting rule: utterances sorted by id are sorted by speaker).
    """
    out = Path(out)
    utts = set(files["wav.scp"])
    utt2spk = dict(utt2spk) if utt2spk is not None else {u: u for u in utts}
    for name, rows in {**files, "utt2spk": utt2spk}.items():
        if set(rows) != utts:
            extra = sorted(set(rows) ^ utts)[:5]
            raise DataDirError(f"{out / name}: utterance ids differ from wav.scp's, e.g. {extra}")
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            raise DataDirError(f"{out}/utt2spk: utterance {utt} does not start with its speaker id {spk}")
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for utt in c_sorted(utt2spk):
        spk2utt[utt2spk[utt]].append(utt)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in {**files, "utt2spk": utt2spk, "spk2utt": {s: " ".join(u) for s, u in spk2utt.items()}}.items():
        write_kaldi(out / name, rows)
    return validate_data_dir(out)


def validate_data_dir(path: Path) -> int:
    """Check a data dir; returns its number of utterances, raises DataDirError naming what is wrong.

    Checked: ``wav.scp`` exists and is not empty; in every file the ids are sorted (byte order)
    and unique, and the utterance files hold the ids of ``wav.scp``; no text is empty (a ``text``
    line needs words after its prompt); every ``utt2bw`` value is a known bandwidth token;
    ``spk2utt`` lists exactly the utterances of ``utt2spk``.
    """
    path = Path(path)
    if not (path / "wav.scp").is_file():
        raise DataDirError(f"{path}/wav.scp: missing; expected an S2T data dir (see local/data_dir.py)")
    # wav.scp first: the other files are checked against its ids
    names = sorted((p.name for p in path.iterdir() if p.name in ("wav.scp", "utt2bw", "utt2spk", "spk2utt")
                    or p.name.startswith("text")), key=lambda name: (name != "wav.scp", name))
    files = {name: read_kaldi_lines(path / name) for name in names}
    ids = [key for _, key, _ in files["wav.scp"]]
    if not ids:
        raise DataDirError(f"{path}/wav.scp: empty; expected one line per utterance")
    for name, rows in files.items():
        where = path / name
        for (_, prev, _), (n, key, _) in zip(rows, rows[1:]):
            if key.encode() <= prev.encode():
                raise DataDirError(f"{where}:{n}: id {key} after {prev}; expected sorted (LC_ALL=C), unique ids")
        if name == "spk2utt":
            listed = c_sorted(u for _, _, value in rows for u in value.split())
            if listed != c_sorted(ids):
                raise DataDirError(f"{where}: lists {len(listed)} utterances; expected the {len(ids)} of wav.scp")
            continue
        for i, (n, key, value) in enumerate(rows):
            if i >= len(ids) or key != ids[i]:
                expected = f"utterance {ids[i]}" if i < len(ids) else "no more lines"
                raise DataDirError(f"{where}:{n}: utterance {key}; expected {expected} as in wav.scp")
            if name in TEXT_FILES and not (PROMPT_RE.sub("", value) if name == "text" else value).strip():
                raise DataDirError(f"{where}:{n}: utterance {key}: empty text; expected words")
            if name == "utt2bw" and value not in BANDWIDTH_TOKENS.values():
                raise DataDirError(f"{where}:{n}: utterance {key}: bandwidth {value!r}; expected one of "
                                   f"{', '.join(BANDWIDTH_TOKENS.values())}")
        if len(rows) < len(ids):
            raise DataDirError(f"{where}: {len(rows)} lines; expected the {len(ids)} utterances of wav.scp "
                               f"(first missing: {ids[len(rows)]})")
    return len(ids)
