"""tts_ui speech stage: synthesise the clean 16 kHz utterances of the plan with flite / espeak-ng.

Reads ``<work_dir>/plan/<split>.jsonl`` (made from ``<work_dir>/text`` if missing) and writes
``<audio_dir>/clean/<split>/<utt>.flac`` (16 kHz mono PCM16). Finished files are recorded in a
manifest and skipped on a rerun. Failures are listed in ``<work_dir>/speech/failed.tsv``.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from local import debian
from local.file_io import write_tsv
from local.tts_ui.common import SPLITS, WORKER_CONTEXT
from local.tts_ui.manifest import Manifest, item_digest, run_jobs
from local.tts_ui.plan import VOICE_BY_ID, PlanConfig, read_plan, write_plans

SAMPLE_RATE = 16000
TTS_VERSION = 2  # bump when synthesis changes (invalidates finished clean files)


def tts_digest(item: dict) -> str:
    return item_digest(TTS_VERSION, item["voice"], item["tts"], item["en"])


def _resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """Polyphase resampling to 16 kHz (espeak-ng writes 22.05 kHz)."""
    if rate == SAMPLE_RATE:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(SAMPLE_RATE, rate)
    return resample_poly(wave, SAMPLE_RATE // g, rate // g).astype(np.float32)


def synthesize(item: dict, runtime: debian.TTSRuntime, tmp_dir: str | None = None) -> np.ndarray:
    """Run the plan item's TTS engine; returns float32 16 kHz mono audio."""
    voice = VOICE_BY_ID[item["voice"]]
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        wav = os.path.join(tmp, "out.wav")
        if voice.engine == "flite":
            cmd, stdin = runtime.flite_cmd(voice.name, item["en"], wav, item["tts"]), None
        else:  # espeak-ng reads the text from stdin
            cmd, stdin = runtime.espeak_cmd(voice.name, wav, item["tts"]["rate"], item["tts"]["pitch"]), item["en"]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=runtime.env, timeout=120)
        if proc.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"{voice.engine} rc={proc.returncode}: {proc.stderr.strip()[-300:]}")
        wave, rate = sf.read(wav, dtype="float32", always_2d=True)
    wave = _resample(wave.mean(axis=1), rate)
    if wave.size < SAMPLE_RATE // 10 or not np.isfinite(wave).all() or np.abs(wave).max() < 1e-4:
        raise RuntimeError(f"{voice.engine} produced no usable audio ({wave.size} samples)")
    return wave.astype(np.float32)


def write_flac(path: Path, wave: np.ndarray) -> None:
    """Atomic 16 kHz PCM16 FLAC write (clipped to [-1, 1))."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".part.flac")
    sf.write(tmp, np.clip(wave, -1.0, 32767 / 32768), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def _synth_outputs(split: str, item: dict, dirs: list[str]) -> dict[str, float]:
    """``run_jobs`` worker: the clean utterance of one plan item."""
    wave = synthesize(item, WORKER_CONTEXT["runtime"])
    write_flac(Path(WORKER_CONTEXT["audio_dir"], dirs[0], f"{item['utt']}.flac"), wave)
    return {dirs[0]: len(wave) / SAMPLE_RATE}


def run_speech(work_dir: Path, audio_dir: Path, cache_dir: Path, nj: int = 1, cfg: PlanConfig | None = None,
               runtime: debian.TTSRuntime | None = None, splits=SPLITS) -> dict:
    """Synthesise every planned utterance that is not finished yet; returns counts."""
    t0 = time.time()
    work_dir, audio_dir = Path(work_dir), Path(audio_dir)
    plan_dir = work_dir / "plan"
    if cfg is not None or not (plan_dir / "config.json").exists():
        write_plans(work_dir / "text", plan_dir, cfg or PlanConfig())
    plans = {s: items for s in splits if (items := read_plan(plan_dir, s))}
    engines = {VOICE_BY_ID[i["voice"]].engine for items in plans.values() for i in items}
    if runtime is None and engines:
        runtime = debian.resolve_tts(cache_dir, sorted(engines))
    if runtime is not None:
        logging.info("TTS engines: %s", ", ".join(f"{k} ({v})" for k, v in sorted(runtime.origin.items())))

    manifests = {f"clean/{s}": Manifest(audio_dir / "clean" / s, keep={i["utt"] for i in items})
                 for s, items in plans.items()}
    jobs = []
    for split, items in plans.items():
        todo = [(split, item, [(f"clean/{split}", tts_digest(item))]) for item in items
                if not manifests[f"clean/{split}"].is_done(item["utt"], tts_digest(item))]
        logging.info("%s: %d utterances planned, %d to synthesise", split, len(items), len(todo))
        jobs += todo
    t1 = time.time()
    # each worker gets the runtime once (module global), not with every job
    failures = run_jobs(_synth_outputs, jobs, manifests, nj, "tts", {"runtime": runtime, "audio_dir": str(audio_dir)})
    elapsed = time.time() - t1
    n_ok = len(jobs) - len(failures)
    summary = {}
    for split, items in plans.items():
        finished = manifests[f"clean/{split}"].done
        done = [finished[i["utt"]][1] for i in items if i["utt"] in finished]
        summary[split] = {"planned": len(items), "done": len(done), "hours": round(sum(done) / 3600, 3)}
        logging.info("%-9s: %5d/%d utterances, %.2f h of clean speech", split, len(done), len(items),
                     sum(done) / 3600)
    summary.update(synthesised_now=n_ok, seconds=round(elapsed, 1),
                   utt_per_s=round(n_ok / elapsed, 1) if n_ok and elapsed > 0 else None)
    logging.info("synthesised %d utterances in %.1f s (%s utt/s with --nj %d)", n_ok, elapsed,
                 summary["utt_per_s"], nj)
    write_tsv(work_dir / "speech" / "failed.tsv", ("split", "utt", "voice", "error", "en"),
              [(split, item["utt"], item["voice"], error, item["en"]) for split, item, error in failures])
    if failures:
        logging.warning("%d utterances failed TTS (listed in %s)", len(failures), work_dir / "speech/failed.tsv")
    summary["failed"] = len(failures)
    logging.info("speech stage done in %.1f s", time.time() - t0)
    return summary
