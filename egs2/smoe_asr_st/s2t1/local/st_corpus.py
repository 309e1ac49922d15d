#!/usr/bin/env python3
"""Data prep for the public English -> French corpora: MuST-C and Europarl-ST (run.sh stage 3).

    python -m local.st_corpus --corpus mustc --db "${MUSTC}" --data_dir data \\
        --audio_dir dump/audio --nb_fraction 0.5 --max_dur 8 --nj 2

The readers (``local/mustc.py``, ``local/europarl_st.py``) turn the corpus files into segments
(recording, start, end, English, French, speaker); this module cuts them, as ESPnet's
``format_wav_scp.py`` does with a ``segments`` file, and writes the S2T data dirs:

* Audio: each segment becomes its own 16 kHz mono PCM16 FLAC file,
  ``<audio_dir>/<set>/<nb|wb>/<utt>.flac``. The recording is read once (soundfile; .m4a through
  ffmpeg), resampled to 16 kHz with ``torchaudio.functional.resample`` when it is not, and cut at
  samples ``round(start * 16000)`` .. ``round(end * 16000)`` (end excluded). An end up to
  ``END_TOLERANCE_S`` past the recording is cut at its end (counted as ``end_clipped``).
* Bandwidth: ``nb`` copies go through the telephone channel (``channel.simulate_narrowband``:
  300-3400 Hz, 8 kHz, G.711 mu-law) and back to 16 kHz (``channel.upsample_to_16k``), with the
  wideband copy's exact sample count. Train and dev sets: each utterance is ``nb`` with
  probability ``--nb_fraction``, drawn from ``--seed`` and its id alone (the same on every run, in
  any process order), else ``wb``. Test sets exist in both: ``<set>_nb`` and ``<set>_wb`` hold the
  same utterances, cut from the same samples.
* Data dirs (``local/data_dir.py``): train/dev ``<base>_asr`` (English target) and ``<base>_st_fra``
  (French target) per utterance; test dirs one ``<base>`` each with the references ``text.asr``
  and ``text.st_fra``. ``utt2spk``: the corpus's speaker (talk or speech).

Skips, each counted, logged and listed with its source line in ``<data dir>/skipped.tsv`` (and
all of them in ``<local_dir>/skipped.tsv``), in this order of precedence:

* ``empty_text``: the English transcript is empty (nothing to recognise, no CTC target);
* ``no_translation_test``: a test segment with an empty French line (every test utterance needs
  both references); in train/dev the ASR utterance is kept and its ST side is listed with scope
  ``st_fra`` and reason ``no_translation``;
* ``too_short`` / ``too_long``: duration outside ``[--min_dur, --max_dur]``. ``--max_dur``
  should be the training config's ``preprocessor_conf.speech_length`` (``--train_config`` reads
  it): ESPnet's S2T preprocessor cuts longer audio and keeps the whole transcript. This holds for
  the test sets too: for scores comparable with published ones, use a ``speech_length`` that
  covers every test segment;
* ``duplicate_segment``: a second segment with the same id (same recording, start and end in ms);
* ``missing_audio``: the recording file does not exist;
* ``unreadable_audio``: it cannot be decoded (the decoder's message is the detail);
* ``past_end``: the segment starts after the recording ends, or ends more than
  ``END_TOLERANCE_S`` after it.

A set left empty is an error. A missing ffmpeg, when an .m4a must be decoded, is an error before
any work starts (not a skip of every recording). ``<local_dir>/summary.json`` holds the counts.

Reruns: a ``.done`` marker (``local.stage``) makes a rerun with the same options a no-op
(``--force`` redoes it). Each recording, once cut, is recorded in ``<local_dir>/recordings/``
(keyed by its segments, output paths, and the source file's size and time), so a run that was
killed, or rerun with other options, cuts only what is not done yet; a recording with missing or
unreadable audio is tried again. Audio files of an earlier run with other options stay in
``--audio_dir`` unused.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from local.log import setup_logging

SAMPLE_RATE = 16000
END_TOLERANCE_S = 0.1
READERS = {"mustc": "local.mustc", "europarl_st": "local.europarl_st"}
DB_VARIABLES = {"mustc": "MUSTC", "europarl_st": "EUROPARL_ST"}
# decoded with ffmpeg (libsndfile and torchaudio 2.11 without torchcodec cannot)
FFMPEG_SUFFIXES = (".m4a", ".mp4", ".aac")
SKIP_COLUMNS = ("set", "utt", "scope", "reason", "detail", "source")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
PREP_VERSION = 1  # bump when the audio processing changes (invalidates the stage marker)


class CorpusError(ValueError):
    """The corpus files break the expected layout (the message names the file and line)."""


class DecoderMissing(RuntimeError):
    """ffmpeg/ffprobe are needed and absent: fatal, never a per-recording skip."""


@dataclass(frozen=True)
class Segment:
    """One segment of a recording, as the corpus lists it."""

    utt: str  # base utterance id, starts with the speaker id
    speaker: str
    audio: str  # path of the recording
    start: float  # seconds
    end: float  # seconds (excluded)
    en: str
    fr: str
    where: str  # "file:line" of the entry, for messages


@dataclass
class CorpusSet:
    """One set of a corpus: ``name`` is the data dir name (test sets: plus ``_nb``/``_wb``)."""

    name: str
    kind: str  # train | dev | test
    source: str  # the corpus's own set name
    segments: list[Segment] = field(default_factory=list)


# --------------------------------------------------------------------------- text and ids
def normalize_text(text: str) -> str:
    """Unicode NFC and collapsed whitespace (tabs and line breaks cannot be in a Kaldi file)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without their line ends; CorpusError names a line that is not UTF-8."""
    lines = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as exc:
                raise CorpusError(f"{path}:{n}: not UTF-8 ({exc.reason}); expected UTF-8 text") from exc
    return lines


def safe_id(text: str) -> str:
    """A Kaldi-safe id part: characters other than letters, digits, '.', '_', '-' become '_'."""
    return _ID_UNSAFE.sub("_", text)


def segment_id(prefix: str, start: float, end: float) -> str:
    """``<prefix>_<start ms>_<end ms>``, 7-digit zero-padded (ids sort by time within a recording)."""
    return f"{prefix}_{round(start * 1000):07d}_{round(end * 1000):07d}"


def choose_nb(utt: str, nb_fraction: float, seed: int) -> bool:
    """Whether a train/dev utterance is the narrowband one: depends on the seed and the id only."""
    from local.tts_ui.common import utt_rng

    return bool(utt_rng(seed, "nb", utt).random() < nb_fraction)


# --------------------------------------------------------------------------- audio
def decode_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    """(samples, rate) of the first audio stream, channels averaged, via ffprobe + ffmpeg."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise DecoderMissing(f"{path}: ffmpeg and ffprobe are needed to decode {Path(path).suffix} audio "
                             "(apt-get install ffmpeg), or convert the files to .wav/.flac next to them")
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                            "stream=sample_rate,channels", "-of", "default=noprint_wrappers=1", path],
                           capture_output=True, text=True)
    info = dict(line.split("=", 1) for line in probe.stdout.split() if "=" in line)
    if probe.returncode != 0 or "sample_rate" not in info:
        raise ValueError(f"ffprobe: {probe.stderr.strip()[-300:] or 'no audio stream'}")
    rate, channels = int(info["sample_rate"]), int(info.get("channels", 1))
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "f32le",
                          "-acodec", "pcm_f32le", "-"], capture_output=True)
    if out.returncode != 0:
        raise ValueError(f"ffmpeg: {out.stderr.decode(errors='replace').strip()[-300:]}")
    data = np.frombuffer(out.stdout, dtype=np.float32)
    if data.size == 0 or data.size % channels:
        raise ValueError(f"ffmpeg gave {data.size} samples for {channels} channels")
    return data.reshape(-1, channels).mean(axis=1), rate


def load_audio(path: str) -> np.ndarray:
    """The whole recording as 16 kHz mono float32 in [-1, 1]."""
    import soundfile as sf
    import torch
    import torchaudio.functional as taf

    if Path(path).suffix.lower() in FFMPEG_SUFFIXES:
        data, rate = decode_ffmpeg(path)
    else:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    if data.size == 0:
        raise ValueError("no samples")
    if rate != SAMPLE_RATE:
        data = taf.resample(torch.from_numpy(np.ascontiguousarray(data)), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(data, dtype=np.float32)


def narrowband_copy(wave: np.ndarray) -> np.ndarray:
    """Telephone channel at 8 kHz and back to 16 kHz, with the input's sample count."""
    import torch

    from local.channel import NARROWBAND_RATE, simulate_narrowband, upsample_to_16k

    nb = upsample_to_16k(simulate_narrowband(torch.from_numpy(wave), SAMPLE_RATE), NARROWBAND_RATE).numpy()
    if nb.shape[-1] >= wave.shape[-1]:
        return nb[: wave.shape[-1]]
    return np.pad(nb, (0, wave.shape[-1] - nb.shape[-1]))


def cut_recording(job: dict) -> dict:
    """Cut and write every planned segment of one recording (runs in a worker process).

    ``job``: ``{set, audio, segments: [{utt, start, end, outputs: [[bw, path], ...]}]}``.
    Returns ``{set, results: [{utt, status, detail, samples}], clipped, end_clipped}``; status is
    ``ok`` or a skip reason (``missing_audio``, ``unreadable_audio``, ``past_end``).
    """
    from local.tts_ui.synth import write_flac

    results, clipped, end_clipped = [], 0, 0

    def fail(reason: str, detail: str) -> dict:
        return {"set": job["set"], "clipped": 0, "end_clipped": 0,
                "results": [{"utt": s["utt"], "status": reason, "detail": detail, "samples": 0}
                            for s in job["segments"]]}

    if not Path(job["audio"]).is_file():
        return fail("missing_audio", f"{job['audio']} does not exist")
    try:
        wave = load_audio(job["audio"])
    except DecoderMissing:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this recording's skip reason
        return fail("unreadable_audio", f"{job['audio']}: {type(exc).__name__}: {exc}")
    total = wave.shape[-1]
    tolerance = round(END_TOLERANCE_S * SAMPLE_RATE)
    for seg in job["segments"]:
        first, last = round(seg["start"] * SAMPLE_RATE), round(seg["end"] * SAMPLE_RATE)
        if first >= total or last > total + tolerance:
            results.append({"utt": seg["utt"], "status": "past_end", "samples": 0,
                            "detail": f"{seg['start']:.3f}-{seg['end']:.3f} s, recording {total / SAMPLE_RATE:.3f} s"})
            continue
        end_clipped += last > total
        piece = wave[first:min(last, total)]
        for bw, path in seg["outputs"]:
            out = narrowband_copy(piece) if bw == "nb" else piece
            clipped += int(np.count_nonzero(np.abs(out) > 32767 / 32768))
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_flac(Path(path), out)
        results.append({"utt": seg["utt"], "status": "ok", "detail": "", "samples": int(piece.shape[-1])})
    return {"set": job["set"], "results": results, "clipped": clipped, "end_clipped": end_clipped}


def _cut_with_job(job: dict) -> tuple[dict, dict]:
    # results come back in completion order: keep the job with them
    return job, cut_recording(job)


def _job_digest(job: dict) -> str:
    from local.stage import config_digest

    try:  # a replaced recording is cut again
        stat = Path(job["audio"]).stat()
        source = [stat.st_size, stat.st_mtime_ns]
    except OSError:
        source = None
    return config_digest({"job": job, "source": source, "version": PREP_VERSION})


def record_job(records: Path, job: dict, done: dict) -> None:
    """Remember a finished recording (its job and results), so that a rerun does not cut it again.

    Not when its audio was missing or unreadable: a rerun tries again (the file may be fixed).
    """
    from local.file_io import write_lines

    if any(r["status"] in ("missing_audio", "unreadable_audio") for r in done["results"]):
        return
    write_lines(Path(records) / job["set"] / f"{_job_digest(job)}.json", [json.dumps(done, ensure_ascii=False)])


def finished_job(records: Path, job: dict) -> dict | None:
    """The results of an earlier run of exactly this job, if recorded and its files are all there."""
    path = Path(records) / job["set"] / f"{_job_digest(job)}.json"
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = {r["utt"] for r in done["results"] if r["status"] == "ok"}
    if any(not Path(p).is_file() for seg in job["segments"] if seg["utt"] in ok for _, p in seg["outputs"]):
        return None
    return done


# --------------------------------------------------------------------------- planning
def plan_set(cset: CorpusSet, min_dur: float, max_dur: float, nb_fraction: float, seed: int,
             audio_dir: Path) -> tuple[list[dict], list[dict]]:
    """Text, duration and id checks and the bandwidth of each kept segment.

    Returns ``(planned, skips)``: planned ``{seg, bws, outputs, asr_only}`` in corpus order, skips
    as rows of ``SKIP_COLUMNS``.
    """
    planned, skips, seen = [], [], {}

    def skip(seg: Segment, reason: str, detail: str, scope: str = "utterance") -> None:
        skips.append({"set": cset.name, "utt": seg.utt, "scope": scope, "reason": reason, "detail": detail,
                      "source": seg.where})

    for seg in cset.segments:
        duration = seg.end - seg.start
        if not seg.en:
            skip(seg, "empty_text", "empty English transcript")
        elif not seg.fr and cset.kind == "test":
            skip(seg, "no_translation_test", "empty French translation; a test utterance needs both references")
        elif duration < min_dur:
            skip(seg, "too_short", f"{duration:.3f} s < {min_dur:g} s")
        elif duration > max_dur:
            skip(seg, "too_long", f"{duration:.3f} s > {max_dur:g} s")
        elif seg.utt in seen:
            skip(seg, "duplicate_segment", f"same id as {seen[seg.utt]}")
        else:
            seen[seg.utt] = seg.where
            if cset.kind == "test":
                bws = ["nb", "wb"]
            else:
                bws = ["nb" if choose_nb(seg.utt, nb_fraction, seed) else "wb"]
            outputs = [[bw, str(audio_dir / cset.name / bw / f"{seg.utt}.flac")] for bw in bws]
            planned.append({"seg": seg, "bws": bws, "outputs": outputs, "asr_only": not seg.fr})
    return planned, skips


# --------------------------------------------------------------------------- data dirs
def write_set_dirs(data_dir: Path, cset: CorpusSet, kept: list[dict], skips: list[dict]) -> dict[str, int]:
    """The data dir(s) of one set and their ``skipped.tsv``; returns {dir name: #utterances}."""
    from local.data_dir import add_utterance, new_files, write_data_dir
    from local.file_io import write_tsv

    written = {}
    if cset.kind == "test":
        for bw in ("nb", "wb"):
            files, utt2spk = new_files(), {}
            for item in kept:
                seg, path = item["seg"], dict(item["outputs"])[bw]
                add_utterance(files, seg.utt, path, bw, "asr", seg.en, seg.en)
                files["text.asr"][seg.utt], files["text.st_fra"][seg.utt] = seg.en, seg.fr
                utt2spk[seg.utt] = seg.speaker
            name = f"{cset.name}_{bw}"
            written[name] = write_data_dir(data_dir / name, files, utt2spk)
            write_tsv(data_dir / name / "skipped.tsv", SKIP_COLUMNS, skips)
        return written
    files, utt2spk = new_files(), {}
    for item in kept:
        seg, (bw, path) = item["seg"], item["outputs"][0]
        for task, target in [("asr", seg.en)] + ([] if item["asr_only"] else [("st_fra", seg.fr)]):
            add_utterance(files, f"{seg.utt}_{task}", path, bw, task, target, seg.en)
            utt2spk[f"{seg.utt}_{task}"] = seg.speaker
    written[cset.name] = write_data_dir(data_dir / cset.name, files, utt2spk)
    write_tsv(data_dir / cset.name / "skipped.tsv", SKIP_COLUMNS, skips)
    return written


# --------------------------------------------------------------------------- driver
def speech_length_of(config: Path) -> float:
    """``preprocessor_conf.speech_length`` (seconds) of an ESPnet training config."""
    import yaml

    conf = yaml.safe_load(Path(config).read_text()) or {}
    try:
        return float(conf["preprocessor_conf"]["speech_length"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"{config}: no preprocessor_conf.speech_length; give --max_dur instead") from exc


def check_decoders(sets: list[CorpusSet]) -> None:
    """Fail before any work when an existing recording needs ffmpeg and it is not installed."""
    needs = sorted({s.audio for c in sets for s in c.segments
                    if Path(s.audio).suffix.lower() in FFMPEG_SUFFIXES and Path(s.audio).is_file()})
    if needs and (shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None):
        raise DecoderMissing(f"{len(needs)} recordings (e.g. {needs[0]}) need ffmpeg and ffprobe, which are not "
                             "installed: apt-get install ffmpeg, or convert them to .wav/.flac next to the "
                             ".m4a files (read in their place)")


def prepare(corpus: str, db: Path, data_dir: Path, audio_dir: Path, local_dir: Path, nb_fraction: float = 0.5,
            seed: int = 1, min_dur: float = 0.2, max_dur: float = 8.0, nj: int = 1,
            reader_args: dict | None = None) -> dict:
    """Read, plan, cut and write every set of ``corpus``; returns the summary (also in summary.json)."""
    from local.file_io import write_tsv
    from local.tts_ui.common import parallel_map

    if not 0.0 <= nb_fraction <= 1.0:
        raise ValueError(f"--nb_fraction {nb_fraction}: expected a value in [0, 1]")
    start = time.time()
    sets = importlib.import_module(READERS[corpus]).read_corpus(Path(db), **(reader_args or {}))
    audio_dir = Path(audio_dir).absolute()
    plans, all_skips, jobs = {}, [], []
    for cset in sets:
        planned, skips = plan_set(cset, min_dur, max_dur, nb_fraction, seed, audio_dir)
        plans[cset.name] = (planned, skips)
        by_audio: dict[str, list[dict]] = defaultdict(list)
        for item in planned:
            seg = item["seg"]
            by_audio[seg.audio].append({"utt": seg.utt, "start": seg.start, "end": seg.end,
                                        "outputs": item["outputs"]})
        jobs += [{"set": cset.name, "audio": a, "segments": segs} for a, segs in sorted(by_audio.items())]
    check_decoders(sets)
    logging.info("%s: %d recordings to cut (%s)", corpus, len(jobs),
                 ", ".join(f"{c.name} {len(plans[c.name][0])}/{len(c.segments)} segments" for c in sets))
    outcome: dict[str, dict[str, dict]] = defaultdict(dict)
    counters = Counter()

    def take(done: dict) -> None:
        for r in done["results"]:
            outcome[done["set"]][r["utt"]] = r
        counters.update(clipped=done["clipped"], end_clipped=done["end_clipped"])

    # a rerun (after a kill, or --force) does not cut again what an earlier run finished
    records = Path(local_dir) / "recordings"
    todo = []
    for job in jobs:
        done = finished_job(records, job)
        if done is None:
            todo.append(job)
        else:
            take(done)
    if len(todo) < len(jobs):
        logging.info("%s: %d recordings already cut by an earlier run (%s); %d to do", corpus,
                     len(jobs) - len(todo), records, len(todo))
    for job, done in parallel_map(_cut_with_job, todo, nj, desc=f"{corpus} audio", unit="rec", chunksize=1):
        record_job(records, job, done)
        take(done)
    clipped, end_clipped = counters["clipped"], counters["end_clipped"]

    summary: dict = {"corpus": corpus, "db": str(db), "nb_fraction": nb_fraction, "seed": seed,
                     "min_dur": min_dur, "max_dur": max_dur, "sets": {}}
    for cset in sets:
        planned, skips = plans[cset.name]
        kept = []
        for item in planned:
            seg, r = item["seg"], outcome[cset.name][item["seg"].utt]
            if r["status"] != "ok":
                skips.append({"set": cset.name, "utt": seg.utt, "scope": "utterance", "reason": r["status"],
                              "detail": r["detail"], "source": seg.where})
                continue
            item["samples"] = r["samples"]
            kept.append(item)
            if item["asr_only"]:
                skips.append({"set": cset.name, "utt": seg.utt, "scope": "st_fra", "reason": "no_translation",
                              "detail": "empty French translation; the ASR utterance is kept", "source": seg.where})
        if not kept:
            raise CorpusError(f"{cset.name} ({cset.source}): no utterance left after the skips "
                              f"{dict(Counter(s['reason'] for s in skips))}")
        written = write_set_dirs(data_dir, cset, kept, skips)
        all_skips += skips
        counts = Counter(s["reason"] for s in skips if s["scope"] == "utterance")
        bws = Counter(bw for item in kept for bw in item["bws"])
        summary["sets"][cset.name] = {
            "source": cset.source, "kind": cset.kind, "segments": len(cset.segments), "kept": len(kept),
            "nb": bws["nb"], "wb": bws["wb"], "hours": round(sum(i["samples"] for i in kept) / SAMPLE_RATE / 3600, 3),
            "data_dirs": written, "skipped": dict(sorted(counts.items())),
            "st_fra_skipped": sum(s["scope"] == "st_fra" for s in skips)}
        logging.info("%s: %d of %d segments kept (%d nb, %d wb utterances, %.2f h); skipped: %s", cset.name,
                     len(kept), len(cset.segments), bws["nb"], bws["wb"], summary["sets"][cset.name]["hours"],
                     ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    summary["clipped_samples"], summary["end_clipped"] = clipped, end_clipped
    summary["seconds"] = round(time.time() - start, 1)
    local_dir = Path(local_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(local_dir / "skipped.tsv", SKIP_COLUMNS, all_skips)
    (local_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    longest = max(i["samples"] for p, _ in plans.values() for i in p if "samples" in i) / SAMPLE_RATE
    logging.info("%s: longest kept utterance %.2f s; %d segment ends cut at the recording's end; %d clipped "
                 "samples; summary in %s (%.0f s)", corpus, longest, end_clipped, clipped,
                 local_dir / "summary.json", summary["seconds"])
    return summary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, choices=sorted(READERS))
    p.add_argument("--db", required=True, help="corpus root (db.sh: MUSTC or EUROPARL_ST)")
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--audio_dir", type=Path, default=Path("dump/audio"), help="per-utterance FLAC files")
    p.add_argument("--local_dir", type=Path, default=None, help="summary and skip list (default data/local/<corpus>)")
    p.add_argument("--nb_fraction", type=float, default=0.5, help="share of train/dev utterances made narrowband")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min_dur", type=float, default=0.2, help="seconds")
    p.add_argument("--max_dur", type=float, default=None,
                   help="seconds (default: --train_config's speech_length, else 8)")
    p.add_argument("--train_config", type=Path, default=None, help="read --max_dur from preprocessor_conf")
    p.add_argument("--europarl_splits", nargs="+", default=["train", "dev", "test"],
                   help="Europarl-ST splits (train-noisy is left out by default)")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--force", action="store_true", help="redo even if done with the same options")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    return p


def expected_outputs(local_dir: Path, data_dir: Path) -> list[Path]:
    """summary.json and the wav.scp of every data dir it lists (a deleted data dir redoes the stage)."""
    summary = Path(local_dir) / "summary.json"
    try:
        sets = json.loads(summary.read_text())["sets"].values()
    except (OSError, ValueError, KeyError):
        return [summary]
    return [summary] + [Path(data_dir) / name / "wav.scp" for s in sets for name in s["data_dirs"]]


def main(argv: list[str] | None = None) -> int:
    from local.stage import mark_done, stage_done, start_stage

    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.db.strip():
        logging.error("--db is empty: set the %s path in db.sh (%s)", args.corpus, DB_VARIABLES[args.corpus])
        return 1
    max_dur = args.max_dur
    if max_dur is None:
        max_dur = speech_length_of(args.train_config) if args.train_config else 8.0
    local_dir = args.local_dir or args.data_dir / "local" / args.corpus
    reader_args = {"splits": tuple(args.europarl_splits)} if args.corpus == "europarl_st" else {}
    config = {"corpus": args.corpus, "db": str(Path(args.db).absolute()), "nb_fraction": args.nb_fraction,
              "seed": args.seed, "min_dur": args.min_dur, "max_dur": max_dur, "reader": reader_args,
              "audio_dir": str(Path(args.audio_dir).absolute()), "data_dir": str(Path(args.data_dir).absolute()),
              "version": PREP_VERSION}
    marker = local_dir / ".done"
    if not args.force and stage_done(marker, config, expected_outputs(local_dir, args.data_dir)):
        return 0
    start_stage(marker)
    try:
        summary = prepare(args.corpus, args.db, args.data_dir, args.audio_dir, local_dir, args.nb_fraction,
                          args.seed, args.min_dur, max_dur, args.nj, reader_args)
    except (CorpusError, DecoderMissing) as exc:
        logging.error("%s", exc)
        return 1
    mark_done(marker, config, {name: s["kept"] for name, s in summary["sets"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
