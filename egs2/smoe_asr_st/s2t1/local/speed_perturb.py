#!/usr/bin/env python3
"""Speed perturbation of a training data dir (ESPnet's ``speed_perturb_factors``).

    python -m local.speed_perturb --in_dir data/train_mix --out_dir data/train_mix_sp \\
        --factors 0.9 1.0 1.1 --audio_dir dump/sp --nj 2

Each recording is written again at every factor other than 1.0: played ``f`` times
as fast, so tempo and pitch change together (the audio is read as if sampled at
``f * rate`` and resampled to ``rate``; ``f = 0.9`` is 11 % longer and lower). The
copies are ``sp<f>-<utt>`` in the output dir, with the texts, bandwidth token and a
speaker of their own (``sp<f>-<speaker>``), as ESPnet's recipes name them; factor
1.0 keeps the original ids and audio. A telephone recording stays narrowband: its
band edges move by the factor, which is the variation wanted.

Audio goes to ``<audio_dir>/sp<f>/<first utterance id>-<source digest>.flac`` (16-bit),
written under a temporary name and renamed, so a stopped run resumes and never reads
half a file; the digest (path, size and time of the source file) keeps a rebuilt
corpus, whose ids may name other sentences, from reusing old copies.

Nothing is dropped silently: a copy longer than ``--max_duration`` (the config's
``speech_length`` would cut its audio but not its transcript) is left out and listed
in ``<out_dir>/skipped.tsv`` with the reason, and the counts are logged.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from local.data_dir import validate_data_dir, write_data_dir
from local.file_io import read_kaldi, write_tsv
from local.log import setup_logging
from local.tts_ui.common import parallel_map

FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2bw")


def factor_tag(factor: float) -> str:
    """``0.9`` -> ``"sp0.9"`` (ESPnet's prefix of perturbed ids and speakers)."""
    return f"sp{factor:g}"


def perturb(wave: torch.Tensor, rate: int, factor: float) -> torch.Tensor:
    """``wave`` played ``factor`` times as fast, at the same sample rate.

    Args:
        wave: (Channels, Samples) float audio at ``rate``.
        rate: Sample rate in Hz.
        factor: Speed factor (> 0); 1.0 returns ``wave`` itself.

    Returns:
        (Channels, ~Samples / factor) float audio at ``rate``.
    """
    if factor <= 0:
        raise ValueError(f"speed factor {factor}: expected a positive number")
    if factor == 1.0:
        return wave
    # Resampling from factor * rate to rate stretches the signal by 1 / factor.
    return torchaudio.functional.resample(wave, orig_freq=round(rate * factor), new_freq=rate)


def copy_name(utt: str, src: str) -> str:
    """File name of the perturbed copy of ``src`` (see the module docstring)."""
    stat = os.stat(src)
    digest = hashlib.sha1(f"{os.path.abspath(src)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    return f"{utt}-{digest[:10]}.flac"


def _perturb_job(job: tuple[str, str, float]) -> tuple[str, float]:
    """Write one perturbed copy (skipped when it exists); returns its path and duration."""
    src, dst, factor = job
    torch.set_num_threads(1)  # one process per core (--nj)
    if not os.path.exists(dst):
        data, rate = sf.read(src, dtype="float32", always_2d=True)  # (Samples, Channels)
        wave = perturb(torch.from_numpy(data.T.copy()), rate, factor)  # (Channels, Samples)
        tmp = dst + ".tmp.flac"
        sf.write(tmp, wave.T.numpy().clip(-1.0, 1.0), rate, subtype="PCM_16")
        os.replace(tmp, dst)
    return dst, sf.info(dst).duration


def speed_perturb(in_dir: Path, out_dir: Path, factors: list[float], audio_dir: Path,
                  max_duration: float = 8.0, nj: int = 1) -> Counter:
    """Write ``out_dir``: ``in_dir`` at every factor (see the module docstring); returns the counts."""
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors):
        raise ValueError(f"--factors {factors}: expected distinct positive speed factors, e.g. 0.9 1.0 1.1")
    validate_data_dir(in_dir)
    files = {name: read_kaldi(in_dir / name) for name in FILES}  # {file name: {utt: value}}
    utt2spk = read_kaldi(in_dir / "utt2spk") if (in_dir / "utt2spk").is_file() else {u: u for u in files["wav.scp"]}
    by_recording: dict[str, list[str]] = defaultdict(list)  # wav path -> its utterances
    for utt in sorted(files["wav.scp"]):
        by_recording[files["wav.scp"][utt]].append(utt)
    for wav, utts in by_recording.items():
        if not os.path.isfile(wav):
            raise FileNotFoundError(f"{in_dir}/wav.scp: utterance {utts[0]}: audio file {wav} not found; "
                                    "expected a path to a sound file (pipes are not supported)")

    out: dict[str, dict[str, str]] = {name: {} for name in FILES}
    out_spk: dict[str, str] = {}
    skipped: list[tuple] = []
    counts: Counter = Counter()
    for factor in factors:
        tag = factor_tag(factor)
        if factor == 1.0:
            new_wav = {wav: wav for wav in by_recording}
        else:
            (audio_dir / tag).mkdir(parents=True, exist_ok=True)
            jobs = [(wav, str(audio_dir / tag / copy_name(utts[0], wav)), factor) for wav, utts in by_recording.items()]
            durations = dict(parallel_map(_perturb_job, jobs, nj, desc=f"speed {factor:g}", unit="file"))
            new_wav = {}
            for (wav, dst, _), utts in zip(jobs, by_recording.values()):
                if durations[dst] > max_duration:
                    counts[f"{tag}: longer than {max_duration:g} s"] += 1
                    skipped.extend((tag, u, f"longer than {max_duration:g} s after speed {factor:g}") for u in utts)
                else:
                    new_wav[wav] = dst
        for wav, utts in by_recording.items():
            if wav not in new_wav:
                continue
            counts[f"{tag}: recordings"] += 1
            for utt in utts:
                new_utt = utt if factor == 1.0 else f"{tag}-{utt}"
                out["wav.scp"][new_utt] = new_wav[wav]
                for name in FILES[1:]:
                    out[name][new_utt] = files[name][utt]
                out_spk[new_utt] = utt2spk[utt] if factor == 1.0 else f"{tag}-{utt2spk[utt]}"
    n = write_data_dir(out_dir, out, out_spk)
    write_tsv(out_dir / "skipped.tsv", ("factor", "utt", "reason"), skipped)
    logging.info("%s: %d utterances (%d recordings x factors %s); %s", out_dir, n, len(by_recording),
                 " ".join(f"{f:g}" for f in factors),
                 ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in_dir", type=Path, required=True, help="S2T training data dir")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--factors", type=float, nargs="+", required=True, help="speed factors, e.g. 0.9 1.0 1.1")
    p.add_argument("--audio_dir", type=Path, required=True, help="where the perturbed audio goes")
    p.add_argument("--max_duration", type=float, default=8.0, help="seconds; longer copies are left out")
    p.add_argument("--nj", type=int, default=1, help="parallel processes")
    args = p.parse_args(argv)
    setup_logging()
    speed_perturb(args.in_dir, args.out_dir, args.factors, args.audio_dir, args.max_duration, args.nj)
    return 0


if __name__ == "__main__":
    sys.exit(main())
