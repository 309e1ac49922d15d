"""Reading recordings of any container, sampling rate and channel count.

A user's recordings are not the recipe's 16 kHz mono WAV: a call arrives as
8 kHz mu-law, a meeting as 48 kHz stereo FLAC, a podcast as MP3 or M4A. This
module turns any of them into a mono float waveform and says what it was.

libsndfile (through ``soundfile``) reads WAV in all its encodings, FLAC, OGG,
MP3, NIST SPHERE and more; containers it does not know (M4A/AAC, WMA, WebM)
are handed to FFmpeg's libraries through PyAV when that package is installed.

A file that cannot be used raises :class:`AudioInputError`, whose ``kind``
names the problem (unreadable, truncated, empty, low sample rate), so that a
caller working through a folder can count and report it and go on.
"""

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

# The lowest rate a telephone channel uses; below it speech has lost most of
# what the narrowband expert was trained on.
MIN_SAMPLE_RATE = 8000

UNREADABLE = "unreadable"
TRUNCATED = "truncated"
EMPTY = "empty"
LOW_SAMPLE_RATE = "low_sample_rate"


class AudioInputError(ValueError):
    """A recording that cannot be transcribed.

    Attributes:
        path: The file.
        kind: ``unreadable``, ``truncated``, ``empty`` or ``low_sample_rate``.
    """

    def __init__(self, path: Union[str, Path], kind: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
        self.kind = kind


@dataclass(frozen=True)
class AudioInfo:
    """What a file held, before it was mixed down and resampled.

    Attributes:
        sample_rate: Its sampling rate in Hz.
        channels: Its channel count.
        frames: Samples per channel read.
        format: Container (``WAV``, ``FLAC``, ``MP3``, ``mov,mp4,m4a``...).
        subtype: Encoding (``PCM_16``, ``ULAW``, ``aac``...).
        reader: ``soundfile`` or ``pyav``.
    """

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    reader: str

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate


def _declared_wav_frames(path: Path, block_align: int) -> Optional[int]:
    """Frames the RIFF header of a WAV file declares, or None if not a plain RIFF/WAVE.

    libsndfile quietly shortens a WAV whose data chunk runs past the end of
    the file, so a file cut off in a copy or download reads without an error;
    the header still says how much audio there should have been.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                # 0 and 0xFFFFFFFF mark a stream written without knowing its length
                return None if size in (0, 0xFFFFFFFF) else size // block_align
            f.seek(size + (size & 1), 1)  # chunks are padded to even sizes


# Bytes per sample of the WAV encodings whose data size gives the frame count.
_WAV_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
                     "ULAW": 1, "ALAW": 1}
_BLOCK_SECONDS = 30  # read in blocks: a long 48 kHz stereo file is mixed down as it is read


def _read_soundfile(path: Path) -> Tuple[np.ndarray, AudioInfo]:
    with sf.SoundFile(path) as f:
        rate, channels, fmt, subtype = f.samplerate, f.channels, f.format, f.subtype
        declared = f.frames
        blocks = []
        try:
            while True:
                block = f.read(_BLOCK_SECONDS * rate, dtype="float32", always_2d=True)  # (Frames, Channels)
                if len(block) == 0:
                    break
                blocks.append(block.mean(axis=1))
        except sf.LibsndfileError as exc:
            done = sum(len(b) for b in blocks) / rate
            raise AudioInputError(path, TRUNCATED, f"decoding fails after {done:.2f} s of the {declared / rate:.2f} s "
                                  f"its header declares ({exc.error_string}): the file is cut off or damaged") from exc
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if fmt in ("WAV", "WAVEX") and subtype in _WAV_SAMPLE_BYTES:
        declared = _declared_wav_frames(path, _WAV_SAMPLE_BYTES[subtype] * channels)
    elif fmt == "MP3":
        declared = None  # an MP3's frame count is an estimate from its header
    if declared is not None and len(mono) < declared:
        raise AudioInputError(path, TRUNCATED, f"truncated: the header declares {declared / rate:.2f} s of audio, "
                              f"the file holds {len(mono) / rate:.2f} s")
    return mono, AudioInfo(rate, channels, len(mono), fmt, subtype, "soundfile")


def _read_pyav(path: Path) -> Tuple[np.ndarray, AudioInfo]:
    import av  # optional: only for containers libsndfile does not read

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioInputError(path, UNREADABLE, f"no audio stream in this {container.format.name} file")
        stream = container.streams.audio[0]
        rate, channels = stream.rate, stream.channels
        # planar float32 at the stream's own rate and layout: (Channels, Samples) per frame
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
        fmt, codec = container.format.name, stream.codec_context.name
    mono = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return mono, AudioInfo(rate, channels, len(mono), fmt, codec, "pyav")


def read_audio(path: Union[str, Path]) -> Tuple[torch.Tensor, AudioInfo]:
    """Read a recording and mix its channels down.

    Args:
        path: Any file libsndfile reads, or PyAV (FFmpeg) when installed.

    Returns:
        The (Samples,) float32 mono waveform at the file's own rate (the mean
        of its channels), and what the file held.

    Raises:
        AudioInputError: The file cannot be read or decoded to its end, holds
            no samples, or is sampled below :data:`MIN_SAMPLE_RATE`.
        FileNotFoundError: There is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        wave, info = _read_soundfile(path)
    except sf.LibsndfileError as sf_exc:
        try:
            wave, info = _read_pyav(path)
        except ImportError:
            raise AudioInputError(path, UNREADABLE, f"libsndfile cannot read it ({sf_exc.error_string}) and PyAV "
                                  "(pip install av) is not installed for other containers") from sf_exc
        except AudioInputError:
            raise
        except Exception as av_exc:  # PyAV raises its own error classes, one per FFmpeg error code
            raise AudioInputError(path, UNREADABLE, f"not a readable audio file: libsndfile: {sf_exc.error_string}; "
                                  f"FFmpeg: {av_exc}") from av_exc
    if info.sample_rate < MIN_SAMPLE_RATE:
        raise AudioInputError(path, LOW_SAMPLE_RATE, f"sampled at {info.sample_rate} Hz; at least "
                              f"{MIN_SAMPLE_RATE} Hz (telephone) is needed")
    if len(wave) == 0:
        raise AudioInputError(path, EMPTY, f"holds no audio ({info.format} {info.subtype}, 0 samples)")
    return torch.from_numpy(wave), info


def resample(wave: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """(Samples,) waveform at ``to_rate`` (torchaudio's band-limited sinc resampler)."""
    if from_rate == to_rate:
        return wave
    return AF.resample(wave, from_rate, to_rate)
