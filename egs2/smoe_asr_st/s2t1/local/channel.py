"""Telephone-channel simulation in torch (no sox, no torchaudio codecs).

Public API (other recipes import these names; keep them stable):

* ``simulate_narrowband(wave, sample_rate=16000) -> Tensor`` at 8 kHz:
  300-3400 Hz band-pass (linear-phase windowed-sinc FIR), resampling to
  8 kHz, then a G.711 mu-law encode/decode round trip.
* ``mulaw_roundtrip(wave) -> Tensor``: G.711 mu-law (the segmented ITU-T
  G.711 law on 14-bit magnitudes, not the continuous mu=255 formula).
* ``upsample_to_16k(wave, sample_rate) -> Tensor``: models take 16 kHz input,
  so narrowband audio is upsampled back (its spectrum stays empty above 4 kHz).

Waveforms are float tensors in [-1, 1] with time on the last axis; any leading
axes (channels, batch) are kept.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as taf

NARROWBAND_RATE = 8000
WIDEBAND_RATE = 16000
TELEPHONE_BAND_HZ = (300.0, 3400.0)

# G.711 mu-law constants (ITU-T G.711, on 16-bit linear PCM).
_MULAW_BIAS = 0x84  # 132
_MULAW_CLIP = 32635


def _as_float(wave: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(wave):
        wave = torch.as_tensor(wave)
    if not torch.is_floating_point(wave):
        raise TypeError(f"expected a float waveform in [-1, 1], got dtype {wave.dtype}")
    return wave


def bandpass_fir(low_hz: float, high_hz: float, sample_rate: int, num_taps: int = 511) -> torch.Tensor:
    """Linear-phase band-pass FIR (difference of two windowed sincs, Blackman window).

    With 511 taps at 16 kHz the transition bands are about 170 Hz wide and the
    stop-band attenuation is about 74 dB.
    """
    if num_taps % 2 == 0:
        raise ValueError("num_taps must be odd (type-I linear-phase filter)")
    nyquist = sample_rate / 2.0
    if not 0.0 <= low_hz < high_hz <= nyquist:
        raise ValueError(f"bad band {low_hz}-{high_hz} Hz for sample rate {sample_rate}")
    n = torch.arange(num_taps, dtype=torch.float64) - (num_taps - 1) / 2
    f_lo, f_hi = low_hz / sample_rate, high_hz / sample_rate
    taps = 2 * f_hi * torch.sinc(2 * f_hi * n) - 2 * f_lo * torch.sinc(2 * f_lo * n)
    taps = taps * torch.blackman_window(num_taps, periodic=False, dtype=torch.float64)
    # unit gain at the band centre
    centre = (low_hz + high_hz) / 2 / sample_rate
    gain = torch.sum(taps * torch.cos(2 * math.pi * centre * n))
    return (taps / gain).to(torch.float32)


def fir_filter(wave: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Apply a symmetric FIR with FFT convolution, delay-compensated ('same' length)."""
    wave = _as_float(wave)
    length, num_taps = wave.shape[-1], taps.shape[-1]
    n_fft = 1 << (length + num_taps - 1 - 1).bit_length()
    spec = torch.fft.rfft(wave.to(torch.float64), n=n_fft)
    spec = spec * torch.fft.rfft(taps.to(torch.float64), n=n_fft)
    full = torch.fft.irfft(spec, n=n_fft)
    delay = (num_taps - 1) // 2
    return full[..., delay : delay + length].to(wave.dtype)


def mulaw_encode(pcm16: torch.Tensor) -> torch.Tensor:
    """16-bit linear PCM (integer tensor) -> 8-bit G.711 mu-law codes (uint8)."""
    x = pcm16.to(torch.int32)
    negative = x < 0
    magnitude = torch.clamp(torch.abs(x), max=_MULAW_CLIP) + _MULAW_BIAS
    # segment = position of the highest set bit above bit 7 (0..7)
    exponent = torch.floor(torch.log2(magnitude.to(torch.float64))).to(torch.int32) - 7
    exponent = torch.clamp(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = (negative.to(torch.int32) << 7) | (exponent << 4) | mantissa
    return (~code & 0xFF).to(torch.uint8)


def mulaw_decode(codes: torch.Tensor) -> torch.Tensor:
    """8-bit G.711 mu-law codes -> 16-bit linear PCM values (int16)."""
    c = ~codes.to(torch.int32) & 0xFF
    negative = (c & 0x80) != 0
    exponent = (c >> 4) & 0x07
    mantissa = c & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return torch.where(negative, -magnitude, magnitude).to(torch.int16)


def mulaw_roundtrip(wave: torch.Tensor) -> torch.Tensor:
    """Quantise a float waveform in [-1, 1] through G.711 mu-law and back.

    The relative error is at most about 1/32 of the magnitude (4-bit mantissa
    per segment) plus one 16-bit step near zero; values are clipped to the
    G.711 range (|x| <= 32635/32768).
    """
    wave = _as_float(wave)
    pcm = torch.clamp(torch.round(wave * 32768.0), -32768, 32767).to(torch.int32)
    decoded = mulaw_decode(mulaw_encode(pcm))
    return (decoded.to(torch.float32) / 32768.0).to(wave.dtype)


def simulate_narrowband(wave: torch.Tensor, sample_rate: int = WIDEBAND_RATE) -> torch.Tensor:
    """Telephone channel: band-pass 300-3400 Hz, resample to 8 kHz, G.711 mu-law round trip.

    Returns the 8 kHz waveform (use :func:`upsample_to_16k` to feed a 16 kHz model).
    """
    wave = _as_float(wave)
    if sample_rate < 2 * TELEPHONE_BAND_HZ[1]:
        raise ValueError(f"sample_rate {sample_rate} too low for a {TELEPHONE_BAND_HZ} Hz band")
    # filter length scales with the rate so the transition width stays ~170 Hz
    num_taps = 2 * int(round(255 * sample_rate / WIDEBAND_RATE)) + 1
    taps = bandpass_fir(*TELEPHONE_BAND_HZ, sample_rate=sample_rate, num_taps=num_taps)
    band = fir_filter(wave, taps)
    if sample_rate != NARROWBAND_RATE:
        band = taf.resample(band, sample_rate, NARROWBAND_RATE)
    return mulaw_roundtrip(band)


def upsample_to_16k(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Resample to 16 kHz (band-limited sinc interpolation); a no-op at 16 kHz."""
    wave = _as_float(wave)
    if sample_rate == WIDEBAND_RATE:
        return wave
    return taf.resample(wave, sample_rate, WIDEBAND_RATE)
