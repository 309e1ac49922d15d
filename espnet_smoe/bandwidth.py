"""Bandwidth detection: is a waveform narrowband (telephone, 8 kHz) or wideband?

S-MoE routes the encoder by a bandwidth token, so a corpus without ``utt2bw``
(or a live stream) needs the token from the audio itself. Narrowband speech fed
to a 16 kHz model has been upsampled: the resampler leaves almost no energy
above 4 kHz. So, like the bandwidth estimators of the Hi-Fi TTS and URGENT
corpora, we take the mean power spectrum over the speech frames and find the
highest frequency whose power is within ``floor_db`` of the spectrum's peak;
below ``nb_max_cutoff_hz`` the utterance is narrowband.

Two inputs cannot be judged this way, and get the caller's fallback token with
a stated reason instead of a guess: silence (no frame loud enough) and clipped
audio (clipping spreads harmonics over the whole band, so a clipped telephone
recording looks wideband).
"""

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

NARROWBAND = "nb"
WIDEBAND = "wb"


@dataclass(frozen=True)
class BandwidthConfig:
    """Settings of :func:`detect_bandwidth` (defaults measured on the recipe's data).

    Attributes:
        n_fft: STFT size; 512 at 16 kHz gives 31 Hz bins.
        floor_db: Bins this far below the spectrum's peak count as empty.
        nb_max_cutoff_hz: Highest cutoff still called narrowband (telephone
            audio ends at 3.4-4 kHz, wideband speech carries energy to 7-8 kHz).
        silence_dbfs: Frames quieter than this (RMS, dB full scale) are skipped;
            an utterance with no louder frame is silence.
        clip_fraction: Share of samples at the waveform's extreme value above
            which the utterance counts as clipped.
    """

    n_fft: int = 512
    floor_db: float = 50.0
    nb_max_cutoff_hz: float = 5000.0
    silence_dbfs: float = -60.0
    clip_fraction: float = 0.002


@dataclass(frozen=True)
class BandwidthDecision:
    """What :func:`detect_bandwidth` decided and why.

    Attributes:
        token: ``"nb"`` or ``"wb"`` (the fallback when ``reason`` is not None).
        cutoff_hz: Highest frequency within ``floor_db`` of the peak, or None
            when the spectrum was not used.
        reason: None for a measured decision, else why the fallback was used
            (``"silence"``, ``"clipped"``).
    """

    token: str
    cutoff_hz: Optional[float]
    reason: Optional[str] = None


def cutoff_frequency(
    wave: np.ndarray, fs: int, config: BandwidthConfig = BandwidthConfig()
) -> Optional[float]:
    """Highest frequency (Hz) whose mean power is within ``floor_db`` of the peak.

    Args:
        wave: (Samples,) float waveform.
        fs: Sampling rate in Hz.
        config: Detection settings.

    Returns:
        The cutoff, or None when no frame is louder than ``silence_dbfs``.
    """
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
    hop = config.n_fft // 2
    if x.numel() < config.n_fft:
        x = torch.nn.functional.pad(x, (0, config.n_fft - x.numel()))
    frames = x.unfold(0, config.n_fft, hop)  # (Frames, n_fft)
    rms_db = 10 * torch.log10(frames.pow(2).mean(dim=1) + 1e-20)  # (Frames,)
    active = frames[rms_db > config.silence_dbfs]
    if active.size(0) == 0:
        return None
    window = torch.hann_window(config.n_fft)
    power = torch.fft.rfft(active * window, dim=1).abs().pow(2).mean(dim=0)  # (n_fft/2+1,)
    power_db = 10 * torch.log10(power + 1e-20)
    above = torch.nonzero(power_db >= power_db.max() - config.floor_db).reshape(-1)
    return float(above.max()) * fs / config.n_fft


def is_clipped(wave: np.ndarray, config: BandwidthConfig = BandwidthConfig()) -> bool:
    """True when more than ``clip_fraction`` of the samples sit at the extreme value.

    Speech rarely touches its own maximum more than a few times; a clipped
    recording has runs of samples pinned there, at whatever level it clipped.
    """
    x = np.abs(np.asarray(wave, dtype=np.float32).reshape(-1))
    if x.size == 0:
        return False
    peak = float(x.max())
    if peak <= 0.0:
        return False
    pinned = np.count_nonzero(x >= peak * (1.0 - 1e-4))
    return pinned > max(2, config.clip_fraction * x.size)


def detect_bandwidth(
    wave: Union[np.ndarray, torch.Tensor],
    fs: int,
    fallback: str = WIDEBAND,
    config: BandwidthConfig = BandwidthConfig(),
) -> BandwidthDecision:
    """Decide ``nb`` or ``wb`` for one utterance.

    Args:
        wave: (Samples,) or (Samples, Channels) waveform; channels are averaged.
        fs: Its sampling rate. Audio sampled at 8 kHz or less is narrowband
            without looking further.
        fallback: Token returned for silence and clipped audio.
        config: Detection settings.

    Returns:
        The decision, with the measured cutoff or the reason for the fallback.
    """
    if fallback not in (NARROWBAND, WIDEBAND):
        raise ValueError(f"fallback must be '{NARROWBAND}' or '{WIDEBAND}', got {fallback!r}")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise ValueError(f"expected a (Samples,) or (Samples, Channels) waveform, got shape {wave.shape}")
    if fs <= 8000:
        return BandwidthDecision(NARROWBAND, fs / 2)
    cutoff = cutoff_frequency(wave, fs, config)
    if cutoff is None:
        return BandwidthDecision(fallback, None, "silence")
    if is_clipped(wave, config):
        return BandwidthDecision(fallback, None, "clipped")
    return BandwidthDecision(NARROWBAND if cutoff <= config.nb_max_cutoff_hz else WIDEBAND, cutoff)
