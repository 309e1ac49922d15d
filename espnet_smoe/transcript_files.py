"""Transcribing files and folders into text, caption and JSON files.

For each recording ``<name>`` (its path below the folder given, without the
extension, or the file's stem) the output folder gets, per task:
``<name>.<task>.txt`` (one segment per line), ``<name>.<task>.srt`` and
``<name>.<task>.vtt``; and ``<name>.json`` with every segment's times, texts
and scores, the bandwidth used and how it was chosen. ``summary.json`` counts
what was decoded, what held no speech and what was skipped, and why.

A file that cannot be used (unreadable, truncated, empty, sampled below
8 kHz) is skipped and reported; one whose decoding fails is reported as
failed; neither stops the run.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from espnet_smoe.audio_io import AudioInputError
from espnet_smoe.subtitles import to_srt, to_vtt
from espnet_smoe.transcribe import Transcriber, Transcript

logger = logging.getLogger(__name__)

FORMATS = ("txt", "srt", "vtt", "json")
# What a folder is searched for; a file named on its own is always tried.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wma", ".webm",
    ".sph", ".nist", ".au", ".snd", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".rf64",
})


@dataclass(frozen=True)
class InputFile:
    """A recording and the name its outputs get.

    Attributes:
        path: The recording.
        name: Output name without extension, relative to the output folder.
    """

    path: Path
    name: str


@dataclass
class RunSummary:
    """What a run over files did.

    Attributes:
        decoded: Files with speech, decoded.
        no_speech: Files in which no speech was found (empty outputs written).
        skipped: ``{"file", "kind", "message"}`` of files that could not be used.
        failed: ``{"file", "message"}`` of files whose decoding raised.
        audio_seconds: Seconds of audio decoded (no-speech files included).
        seconds: Wall-clock seconds of the run.
    """

    decoded: List[str] = field(default_factory=list)
    no_speech: List[str] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    failed: List[Dict[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def files(self) -> int:
        """Files tried."""
        return len(self.decoded) + len(self.no_speech) + len(self.skipped) + len(self.failed)

    def to_dict(self) -> dict:
        """JSON-ready form, with counts and the real-time factor."""
        return {
            "files": self.files,
            "counts": {"decoded": len(self.decoded), "no_speech": len(self.no_speech),
                       "skipped": len(self.skipped), "failed": len(self.failed)},
            "decoded": self.decoded,
            "no_speech": self.no_speech,
            "skipped": self.skipped,
            "failed": self.failed,
            "audio_seconds": round(self.audio_seconds, 3),
            "seconds": round(self.seconds, 3),
            "rtf": round(self.seconds / self.audio_seconds, 4) if self.audio_seconds else None,
        }


def collect_inputs(paths: Iterable[Union[str, Path]]) -> List[InputFile]:
    """The recordings named, and those found in the folders named.

    A folder is searched recursively for files with an audio extension
    (:data:`AUDIO_EXTENSIONS`); their outputs keep the path below the folder,
    so ``a/x.wav`` and ``b/x.wav`` do not overwrite each other.

    Raises:
        FileNotFoundError: A path does not exist.
        ValueError: Two recordings would write the same outputs (``x.wav``
            and ``x.mp3`` side by side), or nothing was found.
    """
    inputs: List[InputFile] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                logger.warning("%s: no audio files (%s) in this folder", p, " ".join(sorted(AUDIO_EXTENSIONS)))
            inputs.extend(InputFile(f, f.relative_to(p).with_suffix("").as_posix()) for f in found)
        elif p.is_file():
            inputs.append(InputFile(p, p.stem))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    by_name: Dict[str, Path] = {}
    for item in inputs:
        if item.name in by_name:
            raise ValueError(f"{by_name[item.name]} and {item.path} would both write outputs named {item.name!r}; "
                             "rename one or transcribe them into different output folders")
        by_name[item.name] = item.path
    if not inputs:
        raise ValueError(f"no recordings found in {[str(p) for p in paths]}")
    return inputs


def output_files(output_dir: Path, name: str, tasks: Sequence[str], formats: Sequence[str]) -> Dict[str, Path]:
    """``{"<task>.<fmt>" or "json": path}`` of one recording's outputs."""
    out = {}
    for fmt in formats:
        if fmt == "json":
            out["json"] = output_dir / f"{name}.json"
        else:
            out.update({f"{task}.{fmt}": output_dir / f"{name}.{task}.{fmt}" for task in tasks})
    return out


def write_transcript(transcript: Transcript, output_dir: Path, name: str,
                     formats: Sequence[str] = FORMATS) -> List[Path]:
    """Write one recording's outputs; returns their paths."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown output formats {sorted(unknown)}; known: {list(FORMATS)}")
    written = []
    for key, path in output_files(output_dir, name, transcript.tasks, formats).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if key == "json":
            content = json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            task, fmt = key.rsplit(".", 1)
            text = transcript.text(task)
            content = {"txt": text + "\n" if text else "", "srt": to_srt(transcript.cues(task)),
                       "vtt": to_vtt(transcript.cues(task))}[fmt]
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def _describe(transcript: Transcript) -> str:
    bw = transcript.bandwidth
    if bw.source == "detected":
        how = f"detected, cutoff {bw.cutoff_hz:.0f} Hz"
    elif bw.source == "fallback":
        how = f"fallback: {bw.reason} audio"
    else:
        how = bw.source
    info = transcript.info
    return (f"{transcript.duration:.1f} s, {info.sample_rate} Hz, {info.channels} ch {info.format} {info.subtype}; "
            f"bandwidth <{bw.token}> ({how}); {len(transcript.segments)} segments")


def transcribe_files(
    transcriber: Transcriber,
    inputs: Sequence[InputFile],
    output_dir: Union[str, Path],
    formats: Sequence[str] = FORMATS,
    show_progress: Optional[bool] = None,
) -> RunSummary:
    """Transcribe recordings one after the other, writing each one's outputs as it is done.

    Args:
        transcriber: The model and settings.
        inputs: From :func:`collect_inputs`.
        output_dir: Where the outputs and ``summary.json`` go.
        formats: Subset of :data:`FORMATS`.
        show_progress: Progress bars over files and segments on stderr
            (None: only when stderr is a terminal).

    Returns:
        The counts, also written to ``<output_dir>/summary.json``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary()
    start = time.perf_counter()
    disable = None if show_progress is None else not show_progress
    with logging_redirect_tqdm(), \
            tqdm(inputs, desc="files", unit="file", disable=disable, position=0) as files, \
            tqdm(desc="segments", unit="seg", disable=disable, position=1, leave=False) as segments:
        for item in files:
            files.set_postfix_str(item.name, refresh=False)
            try:
                transcript = transcriber.transcribe(item.path, progress=segments)
                write_transcript(transcript, output_dir, item.name, formats)
            except AudioInputError as exc:
                logger.warning("skipped %s", exc)
                summary.skipped.append({"file": str(item.path), "kind": exc.kind, "message": str(exc)})
                continue
            except Exception as exc:  # an error in one file must not lose the others
                logger.error("failed %s: %s: %s", item.path, type(exc).__name__, exc,
                             exc_info=logger.isEnabledFor(logging.DEBUG))
                summary.failed.append({"file": str(item.path), "message": f"{type(exc).__name__}: {exc}"})
                continue
            summary.audio_seconds += transcript.duration
            if transcript.status == "no_speech":
                logger.warning("%s: no speech found (%s): wrote empty outputs", item.path, _describe(transcript))
                summary.no_speech.append(str(item.path))
            else:
                logger.info("%s: %s; decoded in %.1f s", item.path, _describe(transcript), transcript.seconds)
                summary.decoded.append(str(item.path))
    summary.seconds = time.perf_counter() - start
    (output_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
