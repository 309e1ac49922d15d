#!/usr/bin/env python3
"""tts_ui data stage: Kaldi-style S2T data dirs from the plan and the channel-stage audio.

* ``<out_data>/tts_ui_train``, ``tts_ui_dev``: every utterance twice, ``<base>_asr`` with text
  ``<eng><asr><notimestamps> English`` and ``<base>_st_fra`` with ``<eng><st_fra><notimestamps>
  French``; files ``wav.scp text text.ctc text.prev utt2spk spk2utt utt2bw``.
* ``tts_ui_test_{nb,wb}``, ``ddtp_test_{nb,wb}``: one entry per utterance (id without task
  suffix, the same ids and sentences in both bandwidths); ``text`` is the ASR target, plus the
  plain references ``text.asr`` (English) and ``text.st_fra`` (French).

The speaker of an utterance is its voice (utterance ids start with the voice id). Utterances
without audio (TTS or channel failure) are left out and counted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tts_ui.common import CORPUS, setup_logging  # noqa: E402
from tts_ui.degrade import output_dirs  # noqa: E402
from tts_ui.manifest import Manifest  # noqa: E402
from tts_ui.plan import TEST_SPLITS, read_plan  # noqa: E402

SRC_LANG, TGT_LANG = "eng", "fra"
NO_PREV = "<na>"
NOTIME = "<notimestamps>"


def data_dir_name(split: str, bw: str | None = None) -> str:
    if split == "ddtp_test":
        return f"ddtp_test_{bw}"
    if split == "test":
        return f"{CORPUS}_test_{bw}"
    return f"{CORPUS}_{split}"


def asr_text(en: str) -> str:
    return f"<{SRC_LANG}><asr>{NOTIME} {en}"


def st_text(fr: str) -> str:
    return f"<{SRC_LANG}><st_{TGT_LANG}>{NOTIME} {fr}"


def write_kaldi_file(path: Path, rows: dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(rows):
            f.write(f"{key} {rows[key]}\n")


def check_sorted_speakers(utt2spk: dict[str, str]) -> None:
    """Kaldi's rule: sorting by utterance and by (speaker, utterance) must give the same order."""
    by_utt = sorted(utt2spk)
    by_spk = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    if by_utt != by_spk:
        raise ValueError("utterance ids do not sort with their speaker ids (Kaldi sorting rule)")
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            raise ValueError(f"utterance {utt} does not start with its speaker id {spk}")


def write_data_dir(out: Path, entries: list[dict], tasks: bool) -> int:
    """entries: {base, voice, wav, bw, en, fr}. Returns number of utterances written."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, str]] = defaultdict(dict)
    for e in entries:
        base = e["base"]
        if tasks:
            variants = [(f"{base}_asr", asr_text(e["en"])), (f"{base}_st_{TGT_LANG}", st_text(e["fr"]))]
        else:
            variants = [(base, asr_text(e["en"]))]
            files["text.asr"][base] = e["en"]
            files[f"text.st_{TGT_LANG}"][base] = e["fr"]
        for utt, text in variants:
            files["wav.scp"][utt] = e["wav"]
            files["text"][utt] = text
            files["text.ctc"][utt] = e["en"]
            files["text.prev"][utt] = NO_PREV
            files["utt2spk"][utt] = e["voice"]
            files["utt2bw"][utt] = f"<{e['bw']}>"
    check_sorted_speakers(files["utt2spk"])
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(files["utt2spk"]):
        spk2utt[files["utt2spk"][utt]].append(utt)
    files["spk2utt"] = {spk: " ".join(utts) for spk, utts in spk2utt.items()}
    for name, rows in files.items():
        write_kaldi_file(out / name, rows)
    return len(files["wav.scp"])


def run_data(work_dir: Path, audio_dir: Path, out_data: Path, splits=("train", "dev", *TEST_SPLITS)) -> dict:
    work_dir, audio_dir, out_data = Path(work_dir), Path(audio_dir).resolve(), Path(out_data)
    summary = {}
    for split in splits:
        items = read_plan(work_dir / "plan", split)
        if not items:
            continue
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        missing = 0
        done = {}
        for item in items:
            for subdir, bw in output_dirs(split, item["bw"]):
                if subdir not in done:
                    done[subdir] = Manifest(audio_dir / subdir).done
                wav = audio_dir / subdir / f"{item['utt']}.flac"
                if item["utt"] not in done[subdir] or not wav.exists():
                    missing += 1
                    continue
                name = data_dir_name(split, bw if split in TEST_SPLITS else None)
                groups[(name, subdir)].append({"base": item["utt"], "voice": item["voice"], "wav": str(wav),
                                               "bw": bw, "en": item["en"], "fr": item["fr"]})
        if split in TEST_SPLITS:
            # both bandwidth sets must hold the same sentences: keep the intersection
            names = sorted(groups)
            common = set.intersection(*({e["base"] for e in groups[k]} for k in names)) if names else set()
            for k in names:
                dropped = len(groups[k]) - len(common)
                if dropped:
                    logging.warning("%s: %d utterances lack the other bandwidth, left out", k[0], dropped)
                    missing += dropped
                groups[k] = [e for e in groups[k] if e["base"] in common]
        for (name, _), entries in sorted(groups.items()):
            n = write_data_dir(out_data / name, entries, tasks=split not in TEST_SPLITS)
            nb = sum(e["bw"] == "nb" for e in entries)
            summary[name] = {"utterances": len(entries), "entries": n, "nb": nb, "wb": len(entries) - nb,
                             "voices": len({e["voice"] for e in entries})}
            logging.info("%-18s: %6d utterances (%d nb / %d wb, %d voices), %d entries", name, len(entries), nb,
                         len(entries) - nb, summary[name]["voices"], n)
        if missing:
            logging.warning("%s: %d planned outputs without audio were left out", split, missing)
            summary[f"{split}_missing"] = missing
    return summary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", type=Path, required=True)
    p.add_argument("--audio_dir", type=Path, required=True)
    p.add_argument("--out_data", type=Path, default=Path("data"))
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_data(args.work_dir, args.audio_dir, args.out_data)


if __name__ == "__main__":
    main()
