"""tts_ui channel stage: room, noise, level and bandwidth applied to the clean TTS utterances.

Per plan item: optional shoebox room response (pyroomacoustics, from a seeded room bank),
optional noise at 10-30 dB SNR (coloured 1/f^alpha noise, or babble from other utterances of the
same split), a speech level, then the bandwidth: ``wb`` is kept at 16 kHz, ``nb`` goes through
``channel.simulate_narrowband`` (300-3400 Hz, 8 kHz, G.711 mu-law) and ``channel.upsample_to_16k``
like real narrowband audio fed to a 16 kHz model. Test utterances are written in BOTH bandwidths
from the same degraded waveform.

Outputs ``<audio_dir>/{train,dev}/<utt>.flac`` and
``<audio_dir>/{test,ddtp_test}_{nb,wb}/<utt>.flac`` (16 kHz mono PCM16 FLAC).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from local.tts_ui.common import SPLITS, WORKER_CONTEXT, parallel_map, utt_rng
from local.tts_ui.manifest import Manifest, item_digest, run_jobs
from local.tts_ui.plan import TEST_SPLITS, read_plan
from local.tts_ui.synth import SAMPLE_RATE, tts_digest, write_flac

CHANNEL_VERSION = 1  # bump when the processing below changes (invalidates finished files)


def output_dirs(split: str, bw: str) -> list[tuple[str, str]]:
    """[(audio subdir, bandwidth)] that a plan item of ``split`` is written to."""
    if split in TEST_SPLITS:
        return [(f"{split}_nb", "nb"), (f"{split}_wb", "wb")]
    return [(split, bw)]


# ----------------------------------------------------------------------------- rooms
def compute_rir(room: dict) -> np.ndarray:
    """Room impulse response (16 kHz) of a shoebox room, starting 2.5 ms before the direct path."""
    import pyroomacoustics as pra

    e_absorption, max_order = pra.inverse_sabine(room["rt60"], room["dims"])
    shoebox = pra.ShoeBox(room["dims"], fs=SAMPLE_RATE, materials=pra.Material(e_absorption),
                          max_order=min(max_order, 60))
    shoebox.add_source(room["src"])
    shoebox.add_microphone(room["mic"])
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    start = max(0, int(np.argmax(np.abs(rir))) - int(0.0025 * SAMPLE_RATE))
    rir = rir[start:]
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)


def _rir_job(room: dict) -> tuple[str, np.ndarray]:
    return room["room"], compute_rir(room)


def load_room_bank(rooms: dict[str, dict], cache: Path, rooms_needed: set[str], nj: int) -> dict[str, np.ndarray]:
    """RIRs of the rooms (``rooms.json`` of the plan) the plan uses, computed in parallel once, cached as .npy files."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    paths = {name: cache / f"{name}-{item_digest(rooms[name])}.npy" for name in sorted(rooms_needed)}
    rirs = {name: np.load(path) for name, path in paths.items() if path.exists()}
    todo = [rooms[name] for name in paths if name not in rirs]
    for name, rir in parallel_map(_rir_job, todo, nj, desc="room responses", unit="room"):
        np.save(paths[name], rir)
        rirs[name] = rir
    return rirs


# ----------------------------------------------------------------------------- signal helpers
def active_power(wave: np.ndarray, frame: int = 400) -> float:
    """Mean power of the frames within 40 dB of the loudest one (speech, not pauses)."""
    n = max(1, len(wave) // frame)
    frames = wave[: n * frame].reshape(n, -1) if len(wave) >= frame else wave[None, :]
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    active = power[power >= power.max() * 1e-4]
    return float(np.mean(active)) if active.size else 0.0


def coloured_noise(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^alpha power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spec = spec / freqs ** (alpha / 2.0)
    noise = np.fft.irfft(spec, n=n)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def babble_noise(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Sum of other utterances, each looped to length n from a random offset, at equal power."""
    out = np.zeros(n, dtype=np.float64)
    for wave in others:
        if wave.size == 0:
            continue
        reps = int(np.ceil((n + wave.size) / wave.size))
        loop = np.tile(wave, reps)
        off = int(rng.integers(wave.size))
        seg = loop[off: off + n].astype(np.float64)
        out += seg / np.sqrt(active_power(seg) + 1e-12)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def degrade(item: dict, clean: np.ndarray, seed: int, rir: np.ndarray | None = None,
            others: list[np.ndarray] | None = None) -> np.ndarray:
    """Room + noise + level of one plan item (16 kHz in and out, same length)."""
    rng = utt_rng(seed, item["utt"], "channel")
    wave = clean.astype(np.float32)
    if rir is not None:  # FFT convolution, cut to the input length
        size = 1 << (len(wave) + len(rir) - 2).bit_length()
        wave = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(rir, size), size)[: len(wave)].astype(np.float32)
    speech_power = active_power(wave)
    if noise_cfg := item.get("noise"):
        if noise_cfg["type"] == "babble" and others:
            noise = babble_noise(len(wave), others, rng)
        else:
            noise = coloured_noise(len(wave), float(noise_cfg.get("alpha", 1.0)), rng)
        gain = np.sqrt(speech_power / (10 ** (noise_cfg["snr"] / 10)))
        wave = wave + gain * noise
    # active speech level in dBFS, but never above 0.95 peak
    scale = np.sqrt(10 ** (item["level_db"] / 10) / (speech_power + 1e-12))
    peak = np.abs(wave).max() * scale
    if peak > 0.95:
        scale *= 0.95 / peak
    return (wave * scale).astype(np.float32)


def to_bandwidth(wave: np.ndarray, bw: str) -> np.ndarray:
    """``wb``: unchanged; ``nb``: telephone channel at 8 kHz, upsampled back to 16 kHz."""
    if bw == "wb":
        return wave
    import torch

    from local import channel

    narrow = channel.simulate_narrowband(torch.from_numpy(wave), SAMPLE_RATE)  # 8 kHz
    return channel.upsample_to_16k(narrow, 8000).numpy().astype(np.float32)


# ----------------------------------------------------------------------------- worker
def _channel_outputs(split: str, item: dict, dirs: list[str]) -> dict[str, float]:
    """``run_jobs`` worker: the degraded versions of one plan item's clean utterance."""
    audio_dir = Path(WORKER_CONTEXT["audio_dir"])
    clean_dir = audio_dir / "clean" / split
    clean, rate = sf.read(clean_dir / f"{item['utt']}.flac", dtype="float32")
    assert rate == SAMPLE_RATE, rate
    others = None
    if item.get("noise") and item["noise"]["type"] == "babble":
        others = [sf.read(clean_dir / f"{u}.flac", dtype="float32")[0] for u in item["noise"]["others"]
                  if (clean_dir / f"{u}.flac").exists()]
    rir = WORKER_CONTEXT["rirs"].get(item["room"]) if item.get("room") else None
    wave = degrade(item, clean, WORKER_CONTEXT["seed"], rir=rir, others=others)
    bandwidths = dict(output_dirs(split, item["bw"]))
    written = {}
    for subdir in dirs:
        final = to_bandwidth(wave, bandwidths[subdir])
        write_flac(audio_dir / subdir / f"{item['utt']}.flac", final)
        written[subdir] = len(final) / SAMPLE_RATE
    return written


def run_channel(work_dir: Path, audio_dir: Path, nj: int = 1, seed: int | None = None, splits=SPLITS) -> dict:
    """Degrade every planned utterance whose output is missing or stale; returns counts."""
    t0 = time.time()
    work_dir, audio_dir = Path(work_dir), Path(audio_dir)
    plan_dir = work_dir / "plan"
    seed = json.loads((plan_dir / "config.json").read_text())["seed"] if seed is None else seed
    rooms = {r["room"]: r for bank in json.loads((plan_dir / "rooms.json").read_text()).values() for r in bank}
    plans = {s: read_plan(plan_dir, s) for s in splits}
    clean_done = {s: Manifest(audio_dir / "clean" / s).done for s in plans if plans[s]}

    # an output dir holds one split: its manifest keeps that split's planned utterances
    manifests = {sd: Manifest(audio_dir / sd, keep={it["utt"] for it in items}) for split, items in plans.items()
                 for sd in {sd for it in items for sd, _ in output_dirs(split, it["bw"])}}
    jobs, missing_clean, needed_rooms = [], [], set()
    for split, items in plans.items():
        for item in items:
            if item["utt"] not in clean_done.get(split, {}):
                missing_clean.append(item["utt"])
                continue
            room = rooms.get(item["room"]) if item.get("room") else None
            digests = {sd: item_digest(CHANNEL_VERSION, tts_digest(item), split, bw, room, item.get("noise"),
                                       item["level_db"]) for sd, bw in output_dirs(split, item["bw"])}
            outputs = [(sd, digest) for sd, digest in digests.items() if not manifests[sd].is_done(item["utt"], digest)]
            if outputs:
                jobs.append((split, item, outputs))
                if item.get("room"):
                    needed_rooms.add(item["room"])
    if missing_clean:
        logging.warning("%d planned utterances have no clean audio (TTS failed or not run): %s ...",
                        len(missing_clean), " ".join(missing_clean[:5]))
    logging.info("channel: %d utterances to process (%d room responses needed)", len(jobs), len(needed_rooms))
    rirs = load_room_bank(rooms, work_dir / "rooms", needed_rooms, nj)
    ctx = {"audio_dir": str(audio_dir), "seed": seed, "rirs": rirs}
    failures = run_jobs(_channel_outputs, jobs, manifests, nj, "channel", ctx)
    summary = {}
    for sd, manifest in sorted(manifests.items()):
        summary[sd] = {"utterances": len(manifest.done),
                       "hours": round(sum(v[1] for v in manifest.done.values()) / 3600, 3)}
        logging.info("%-12s: %6d utterances, %.2f h", sd, summary[sd]["utterances"], summary[sd]["hours"])
    summary.update(failed=len(failures), missing_clean=len(missing_clean))
    logging.info("channel stage done in %.1f s (%d processed now, %d failed)", time.time() - t0,
                 len(jobs) - len(failures), len(failures))
    return summary
