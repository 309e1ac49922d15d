"""Tests for local/channel.py: telephone-band simulation and G.711 mu-law."""

import pytest
import torch

from local import channel


def band_fraction(wave: torch.Tensor, rate: int, lo: float, hi: float) -> float:
    spec = torch.fft.rfft(wave.double()).abs() ** 2
    freqs = torch.fft.rfftfreq(wave.shape[-1], 1.0 / rate)
    sel = (freqs >= lo) & (freqs < hi)
    return float(spec[sel].sum() / spec.sum())


def test_mulaw_known_codes():
    pcm = torch.tensor([0, 32767, -32768, 1000, -1000], dtype=torch.int32)
    codes = channel.mulaw_encode(pcm)
    assert codes.dtype == torch.uint8
    # G.711: zero -> 0xFF, positive full scale -> 0x80, negative full scale -> 0x00
    assert codes[:3].tolist() == [0xFF, 0x80, 0x00]
    # 1000 + 132 = 1132 -> segment 3, mantissa (1132 >> 6) & 15 = 1 -> ~0x31
    assert codes[3].item() == (~0x31) & 0xFF
    assert codes[4].item() == (~0xB1) & 0xFF
    assert channel.mulaw_decode(codes).tolist() == [0, 32124, -32124, 988, -988]


def test_mulaw_codes_are_a_fixed_point():
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    again = channel.mulaw_encode(channel.mulaw_decode(codes))
    differ = (again != codes).nonzero().flatten().tolist()
    assert differ == [0x7F]  # "negative zero" decodes to 0, which encodes as 0xFF


def test_mulaw_roundtrip_error_small():
    t = torch.arange(8000) / 8000.0
    x = 0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.01 * torch.sin(2 * torch.pi * 97 * t)
    y = channel.mulaw_roundtrip(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    err = (y - x).abs()
    # at most half a quantisation step: ~1/32 of the magnitude, 4/32768 near zero
    assert torch.all(err <= x.abs() / 16 + 8 / 32768)
    snr = 10 * torch.log10((x**2).sum() / ((y - x) ** 2).sum())
    assert snr > 30
    assert not torch.equal(y, x)  # it does quantise


def test_simulate_narrowband_removes_out_of_band_energy():
    torch.manual_seed(0)
    x = 0.1 * torch.randn(16000)
    assert band_fraction(x, 16000, 4000, 8001) > 0.45
    nb = channel.simulate_narrowband(x, 16000)
    assert abs(nb.shape[-1] - 8000) <= 1
    up = channel.upsample_to_16k(nb, 8000)
    assert abs(up.shape[-1] - 16000) <= 2
    assert band_fraction(up, 16000, 4000, 8001) < 1e-3
    assert band_fraction(nb, 8000, 0, 200) < 1e-3
    # the telephone band itself survives with about unit gain
    in_band = lambda w, r: band_fraction(w, r, 500, 3000) * float((w.double() ** 2).sum()) / w.shape[-1]  # noqa: E731
    assert in_band(up, 16000) == pytest.approx(in_band(x, 16000), rel=0.15)


def test_simulate_narrowband_keeps_leading_axes():
    x = 0.1 * torch.randn(2, 3200)
    nb = channel.simulate_narrowband(x)
    assert nb.shape == (2, 1600)


def test_upsample_to_16k():
    t = torch.arange(8000) / 8000.0
    x = 0.3 * torch.sin(2 * torch.pi * 1000 * t)
    up = channel.upsample_to_16k(x, 8000)
    assert up.shape[-1] == 16000
    t16 = torch.arange(16000) / 16000.0
    ref = 0.3 * torch.sin(2 * torch.pi * 1000 * t16)
    assert torch.allclose(up[200:-200], ref[200:-200], atol=0.01)
    same = torch.zeros(160)
    assert channel.upsample_to_16k(same, 16000) is same


def test_integer_input_rejected():
    with pytest.raises(TypeError):
        channel.mulaw_roundtrip(torch.zeros(10, dtype=torch.int16))
