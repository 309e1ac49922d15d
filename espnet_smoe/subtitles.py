"""Caption files: SubRip (.srt) and WebVTT (.vtt) from timed text.

Both formats list cues (a start time, an end time, one or more lines of
text), separated by blank lines. They differ in the header (VTT starts with
``WEBVTT``), in the decimal mark of the milliseconds (SRT ``,``, VTT ``.``)
and in numbering (SRT numbers every cue from 1; in VTT the number is an
optional identifier). A blank line would end a cue early, and in VTT ``-->``
inside the text would be read as a timing line, so the text is cleaned of
both.
"""

from dataclasses import dataclass
from typing import Iterable, List


@dataclass(frozen=True)
class Cue:
    """Timed text.

    Attributes:
        start: Seconds from the start of the recording.
        end: Seconds; not before ``start``.
        text: What is said (or its translation).
    """

    start: float
    end: float
    text: str


def format_timestamp(seconds: float, decimal_mark: str) -> str:
    """``HH:MM:SS<mark>mmm``, rounded to the millisecond (hours may exceed 99)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def _clean(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.replace("-->", "->").splitlines()]
    return "\n".join(line for line in lines if line)


def _cues(cues: Iterable[Cue]) -> List[Cue]:
    kept = []
    for cue in cues:
        if cue.end < cue.start:
            raise ValueError(f"cue ends before it starts: {cue}")
        text = _clean(cue.text)
        if text:  # a cue without text is not allowed in SRT and useless in VTT
            kept.append(Cue(cue.start, cue.end, text))
    return kept


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip text of the cues with text, numbered from 1."""
    blocks = [
        f"{i}\n{format_timestamp(c.start, ',')} --> {format_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(_cues(cues), 1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT text of the cues with text."""
    blocks = ["WEBVTT\n"] + [
        f"{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n{c.text}\n" for c in _cues(cues)
    ]
    return "\n".join(blocks)
