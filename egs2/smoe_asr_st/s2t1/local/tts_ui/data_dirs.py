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

import logging
from collections import defaultdict
from pathlib import Path

from local.data_dir import add_recording, new_files, write_data_dir
from local.tts_ui.common import CORPUS
from local.tts_ui.degrade import output_dirs
from local.tts_ui.manifest import Manifest
from local.tts_ui.plan import TEST_SPLITS, read_plan


def run_data(work_dir: Path, audio_dir: Path, out_data: Path, splits=("train", "dev", *TEST_SPLITS)) -> dict:
    work_dir, audio_dir, out_data = Path(work_dir), Path(audio_dir).resolve(), Path(out_data)
    summary = {}
    for split in splits:
        items = read_plan(work_dir / "plan", split)
        if not items:
            continue
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        missing, done = 0, {}
        for item in items:
            for subdir, bw in output_dirs(split, item["bw"]):
                if subdir not in done:
                    done[subdir] = Manifest(audio_dir / subdir).done
                wav = audio_dir / subdir / f"{item['utt']}.flac"
                if item["utt"] not in done[subdir] or not wav.exists():
                    missing += 1
                    continue
                name = {"ddtp_test": f"ddtp_test_{bw}", "test": f"{CORPUS}_test_{bw}"}.get(split, f"{CORPUS}_{split}")
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
            files, utt2spk = new_files(), {}
            for e in entries:
                for utt in add_recording(files, e["base"], e["wav"], e["bw"], e["en"], e["fr"],
                                         test=split in TEST_SPLITS):
                    utt2spk[utt] = e["voice"]
            n = write_data_dir(out_data / name, files, utt2spk)  # the number of entries written
            nb = sum(e["bw"] == "nb" for e in entries)
            summary[name] = {"utterances": len(entries), "entries": n, "nb": nb, "wb": len(entries) - nb,
                             "voices": len({e["voice"] for e in entries})}
            logging.info("%-18s: %6d utterances (%d nb / %d wb, %d voices), %d entries", name, len(entries), nb,
                         len(entries) - nb, summary[name]["voices"], n)
        if missing:
            logging.warning("%s: %d planned outputs without audio were left out", split, missing)
            summary[f"{split}_missing"] = missing
    return summary
