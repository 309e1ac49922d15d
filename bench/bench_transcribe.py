#!/usr/bin/env python3
"""Long-form transcription speed: real-time factor of ``espnet_smoe.transcribe`` on CPU, stage by stage.

Decodes one long recording in every task with one model and reports the wall
and CPU seconds of each stage (reading and mixing down, bandwidth detection,
resampling, VAD segmentation, decoding per task, then all of it end to end)
and their real-time factors (seconds per second of audio), one thread by
default. On a machine shared with other jobs the wall time grows with the load
(reported), the CPU time much less. The recording is either
given (``--audio``, with ``--refs``, the JSON ``local/make_long_recording.py``
writes beside it, for WER and BLEU against the prompts) or, by default, made of
the AN4 utterances the espnet wheel ships, cycled with 0.5-1.5 s pauses to
``--minutes`` (16 kHz mono). With ``--refs`` the prompts are also decoded one
by one, cut at their known times, and scored the recipe's way (local/score.py)
beside the long-form result.

    python bench/bench_transcribe.py --model_tag egs2/smoe_asr_st/s2t1/exp/train_smoe_encdec_tiny/packed.zip \\
        --audio egs2/smoe_asr_st/s2t1/exp/long/test_nb.wav --refs egs2/smoe_asr_st/s2t1/exp/long/test_nb.json

Prints one JSON object.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from espnet_smoe.audio_io import read_audio, resample
from espnet_smoe.segmentation import Segment
from espnet_smoe.transcribe import TranscribeConfig, Transcriber

RECIPE = Path(__file__).resolve().parents[1] / "egs2/smoe_asr_st/s2t1"


def an4_recording(minutes: float, out: Path, seed: int = 0) -> Path:
    """The espnet wheel's AN4 utterances, cycled with pauses to ``minutes``, as a 16 kHz WAV."""
    import espnet2

    tarball = Path(espnet2.__file__).parents[1] / "egs3/mini_an4/esp2_asr/downloads.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(out.parent, filter="data")
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((out.parent / "downloads/an4").glob("wav/*/*/*.sph"))]
    rng = np.random.default_rng(seed)
    parts, n, target = [], 0, int(minutes * 60 * 16000)
    while n < target:
        for i in rng.permutation(len(clips)):
            pause = (rng.standard_normal(int(rng.uniform(0.5, 1.5) * 16000)) * 3e-4).astype(np.float32)
            parts += [pause, clips[i]]
            n += len(pause) + len(clips[i])
    sf.write(out, np.concatenate(parts), 16000, subtype="PCM_16")
    return out


def timed(fn, *args):
    """fn(*args), and the (wall, CPU) seconds it took: on a shared machine the CPU time is the steadier."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def scores(prompts: list, hyps: dict, tasks) -> dict:
    """WER (ASR) and BLEU/chrF (ST) of the whole recording against its prompts, in order, as the recipe scores.

    Args:
        prompts: The ``prompts`` of a ``local/make_long_recording.py`` JSON.
        hyps: Task -> the hypothesis texts, in time order (any number).
    """
    sys.path.insert(0, str(RECIPE))
    import jiwer

    from local.score import normalize_for_wer, score_st

    out = {}
    for task in tasks:
        ref = " ".join(p[task] for p in prompts)
        hyp = " ".join(hyps[task])
        if task == "asr":
            out["asr_wer"] = round(100 * jiwer.wer(normalize_for_wer(ref), normalize_for_wer(hyp)), 2)
        else:
            result, _ = score_st([ref], [hyp])
            out.update({f"{task}_{k}": round(v, 2) for k, v in result.items()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_tag", type=Path, required=True, help="packed zip (espnet2.bin.pack s2t)")
    parser.add_argument("--audio", type=Path, default=None, help="the recording (default: AN4 clips cycled)")
    parser.add_argument("--refs", type=Path, default=None, help="its prompts (local/make_long_recording.py JSON)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the AN4 recording")
    parser.add_argument("--task", nargs="+", default=["asr", "st_fra"])
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="decodings timed (the median is reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = round(os.getloadavg()[0], 2)

    audio = args.audio or an4_recording(args.minutes, Path(tempfile.mkdtemp(prefix="bench_transcribe_")) / "an4.wav")
    start = time.perf_counter()
    transcriber = Transcriber.from_pretrained(args.model_tag, config=TranscribeConfig(
        tasks=tuple(args.task), batch_size=args.batch_size), beam_size=args.beam_size)
    load_seconds = time.perf_counter() - start
    fs = transcriber.sample_rate

    runs = []
    for _ in range(args.repeats):
        stage = {}
        (wave, info), stage["read"] = timed(read_audio, audio)
        choice, stage["bandwidth"] = timed(transcriber.choose_bandwidth, wave, info.sample_rate)
        wave16k, stage["resample"] = timed(resample, wave, info.sample_rate, fs)
        segments, stage["segment"] = timed(transcriber.segmenter, wave16k, fs)
        for task in args.task:
            _, stage[f"decode_{task}"] = timed(transcriber.decode_segments, wave16k, segments, task, choice.token)
        transcript, stage["end_to_end"] = timed(transcriber.transcribe, audio)
        runs.append(stage)
    wall = {k: statistics.median(r[k][0] for r in runs) for k in runs[0]}
    cpu = {k: statistics.median(r[k][1] for r in runs) for k in runs[0]}
    duration = info.duration
    lengths = [(s.end - s.start) / fs for s in segments]
    result = {
        "what": "espnet_smoe.transcribe on one long recording: wall seconds per stage, and real-time factors",
        "audio": str(args.audio) if args.audio else f"AN4 utterances of the espnet wheel cycled to {args.minutes} min",
        "audio_seconds": round(duration, 1),
        "sample_rate": info.sample_rate,
        "model": str(args.model_tag),
        "parameters": sum(p.numel() for p in transcriber.s2t.s2t_model.parameters()),
        "tasks": args.task,
        "beam_size": args.beam_size,
        "batch_size": args.batch_size,
        "bandwidth": transcript.bandwidth.token,
        "segments": len(segments),
        "segment_seconds": {"mean": round(statistics.mean(lengths), 2), "max": round(max(lengths), 2)},
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "model_load_seconds": round(load_seconds, 2),
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "wall_seconds": {k: round(v, 2) for k, v in wall.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "rtf_wall": {k: round(v / duration, 4) for k, v in wall.items()},
        "rtf_cpu": {k: round(v / duration, 4) for k, v in cpu.items()},
    }
    if args.refs:
        # the same prompts decoded one by one, cut at their known times: what long-form decoding is measured against
        prompts = json.loads(args.refs.read_text(encoding="utf-8"))["prompts"]
        known = [Segment(int(p["start"] * fs), int(p["end"] * fs)) for p in prompts]
        result["scores"] = {
            "long_form": scores(prompts, {t: [s.results[t].text for s in transcript.segments] for t in args.task},
                                args.task),
            "one_by_one": scores(prompts, {t: [r.text for r in transcriber.decode_segments(
                wave16k, known, t, transcript.bandwidth.token)] for t in args.task}, args.task),
        }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
