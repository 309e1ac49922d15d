"""MuST-C reader (English -> French): the segments of every set, for ``local.st_corpus``.

Layout (the tarball ``MUSTC_v<version>_en-fr.tar.gz`` unpacks to ``en-fr/``)::

    <MUSTC>/en-fr/data/<set>/wav/ted_<talk>.wav      one 16 kHz recording per talk
    <MUSTC>/en-fr/data/<set>/txt/<set>.yaml          one segment per line
    <MUSTC>/en-fr/data/<set>/txt/<set>.en            the transcript of each segment, same line
    <MUSTC>/en-fr/data/<set>/txt/<set>.fr            its French translation, same line

with ``<set>`` in train, dev, tst-COMMON, tst-HE. A YAML line is a one-item list holding a
flow mapping, e.g. ``- {duration: 3.500000, offset: 16.210000, rel_id: 0, speaker_id: spk.1,
wav: ted_1.wav}``: the segment is ``[offset, offset + duration)`` seconds of ``wav``.

What differs between releases, and how it is handled:

* v1.0 (2019) and v1.2 ship en-fr; v2.0 only en-de/ja/zh; v3.0 (2023) en-fr again. All keep the
  ``en-XX/data/<set>/{wav,txt}`` tree and the one-line YAML entries, so one reader serves all.
* The keys besides ``duration``, ``offset`` and ``wav`` are not the same in every release
  (``rel_id`` is absent from some v1.0 files, the key order differs: ESPnet's must_c v1/v2 awk
  scripts read the speaker from different columns for that reason). Entries are parsed by key,
  never by column, and other keys are ignored: only ``duration``, ``offset`` and ``wav`` are
  required. The speaker is the talk (``ted_<talk>``, zero-padded like ESPnet's ids): one TED
  talk has one speaker, whatever ``speaker_id`` spells.
* ``--db`` may name the folder holding ``en-fr/`` (e.g. ``MUSTC_v1.0``), the ``en-fr`` folder
  itself, or the folder of an unpacked tarball one level above (``<db>/MUSTC_v*/en-fr``); which
  one is detected by looking for ``en-fr/data`` (``find_pair_dir``), and an error lists the
  paths tried. All four sets must exist (every release has them).

Texts: Unicode NFC, whitespace collapsed (a tab would break a Kaldi file); everything else,
including sound-event notes such as ``(Laughter)``/``(Rires)``, is kept as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from local.st_corpus import CorpusError, CorpusSet, Segment, normalize_text, read_text_lines, safe_id, segment_id

PAIR = "en-fr"
# MuST-C set -> (data dir name, kind); test sets get _nb/_wb data dirs
SETS = {
    "train": ("mustc_train", "train"),
    "dev": ("mustc_dev", "dev"),
    "tst-COMMON": ("mustc_tst_common", "test"),
    "tst-HE": ("mustc_tst_he", "test"),
}
REQUIRED_KEYS = ("duration", "offset", "wav")

# fast path for the plain one-line form; anything else (quotes, other spacing) goes to PyYAML
_FLOW_RE = re.compile(r"^-\s*\{(.*)\}\s*$")
_PAIR_RE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*:\s*([^,:{}\[\]'\"]*?)\s*$")
_TALK_RE = re.compile(r"^ted_(\d+)$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def find_pair_dir(db: Path, pair: str = PAIR) -> Path:
    """The ``en-fr`` folder (the one holding ``data/``) under ``db``; CorpusError lists the paths tried."""
    db = Path(db)
    candidates = [db / pair] + ([db] if db.name == pair else []) + sorted(db.glob(f"*/{pair}"))
    for c in candidates:
        if (c / "data").is_dir():
            return c
    tried = ", ".join(str(c / "data") for c in candidates[:4])
    raise CorpusError(f"MuST-C {pair} not found under {db}: expected a folder {pair}/data/{{train,dev,tst-COMMON,"
                      f"tst-HE}} (tried {tried}); set MUSTC in db.sh to the folder holding {pair}/")


def parse_yaml_line(line: str, where: str) -> dict:
    """One YAML entry line -> its mapping (``where``: ``file:line`` for the error message)."""
    m = _FLOW_RE.match(line)
    if m:
        entry = {}
        for item in m.group(1).split(","):
            kv = _PAIR_RE.match(item)
            if not kv:
                break
            entry[kv.group(1)] = kv.group(2)  # plain scalars: converted where used
        else:
            return entry
    try:
        loaded = yaml.load(line, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise CorpusError(f"{where}: not YAML ({exc.__class__.__name__}); expected a line like "
                          "'- {duration: 3.5, offset: 16.2, speaker_id: spk.1, wav: ted_1.wav}'") from exc
    if not (isinstance(loaded, list) and len(loaded) == 1 and isinstance(loaded[0], dict)):
        raise CorpusError(f"{where}: {line.strip()!r} is not a one-entry list of a mapping; expected a line like "
                          "'- {duration: 3.5, offset: 16.2, speaker_id: spk.1, wav: ted_1.wav}'")
    return loaded[0]


def talk_speaker(wav: str) -> str:
    """``ted_1.wav`` -> ``ted_00001`` (ids sort by talk); other names: the file stem, Kaldi-safe."""
    stem = Path(wav).stem
    m = _TALK_RE.match(stem)
    return f"ted_{int(m.group(1)):05d}" if m else safe_id(stem)


def read_set(pair_dir: Path, name: str) -> list[Segment]:
    """Segments of one MuST-C set, in YAML order; CorpusError on a malformed or misaligned file."""
    txt = pair_dir / "data" / name / "txt"
    yaml_path, en_path, fr_path = txt / f"{name}.yaml", txt / f"{name}.en", txt / f"{name}.fr"
    for path in (yaml_path, en_path, fr_path):
        if not path.is_file():
            raise CorpusError(f"{path}: missing; a MuST-C set holds txt/<set>.yaml, txt/<set>.en, txt/<set>.fr")
    entries = []
    with open(yaml_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append((n, parse_yaml_line(line, f"{yaml_path}:{n}")))
    en, fr = read_text_lines(en_path), read_text_lines(fr_path)
    if not len(entries) == len(en) == len(fr):
        raise CorpusError(f"{yaml_path}: {len(entries)} entries, but {en_path.name} has {len(en)} lines and "
                          f"{fr_path.name} {len(fr)}; expected one text line per entry")
    wav_dir = pair_dir / "data" / name / "wav"
    segments = []
    for (n, entry), en_text, fr_text in zip(entries, en, fr):
        where = f"{yaml_path}:{n}"
        missing = [k for k in REQUIRED_KEYS if k not in entry]
        if missing:
            raise CorpusError(f"{where}: no {', '.join(missing)}; expected the keys {', '.join(REQUIRED_KEYS)}")
        try:
            offset, duration = float(entry["offset"]), float(entry["duration"])
        except (TypeError, ValueError) as exc:
            raise CorpusError(f"{where}: offset {entry['offset']!r}, duration {entry['duration']!r}; "
                              "expected numbers of seconds") from exc
        if offset < 0 or duration < 0:
            raise CorpusError(f"{where}: offset {offset}, duration {duration}; expected values >= 0")
        wav = str(entry["wav"])
        speaker = talk_speaker(wav)
        segments.append(Segment(utt=segment_id(speaker, offset, offset + duration), speaker=speaker,
                                audio=str(wav_dir / wav), start=offset, end=offset + duration,
                                en=normalize_text(en_text), fr=normalize_text(fr_text), where=where))
    return segments


def read_corpus(db: Path, **_) -> list[CorpusSet]:
    """Every MuST-C en-fr set under ``db`` (see the module docstring)."""
    pair_dir = find_pair_dir(db)
    sets = []
    for name, (dir_name, kind) in SETS.items():
        if not (pair_dir / "data" / name).is_dir():
            raise CorpusError(f"{pair_dir / 'data' / name}: missing; MuST-C {PAIR} has the sets {', '.join(SETS)}")
        sets.append(CorpusSet(name=dir_name, kind=kind, source=name, segments=read_set(pair_dir, name)))
    return sets
