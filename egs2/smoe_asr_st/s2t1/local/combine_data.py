#!/usr/bin/env python3
"""Combine S2T training data dirs into one, keeping every evaluation sentence out of it.

    python -m local.combine_data --out data/train_mix \\
        --sets data/train data/tts_ui_train --max_recordings 0 3000 \\
        --exclude data/dev data/test_nb data/test_wb --max_duration 8

* ``--sets``: S2T data dirs (``wav.scp text text.ctc text.prev utt2bw``, ids
  ``<recording>_<task>``); ``--max_recordings``: per set, how many recordings
  (audio files) to keep, in id order (0: all). All tasks of a recording stay
  together.
* ``--exclude``: data dirs whose sentences must not occur in training: every
  English or French sentence of their ``text*`` files, normalised by
  ``split_data.text_key`` (case and punctuation ignored). A training recording
  is dropped, with all its tasks, when any of its texts matches one.
* ``--max_duration``: recordings longer than this many seconds are dropped
  (the config's ``speech_length`` would cut their audio and keep the whole
  transcript).
* ``--normalize_transcripts true`` (default): the ASR targets and the CTC
  targets (``text.ctc``, the transcript of every utterance) are written the
  way WER is scored (``score.normalize_for_wer``: lower case, no punctuation
  but apostrophes). Punctuation and case are not heard, and learning them
  costs a small model steps that it needs for the acoustics; the ASR output
  is then in that form too. Translations keep their orthography.

The output is written and validated by ``local/data_dir.py``. Nothing is dropped
silently: ``<out>/skipped.tsv`` lists every dropped recording with its set and
reason, and the counts are logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter, defaultdict
from pathlib import Path

import soundfile as sf

from local.data_dir import PROMPT_RE, TASK_TOKENS, validate_data_dir, write_data_dir
from local.file_io import read_kaldi, write_tsv
from local.log import setup_logging
from local.score import normalize_for_wer
from local.split_data import text_key

FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2bw")


def sentence_keys(data_dir: Path) -> set[str]:
    """Normalised sentences of every ``text*`` file of a data dir."""
    keys = set()
    files = sorted(data_dir.glob("text*"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no text files to exclude from training")
    for path in files:
        for value in read_kaldi(path).values():
            key = text_key(PROMPT_RE.sub("", value))
            if key and key != "na":
                keys.add(key)
    return keys


def normalize_transcripts(files: dict[str, dict[str, str]], utt: str) -> None:
    """ASR target and CTC target of one utterance in the scored form (in place)."""
    files["text.ctc"][utt] = normalize_for_wer(files["text.ctc"][utt])
    prompt = PROMPT_RE.match(files["text"][utt])
    if prompt and TASK_TOKENS["asr"] in prompt.group(0):
        files["text"][utt] = prompt.group(0).rstrip() + " " + normalize_for_wer(files["text"][utt][prompt.end():])


def combine(sets: list[Path], limits: list[int], exclude: list[Path], max_duration: float,
            out: Path, normalize: bool = True) -> dict[str, Counter]:
    banned = set().union(*(sentence_keys(d) for d in exclude))
    merged: dict[str, dict[str, str]] = {name: {} for name in FILES}
    skipped: list[tuple] = []
    counts: dict[str, Counter] = {}
    for data_dir, limit in zip(sets, limits):
        validate_data_dir(data_dir)
        files = {name: read_kaldi(data_dir / name) for name in FILES}  # {file name: {utt: value}}
        # the utterances of each recording, recordings in the order of their first utterance id
        by_recording: dict[str, list[str]] = defaultdict(list)
        for utt in sorted(files["wav.scp"]):
            by_recording[files["wav.scp"][utt]].append(utt)
        count = counts[str(data_dir)] = Counter()
        for wav, utts in by_recording.items():
            if limit and count["kept"] >= limit:
                reason = "over --max_recordings"
            elif any(text_key(PROMPT_RE.sub("", files[f][u])) in banned for u in utts for f in ("text", "text.ctc")):
                reason = "sentence in an evaluation set"
            elif sf.info(wav).duration > max_duration:
                reason = f"longer than {max_duration:g} s"
            else:
                reason = None
            if reason is not None:
                count[reason] += 1
                if reason != "over --max_recordings":
                    skipped.extend((data_dir, u, reason) for u in utts)
                continue
            count["kept"] += 1
            for u in utts:
                if normalize:
                    normalize_transcripts(files, u)
                if u in merged["wav.scp"]:
                    raise ValueError(f"utterance id {u} of {data_dir} is already in an earlier set")
                for name in FILES:
                    merged[name][u] = files[name][u]
        logging.info("%s: %d recordings kept; skipped: %s", data_dir, count["kept"],
                     ", ".join(f"{k} {v}" for k, v in sorted(count.items()) if k != "kept") or "none")
    if not merged["wav.scp"]:
        raise ValueError(f"{out}: nothing left to train on")
    write_data_dir(out, merged)
    write_tsv(out / "skipped.tsv", ("set", "utt", "reason"), skipped)
    logging.info("%s: %d utterances from %d sets (%d evaluation sentences kept out)",
                 out, len(merged["wav.scp"]), len(sets), len(banned))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", type=Path, nargs="+", required=True)
    p.add_argument("--max_recordings", type=int, nargs="+", default=None, help="per set; 0: all")
    p.add_argument("--exclude", type=Path, nargs="*", default=[])
    p.add_argument("--max_duration", type=float, default=8.0, help="seconds")
    p.add_argument("--normalize_transcripts", type=lambda v: v.lower() in ("true", "1", "yes"), default=True,
                   help="ASR and CTC targets lower-cased without punctuation, as WER is scored")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    setup_logging()
    limits = args.max_recordings or [0] * len(args.sets)
    if len(limits) != len(args.sets):
        raise SystemExit(f"--max_recordings has {len(limits)} values for {len(args.sets)} --sets")
    combine(args.sets, limits, args.exclude, args.max_duration, args.out, args.normalize_transcripts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
