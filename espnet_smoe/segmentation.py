"""Cutting a long recording into utterance-sized segments the model can decode.

The model was trained on utterances of at most ``speech_length`` seconds and
trims longer input, so a recording of minutes must be cut first. Where to cut
matters more than how: a cut inside a word loses it in both halves.

1. Silero VAD (the ``silero-vad`` package, whose wheel ships its model; run
   with TorchScript, so nothing beyond torch is needed) gives a speech
   probability for every 32 ms frame.
2. Its hysteresis (start above ``threshold``, end after ``min_silence_s``
   below ``threshold - 0.15``) turns them into speech regions; pauses shorter
   than ``min_silence_s`` stay inside a region.
3. A region longer than the model's window is split where the speech is
   quietest: the minimum of the short-time energy, smoothed over
   ``energy_window_s`` so that a stop consonant's closure inside a word does
   not look like a pause, searched in the last ``split_search_fraction`` of
   the window so that no piece comes out very short.
4. Each region gets ``pad_s`` of context on both sides (never past the middle
   of the pause to its neighbour), because VAD boundaries sit tight on the
   speech and word onsets are quiet; cuts made in step 3 get none.
"""

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torchaudio.functional as AF
from typeguard import typechecked

# The rates Silero VAD is trained for (its 16 kHz model also takes multiples of 16 kHz).
_VAD_RATES = (8000, 16000)


@dataclass(frozen=True)
class Segment:
    """One piece of a recording, in samples of the waveform it was cut from.

    Attributes:
        start: First sample.
        end: One past the last sample.
    """

    start: int
    end: int

    def seconds(self, sample_rate: int) -> tuple:
        """(start, end) in seconds."""
        return self.start / sample_rate, self.end / sample_rate


@dataclass(frozen=True)
class SegmenterConfig:
    """Settings of :class:`SpeechSegmenter`.

    Attributes:
        max_segment_s: Longest segment, padding included; at most the
            model's ``speech_length`` (it trims longer input). None: the
            model's, filled in by :class:`~espnet_smoe.transcribe.Transcriber`.
        threshold: Speech probability above which a frame starts speech.
        min_speech_s: Shorter speech regions are dropped (clicks, breaths).
        min_silence_s: A pause must be this long to end a region.
        pad_s: Context added on both sides of a region.
        min_segment_s: Shorter segments are widened to this, with the pause
            around them: the beam search allows one output token per encoder
            frame (80 ms in the recipe's models), the 3-token prompt included,
            so a 0.5 s word would have room for 3 tokens of text.
        energy_window_s: Smoothing of the energy curve when splitting.
        split_search_fraction: Share of the window, at its end, searched for
            the quietest point.
    """

    max_segment_s: Optional[float] = None
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.3
    pad_s: float = 0.2
    min_segment_s: float = 1.0
    energy_window_s: float = 0.15
    split_search_fraction: float = 0.5

    def __post_init__(self):
        if self.max_segment_s is not None and self.max_segment_s <= 2 * self.pad_s + self.min_speech_s:
            raise ValueError(f"max_segment_s={self.max_segment_s} leaves no room for speech between "
                             f"2 x pad_s={self.pad_s}")
        if self.max_segment_s is not None and self.min_segment_s > self.max_segment_s:
            raise ValueError(f"min_segment_s={self.min_segment_s} exceeds max_segment_s={self.max_segment_s}")
        if not 0.0 < self.split_search_fraction <= 1.0:
            raise ValueError(f"split_search_fraction must be in (0, 1], got {self.split_search_fraction}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


def load_silero_vad() -> torch.jit.ScriptModule:
    """Silero VAD's TorchScript model from the ``silero-vad`` wheel (no download).

    The package sets torch's thread count to 1 when it is imported; the
    caller's setting is put back.
    """
    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as exc:
        raise ImportError("long recordings are segmented with Silero VAD: pip install silero-vad") from exc
    finally:
        torch.set_num_threads(threads)
    return silero_vad.load_silero_vad(onnx=False)


def smoothed_energy_db(wave: np.ndarray, sample_rate: int, window_s: float, hop: int) -> np.ndarray:
    """Short-time energy in dB every ``hop`` samples, averaged over ``window_s``.

    Args:
        wave: (Samples,) waveform.
        sample_rate: Its rate.
        window_s: Length of the moving average, in seconds.
        hop: Samples between two values.

    Returns:
        (Samples // hop,) energies; value ``i`` describes the audio around
        sample ``i * hop + hop // 2``.
    """
    frames = len(wave) // hop
    power = np.square(wave[: frames * hop], dtype=np.float32).reshape(frames, hop).mean(axis=1)
    width = max(1, int(round(window_s * sample_rate / hop)))
    kernel = np.ones(width) / width
    return 10.0 * np.log10(np.convolve(power, kernel, mode="same") + 1e-10)


class SpeechSegmenter:
    """Voice-activity segmentation of a recording into decodable segments.

    Args:
        config: Segmentation settings.
        vad_model: A Silero VAD model; loaded from the package when None.
    """

    @typechecked
    def __init__(self, config: SegmenterConfig, vad_model: Optional[torch.nn.Module] = None):
        if config.max_segment_s is None:
            raise ValueError("SegmenterConfig.max_segment_s is not set: give the model's speech_length")
        self.config = config
        self.vad = vad_model if vad_model is not None else load_silero_vad()

    @torch.no_grad()
    def speech_probabilities(self, wave: torch.Tensor, sample_rate: int) -> tuple:
        """Silero's speech probability per frame.

        Args:
            wave: (Samples,) waveform.
            sample_rate: Its rate.

        Returns:
            (Frames,) probabilities, the VAD's rate and its frame hop in
            samples of that rate.
        """
        vad_rate = sample_rate if sample_rate in _VAD_RATES else 16000
        x = wave if vad_rate == sample_rate else AF.resample(wave, sample_rate, vad_rate)
        probs = self.vad.audio_forward(x.reshape(1, -1).float().cpu(), vad_rate).reshape(-1)  # (Frames,)
        return probs.numpy(), vad_rate, 512 if vad_rate == 16000 else 256

    def speech_regions(self, wave: torch.Tensor, sample_rate: int) -> List[Segment]:
        """Speech regions of the recording, unpadded and not yet split.

        Args:
            wave: (Samples,) waveform.
            sample_rate: Its rate.
        """
        from silero_vad import get_speech_timestamps_from_probs

        probs, vad_rate, hop = self.speech_probabilities(wave, sample_rate)
        scale = sample_rate / vad_rate
        stamps = get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=vad_rate,
            threshold=self.config.threshold,
            min_speech_duration_ms=int(self.config.min_speech_s * 1000),
            min_silence_duration_ms=int(self.config.min_silence_s * 1000),
            speech_pad_ms=0,
            audio_length_samples=int(round(len(wave) / scale)),
        )
        return [Segment(int(s["start"] * scale), min(len(wave), int(s["end"] * scale))) for s in stamps]

    def split_long(self, region: Segment, energy_db: np.ndarray, hop: int, max_len: int) -> List[Segment]:
        """Cut a region into pieces of at most ``max_len`` samples at its quietest points.

        Args:
            region: The region, in samples.
            energy_db: :func:`smoothed_energy_db` of the whole waveform.
            hop: Its hop in samples.
            max_len: Longest piece.
        """
        pieces = []
        start = region.start
        earliest = max(1, int(max_len * (1.0 - self.config.split_search_fraction)))
        while region.end - start > max_len:
            lo, hi = (start + earliest) // hop, (start + max_len) // hop  # candidate cuts, in energy frames
            window = energy_db[lo:hi]
            # the latest of equally quiet points: fewer, longer pieces
            cut = (lo + len(window) - 1 - int(np.argmin(window[::-1]))) * hop + hop // 2 if len(window) else 0
            cut = min(max(cut, start + 1), start + max_len)
            pieces.append(Segment(start, cut))
            start = cut
        pieces.append(Segment(start, region.end))
        return pieces

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> List[Segment]:
        """Segments to decode, in order.

        Args:
            wave: (Samples,) waveform.
            sample_rate: Its rate.

        Returns:
            Segments of at most ``max_segment_s`` (pieces of one long region
            touch; others may overlap by the padding of a widened short one).
            Empty when the recording holds no speech.
        """
        cfg, n = self.config, len(wave)
        regions = self.speech_regions(wave, sample_rate)
        if not regions:
            return []
        pad = int(cfg.pad_s * sample_rate)
        max_len = int(cfg.max_segment_s * sample_rate)
        hop = max(1, sample_rate // 100)  # 10 ms
        energy = smoothed_energy_db(wave.numpy(), sample_rate, cfg.energy_window_s, hop)
        segments = []
        for i, region in enumerate(regions):
            # padding reaches at most halfway to the neighbouring region
            before = min(pad, (region.start - regions[i - 1].end) // 2 if i > 0 else region.start)
            after = min(pad, (regions[i + 1].start - region.end) // 2 if i + 1 < len(regions) else n - region.end)
            pieces = self.split_long(region, energy, hop, max_len - before - after)
            pieces[0] = Segment(pieces[0].start - before, pieces[0].end)
            pieces[-1] = Segment(pieces[-1].start, pieces[-1].end + after)
            segments.extend(pieces)
        return [self._widen(s, int(cfg.min_segment_s * sample_rate), n) for s in segments]

    @staticmethod
    def _widen(segment: Segment, min_len: int, n: int) -> Segment:
        missing = min_len - (segment.end - segment.start)
        if missing <= 0:
            return segment
        start = max(0, segment.start - missing // 2)
        end = min(n, start + min_len)
        return Segment(max(0, end - min_len), end)
