"""Bandwidth detection on real AN4 speech (the espnet wheel's 7 clips) and on edge cases."""

import tarfile
from pathlib import Path

import espnet2
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from espnet_smoe.bandwidth import BandwidthConfig, cutoff_frequency, detect_bandwidth, is_clipped


@pytest.fixture(scope="module")
def an4_speech(tmp_path_factory):
    """The 7 real 16 kHz AN4 clips as float32 arrays."""
    root = tmp_path_factory.mktemp("an4_bw")
    tarball = Path(espnet2.__file__).parents[1] / "egs3/mini_an4/esp2_asr/downloads.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    waves = []
    for sph in sorted((root / "downloads/an4").glob("wav/*/*/*.sph")):
        audio, fs = sf.read(sph, dtype="float32")
        assert fs == 16000, (sph, fs)
        waves.append(audio)
    assert len(waves) >= 7
    return waves


def telephone(wave: np.ndarray) -> np.ndarray:
    """8 kHz round trip, as narrowband audio reaches a 16 kHz model."""
    x = torch.from_numpy(wave)
    return AF.resample(AF.resample(x, 16000, 8000), 8000, 16000).numpy()


def test_real_speech_and_its_telephone_copy(an4_speech):
    for wave in an4_speech:
        wide = detect_bandwidth(wave, 16000)
        narrow = detect_bandwidth(telephone(wave), 16000)
        assert (wide.token, wide.reason) == ("wb", None), wide
        assert (narrow.token, narrow.reason) == ("nb", None), narrow
        # the 8 kHz copy's spectrum ends below 4 kHz Nyquist plus the resampler's skirt;
        # AN4's wideband speech reaches well past it
        assert narrow.cutoff_hz <= 5000 < wide.cutoff_hz, (narrow, wide)


def test_cutoff_of_band_limited_noise():
    """White noise low-passed at 3 kHz ends at 3 kHz (+ the filter's skirt), not at 8 kHz."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000).astype(np.float32) * 0.1
    low = AF.lowpass_biquad(torch.from_numpy(noise), 16000, 3000.0)
    low = AF.lowpass_biquad(AF.lowpass_biquad(low, 16000, 3000.0), 16000, 3000.0).numpy()
    full = cutoff_frequency(noise, 16000)
    assert full == pytest.approx(8000.0)
    assert 3000.0 <= cutoff_frequency(low, 16000, BandwidthConfig(floor_db=30.0)) < 6000.0


def test_audio_sampled_at_8k_is_narrowband_without_analysis(an4_speech):
    at_8k = AF.resample(torch.from_numpy(an4_speech[0]), 16000, 8000).numpy()
    decision = detect_bandwidth(at_8k, 8000)
    assert (decision.token, decision.cutoff_hz, decision.reason) == ("nb", 4000.0, None)


@pytest.mark.parametrize("fallback", ["nb", "wb"])
def test_silence_gets_the_fallback_with_its_reason(fallback):
    for silent in (np.zeros(16000, np.float32), np.full(16000, 1e-5, np.float32), np.zeros(10, np.float32)):
        decision = detect_bandwidth(silent, 16000, fallback=fallback)
        assert (decision.token, decision.cutoff_hz, decision.reason) == (fallback, None, "silence")


def test_clipped_telephone_audio_gets_the_fallback(an4_speech):
    narrow = telephone(an4_speech[1])
    clipped = np.clip(narrow * 20.0, -0.5, 0.5)
    assert is_clipped(clipped) and not is_clipped(narrow)
    # measured anyway, the clipping harmonics would make it look wideband
    assert cutoff_frequency(clipped, 16000) > 5000
    decision = detect_bandwidth(clipped, 16000, fallback="nb")
    assert (decision.token, decision.reason) == ("nb", "clipped")


def test_stereo_tensor_input_and_bad_arguments(an4_speech):
    narrow = telephone(an4_speech[2])
    stereo = torch.from_numpy(np.stack([narrow, narrow], axis=1))  # (Samples, 2)
    assert detect_bandwidth(stereo, 16000).token == "nb"
    with pytest.raises(ValueError, match="fallback must be 'nb' or 'wb', got 'auto'"):
        detect_bandwidth(narrow, 16000, fallback="auto")
    with pytest.raises(ValueError, match=r"\(Samples,\) or \(Samples, Channels\) waveform, got shape \(1, 2, 3\)"):
        detect_bandwidth(np.zeros((1, 2, 3)), 16000)
