#!/usr/bin/env python3
"""A multi-minute recording made of a test set's prompts, with its references and their times.

Usage::

    python -m local.make_long_recording --data_dir data/test_nb --out exp/long/test_nb.wav \\
        --sample_rate 8000 --subtype ULAW
    python -m local.make_long_recording --data_dir data/test_wb --out exp/long/test_wb.flac --channels 2

Concatenates the prompts of ``--data_dir`` (a test dir: ``wav.scp``, ``text.asr``,
``text.st_fra``) in a seeded random order, each once, with a pause of
``--pause MIN MAX`` seconds of low noise (about -70 dBFS: real recordings have no
digital silence) before each and after the last; with ``--minutes M`` the prompts
are cycled (each round in a new order) until the recording is ``M`` minutes long.
The result is written at ``--sample_rate`` with ``--subtype`` (``ULAW`` for a
telephone file) and ``--channels`` (a second channel is the first at -3 dB, as a
stereo microphone pair would differ), in the format of the extension.

Next to it, ``<out without extension>.json`` lists each prompt's utterance id,
start and end in seconds, and its references (``asr``, ``st_fra``), in order: what
``python -m espnet_smoe.bin.transcribe`` should give back, and when.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from local.file_io import read_kaldi
from local.log import setup_logging

PAUSE_NOISE = 3e-4  # std of the noise in the pauses: -70 dBFS
MAX_MINUTES = 120  # a guard against a typo: the whole recording is built in memory


def read_prompts(data_dir: Path) -> list[dict]:
    """The prompts of a test dir: ``{"utt", "wav", "asr", "st_fra"}`` in utterance order."""
    needed = ("wav.scp", "text.asr", "text.st_fra")
    missing = [name for name in needed if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir}: no {', '.join(missing)}; expected a test data dir (run.sh stage 3 "
                                "writes data/test_nb and data/test_wb)")
    wav, asr, st = (read_kaldi(data_dir / name) for name in needed)
    mismatch = sorted((set(wav) ^ set(asr)) | (set(wav) ^ set(st)))
    if mismatch:
        raise ValueError(f"{data_dir}: wav.scp, text.asr and text.st_fra hold different utterances, "
                         f"e.g. {mismatch[:3]}")
    if not wav:
        raise ValueError(f"{data_dir}/wav.scp: no utterances")
    return [{"utt": utt, "wav": wav[utt], "asr": asr[utt], "st_fra": st[utt]} for utt in sorted(wav)]


def load_mono(path: str, sample_rate: int) -> np.ndarray:
    """(Samples,) float32 mono audio at ``sample_rate``."""
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(wave.mean(axis=1))
    if rate != sample_rate:
        mono = AF.resample(mono, rate, sample_rate)
    return mono.numpy()


def build_recording(prompts: list[dict], sample_rate: int, pause: tuple[float, float], minutes: float,
                    seed: int) -> tuple[np.ndarray, list[dict]]:
    """Concatenate the prompts with pauses.

    Args:
        prompts: From :func:`read_prompts`.
        sample_rate: Rate of the result.
        pause: Shortest and longest pause, in seconds.
        minutes: Length to reach by cycling the prompts; 0: each prompt once.
        seed: Order and pause lengths.

    Returns:
        The (Samples,) recording, and each placed prompt's ``utt``, ``start``,
        ``end`` (seconds), ``asr`` and ``st_fra``, in order.
    """
    if not 0 <= pause[0] <= pause[1]:
        raise ValueError(f"--pause MIN MAX needs 0 <= MIN <= MAX, got {pause}")
    rng = np.random.default_rng(seed)
    cache: dict[str, np.ndarray] = {}
    parts, placed, samples = [], [], 0
    target = int(minutes * 60 * sample_rate)

    def add_pause():
        nonlocal samples
        n = int(rng.uniform(*pause) * sample_rate)
        parts.append((rng.standard_normal(n) * PAUSE_NOISE).astype(np.float32))
        samples += n

    while True:
        for i in rng.permutation(len(prompts)):
            prompt = prompts[i]
            if prompt["utt"] not in cache:
                cache[prompt["utt"]] = load_mono(prompt["wav"], sample_rate)
            add_pause()
            wave = cache[prompt["utt"]]
            placed.append({"utt": prompt["utt"], "start": round(samples / sample_rate, 4),
                           "end": round((samples + len(wave)) / sample_rate, 4),
                           "asr": prompt["asr"], "st_fra": prompt["st_fra"]})
            parts.append(wave)
            samples += len(wave)
            if minutes and samples >= target:
                break
        if not minutes or samples >= target:
            break
    add_pause()
    return np.concatenate(parts), placed


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="test dir with wav.scp, text.asr, text.st_fra")
    parser.add_argument("--out", type=Path, required=True, help="audio file to write (.wav, .flac, .ogg, .mp3)")
    parser.add_argument("--minutes", type=float, default=0.0, help="length to reach; 0: every prompt once")
    parser.add_argument("--pause", type=float, nargs=2, default=(0.5, 1.5), metavar=("MIN", "MAX"),
                        help="pause before each prompt, in seconds")
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--subtype", default=None, help="soundfile subtype, e.g. PCM_16, ULAW (default: the format's)")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not 0 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be between 0 and {MAX_MINUTES}, got {args.minutes}")
    try:
        prompts = read_prompts(args.data_dir)
        wave, placed = build_recording(prompts, args.sample_rate, tuple(args.pause), args.minutes, args.seed)
        if args.channels == 2:
            wave = np.stack([wave, wave * 10 ** (-3 / 20)], axis=1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(args.out, wave, args.sample_rate, subtype=args.subtype)
    except (OSError, ValueError, sf.LibsndfileError) as err:
        print(f"make_long_recording.py: error: {err}", file=sys.stderr)
        return 1
    refs = args.out.with_suffix(".json")
    refs.write_text(json.dumps({"audio": str(args.out), "sample_rate": args.sample_rate, "prompts": placed},
                               indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    logging.info("wrote %s: %.1f s, %d prompts of %s (%d distinct), %d Hz, %d channel(s); references in %s",
                 args.out, len(wave) / args.sample_rate, len(placed), args.data_dir, len({p["utt"] for p in placed}),
                 args.sample_rate, args.channels, refs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
