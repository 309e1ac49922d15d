"""Europarl-ST reader (English speech -> French text): the segments of every split, for ``local.st_corpus``.

Layout of release v1.1 (``v1.1.tar.gz``; ``--db`` may name the folder holding ``en/``, or one
level above it, e.g. the ``v1.1`` folder's parent)::

    <root>/en/audios/<speech>.m4a                   one recording per speech (AAC, 44.1 kHz)
    <root>/en/fr/<split>/segments.lst               '<speech> <start_s> <end_s>' per line
    <root>/en/fr/<split>/segments.en                the transcript of each segment, same line
    <root>/en/fr/<split>/segments.fr                its French translation, same line
    <root>/en/fr/<split>/speeches.lst, speakers.lst one line per speech: its id, its speaker

Splits train, dev, test. ``train-noisy`` (segments whose alignment failed the corpus's quality
filter) is left out by default; ``--europarl_splits`` can name it (it becomes another training
set, ``europarl_st_train-noisy``, that run.sh does not use unless told).

Audio: ``<speech>.m4a`` needs ffmpeg (neither libsndfile nor torchaudio 2.11 without torchcodec
decodes AAC); a ``<speech>.wav`` or ``.flac`` next to it (as converted by fairseq's and other
recipes' instructions, which delete the .m4a) is read with soundfile and preferred.

Speaker: ``speakers.lst`` holds one line per line of ``speeches.lst``; the speaker id is the
line's last ``_``-separated field (the form the corpus's loaders read). Without those files, or
when they disagree in length (logged), the speech is the speaker (one speech, one speaker).
Utterance ids: ``<speaker>_<speech>_<start_ms>_<end_ms>`` (``<speech>_<start_ms>_<end_ms>`` when
the speaker is the speech).
"""

from __future__ import annotations

import logging
from pathlib import Path

from local.st_corpus import CorpusError, CorpusSet, Segment, normalize_text, read_text_lines, safe_id, segment_id

SRC, TGT = "en", "fr"
DEFAULT_SPLITS = ("train", "dev", "test")
KINDS = {"train": "train", "train-noisy": "train", "dev": "dev", "test": "test"}
# formats read with soundfile, preferred over the .m4a (ffmpeg) when present
SOUNDFILE_SUFFIXES = (".wav", ".flac")


def find_lang_dir(db: Path) -> Path:
    """The ``en`` folder (holding ``audios/`` and ``fr/``) under ``db``; CorpusError lists the paths tried."""
    db = Path(db)
    candidates = [db / SRC] + ([db] if db.name == SRC else []) + sorted(db.glob(f"*/{SRC}"))
    for c in candidates:
        if (c / TGT).is_dir() and (c / "audios").is_dir():
            return c
    tried = ", ".join(str(c) for c in candidates[:4])
    raise CorpusError(f"Europarl-ST not found under {db}: expected {SRC}/audios/ and {SRC}/{TGT}/<split>/ "
                      f"(tried {tried}); set EUROPARL_ST in db.sh to the folder holding {SRC}/")


def read_speakers(split_dir: Path) -> dict[str, str]:
    """{speech: speaker} from ``speeches.lst`` + ``speakers.lst``; {} when absent or misaligned (logged)."""
    speeches_path, speakers_path = split_dir / "speeches.lst", split_dir / "speakers.lst"
    if not (speeches_path.is_file() and speakers_path.is_file()):
        logging.info("%s: no speeches.lst/speakers.lst; each speech is its own speaker", split_dir)
        return {}
    speeches, speakers = read_text_lines(speeches_path), read_text_lines(speakers_path)
    if len(speeches) != len(speakers):
        logging.warning("%s: %d lines, %s: %d; expected one speaker per speech: each speech is its own "
                        "speaker", speeches_path, len(speeches), speakers_path.name, len(speakers))
        return {}
    out = {}
    for speech, speaker in zip(speeches, speakers):
        tag = safe_id(speaker.strip().split("_")[-1])
        if speech.strip() and tag:
            out[speech.strip()] = tag
    return out


def audio_path(audios: Path, speech: str) -> Path:
    """The recording of a speech: a .wav/.flac when there is one, else the .m4a (which may be missing)."""
    for suffix in SOUNDFILE_SUFFIXES:
        if (audios / f"{speech}{suffix}").is_file():
            return audios / f"{speech}{suffix}"
    return audios / f"{speech}.m4a"


def read_split(lang_dir: Path, split: str) -> list[Segment]:
    """Segments of one split, in file order; CorpusError on a malformed or misaligned file."""
    split_dir = lang_dir / TGT / split
    lst, en_path, fr_path = split_dir / "segments.lst", split_dir / f"segments.{SRC}", split_dir / f"segments.{TGT}"
    for path in (lst, en_path, fr_path):
        if not path.is_file():
            raise CorpusError(f"{path}: missing; a Europarl-ST split holds segments.lst, segments.{SRC}, "
                              f"segments.{TGT}")
    rows = read_text_lines(lst)
    en, fr = read_text_lines(en_path), read_text_lines(fr_path)
    if not len(rows) == len(en) == len(fr):
        raise CorpusError(f"{lst}: {len(rows)} segments, but {en_path.name} has {len(en)} lines and "
                          f"{fr_path.name} {len(fr)}; expected one text line per segment")
    speakers = read_speakers(split_dir)
    segments = []
    for n, (row, en_text, fr_text) in enumerate(zip(rows, en, fr), 1):
        where = f"{lst}:{n}"
        fields = row.split()
        try:
            speech, start, end = fields[0], float(fields[1]), float(fields[2])
            if len(fields) != 3:
                raise ValueError
        except (IndexError, ValueError) as exc:
            raise CorpusError(f"{where}: {row!r}; expected '<speech id> <start seconds> <end seconds>'") from exc
        if not 0 <= start < end:
            raise CorpusError(f"{where}: start {start}, end {end}; expected 0 <= start < end")
        rec = safe_id(speech)
        speaker = speakers.get(speech, rec)
        prefix = rec if speaker == rec else f"{speaker}_{rec}"
        segments.append(Segment(utt=segment_id(prefix, start, end), speaker=speaker,
                                audio=str(audio_path(lang_dir / "audios", speech)), start=start, end=end,
                                en=normalize_text(en_text), fr=normalize_text(fr_text), where=where))
    return segments


def read_corpus(db: Path, splits: tuple[str, ...] = DEFAULT_SPLITS, **_) -> list[CorpusSet]:
    """The Europarl-ST en->fr splits under ``db`` (see the module docstring)."""
    lang_dir = find_lang_dir(db)
    sets = []
    for split in splits:
        if split not in KINDS:
            raise CorpusError(f"Europarl-ST split {split!r}: expected one of {', '.join(KINDS)}")
        if not (lang_dir / TGT / split).is_dir():
            raise CorpusError(f"{lang_dir / TGT / split}: missing; Europarl-ST {SRC}->{TGT} has the splits "
                              f"{', '.join(KINDS)}")
        sets.append(CorpusSet(name=f"europarl_st_{split}", kind=KINDS[split], source=split,
                              segments=read_split(lang_dir, split)))
    return sets
