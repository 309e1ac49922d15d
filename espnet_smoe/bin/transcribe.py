#!/usr/bin/env python3
"""Transcribe and translate recordings of any length, format and sample rate.

    python -m espnet_smoe.bin.transcribe --model_tag exp/train_smoe_encdec_tiny_from_base/packed.zip \\
        --task asr st_fra --output_dir transcripts meeting.flac calls/

Takes files and folders (searched recursively for audio files: wav, flac,
mp3, ogg, m4a ...), any sample rate from 8 kHz and any channel count. Each
recording's bandwidth token is detected from its audio (``--bandwidth auto``)
or given (``nb``/``wb``); long recordings are cut at pauses by a voice
activity detector (Silero VAD) into segments of at most the model's
``speech_length``, and the segments are decoded in batches for every task.

Writes, per recording ``<name>`` and task: ``<name>.<task>.txt``,
``<name>.<task>.srt``, ``<name>.<task>.vtt``; and ``<name>.json`` (segments
with times, texts and scores, the bandwidth and how it was chosen);
``summary.json`` counts the files decoded, without speech, skipped (unreadable,
truncated, empty, sampled below 8 kHz) and failed.

Exit status: 0 when every file was decoded (or held no speech), 1 when some
were skipped or failed, 2 for a usage error (no model, no input).
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import torch

from espnet_smoe.bin import reset_root_logging
from espnet_smoe.segmentation import SegmenterConfig
from espnet_smoe.transcribe import TranscribeConfig, Transcriber
from espnet_smoe.transcript_files import FORMATS, RunSummary, collect_inputs, transcribe_files


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_smoe.bin.transcribe", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="recordings and folders of recordings")
    parser.add_argument("--output_dir", type=Path, default=Path("transcripts"), help="where the outputs go")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS), help="outputs to write")

    model = parser.add_argument_group("model (a packed zip, or a config and a checkpoint)")
    model.add_argument("--model_tag", type=Path, default=None,
                       help="zip made by espnet2.bin.pack s2t (run.sh: exp/<tag>/packed.zip)")
    model.add_argument("--s2t_train_config", type=Path, default=None, help="training config.yaml")
    model.add_argument("--s2t_model_file", type=Path, default=None, help="model .pth")
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:N; auto: cuda when available")
    model.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's)")

    decode = parser.add_argument_group("decoding")
    decode.add_argument("--task", nargs="+", default=["asr"], help="task tokens, e.g. asr st_fra")
    decode.add_argument("--lang", default="eng", help="source-language token")
    decode.add_argument("--bandwidth", choices=["auto", "nb", "wb"], default="auto",
                        help="bandwidth token of every file; auto: detect it per file from the audio")
    decode.add_argument("--bandwidth_fallback", choices=["nb", "wb"], default="wb",
                        help="with --bandwidth auto: the token for silent or clipped files")
    decode.add_argument("--beam_size", type=int, default=5)
    decode.add_argument("--ctc_weight", type=float, default=0.3, help="CTC weight of the --ctc_tasks")
    decode.add_argument("--ctc_tasks", nargs="*", default=["asr"],
                        help="tasks whose target is the CTC branch's (the transcript); others use ctc_weight 0")
    decode.add_argument("--batch_size", type=int, default=8, help="segments per beam search")
    decode.add_argument("--maxlenratio", type=float, default=0.0, help="0: at most one token per encoder frame")
    decode.add_argument("--penalty", type=float, default=0.0, help="length bonus")
    decode.add_argument("--no_repeat_ngram_size", type=int, default=0,
                        help="n > 0: no hypothesis holds the same n tokens twice (stops loops); 0: no limit")

    seg = parser.add_argument_group("segmentation (Silero VAD)")
    defaults = SegmenterConfig()
    seg.add_argument("--max_segment", type=float, default=None,
                     help="longest segment in seconds (default and maximum: the model's speech_length)")
    seg.add_argument("--vad_threshold", type=float, default=defaults.threshold, help="speech probability threshold")
    seg.add_argument("--min_silence", type=float, default=defaults.min_silence_s,
                     help="seconds of pause that end a segment")
    seg.add_argument("--pad", type=float, default=defaults.pad_s, help="seconds of context around each segment")

    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars over files and segments (default: when stderr is a terminal)")
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def build_transcriber(args: argparse.Namespace) -> Transcriber:
    """The :class:`Transcriber` the arguments describe."""
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    segmenter = SegmenterConfig(max_segment_s=args.max_segment, threshold=args.vad_threshold,
                                min_silence_s=args.min_silence, pad_s=args.pad)
    config = TranscribeConfig(
        tasks=tuple(args.task), bandwidth=args.bandwidth, bandwidth_fallback=args.bandwidth_fallback,
        lang=args.lang, ctc_tasks=tuple(args.ctc_tasks), batch_size=args.batch_size, segmenter=segmenter,
    )
    return Transcriber.from_pretrained(
        model_tag=args.model_tag, s2t_train_config=args.s2t_train_config, s2t_model_file=args.s2t_model_file,
        config=config, device=device, beam_size=args.beam_size, ctc_weight=args.ctc_weight,
        maxlenratio=args.maxlenratio, penalty=args.penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
    )


def main(argv: Optional[List[str]] = None) -> RunSummary:
    """Run the command line; returns the summary (``sys.exit`` is left to ``__main__``)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    reset_root_logging()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s: %(message)s")
    # ESPnet logs every beam-search step at INFO on the root logger; ours speak for themselves
    logging.getLogger("espnet_smoe").setLevel(args.log_level)
    if args.model_tag is None and (args.s2t_train_config is None or args.s2t_model_file is None):
        parser.error("give --model_tag (a packed zip) or both --s2t_train_config and --s2t_model_file")
    if args.model_tag is not None and args.s2t_train_config is not None:
        parser.error("give --model_tag or --s2t_train_config/--s2t_model_file, not both")
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    try:
        inputs = collect_inputs(args.inputs)
        transcriber = build_transcriber(args)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    summary = transcribe_files(transcriber, inputs, args.output_dir, args.formats, args.progress)
    counts = summary.to_dict()["counts"]
    logging.getLogger("espnet_smoe.transcribe").info(
        "%d files: %d decoded, %d without speech, %d skipped, %d failed; %.1f s of audio in %.1f s; "
        "outputs in %s", summary.files, counts["decoded"], counts["no_speech"], counts["skipped"], counts["failed"],
        summary.audio_seconds, summary.seconds, args.output_dir,
    )
    return summary


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result.skipped or result.failed else 0)
