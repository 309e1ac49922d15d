"""local/make_long_recording.py: a test set's prompts in one recording, with their times."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from local.make_long_recording import build_recording, main, read_prompts

FS = 16000


@pytest.fixture
def test_dir(tmp_path):
    """A test dir of three prompts: tones of different pitch and length, 16 kHz."""
    d, wav = tmp_path / "data/test_nb", tmp_path / "wav"
    d.mkdir(parents=True)
    wav.mkdir()
    rows = {"wav.scp": [], "text.asr": [], "text.st_fra": []}
    for i, (seconds, hz) in enumerate([(0.5, 300), (1.25, 500), (2.0, 700)]):
        t = np.arange(int(seconds * FS)) / FS
        sf.write(wav / f"p{i}.wav", 0.3 * np.sin(2 * np.pi * hz * t), FS, subtype="PCM_16")
        rows["wav.scp"].append(f"utt{i} {wav / f'p{i}.wav'}")
        rows["text.asr"].append(f"utt{i} prompt number {i}")
        rows["text.st_fra"].append(f"utt{i} invite numéro {i}")
    for name, lines in rows.items():
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def _dominant_hz(wave: np.ndarray, fs: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spectrum)) * fs / len(wave)


def test_each_prompt_once_at_its_stated_time_as_8khz_ulaw(test_dir, tmp_path):
    out = tmp_path / "long/call.wav"
    assert main(["--data_dir", str(test_dir), "--out", str(out), "--sample_rate", "8000", "--subtype", "ULAW",
                 "--pause", "0.5", "1.0", "--seed", "3"]) == 0
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    refs = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    placed = refs["prompts"]
    assert sorted(p["utt"] for p in placed) == ["utt0", "utt1", "utt2"]
    audio, fs = sf.read(out)
    pitch = {"utt0": 300, "utt1": 500, "utt2": 700}
    previous_end = 0.0
    for p in placed:
        assert 0.5 <= p["start"] - previous_end <= 1.0 + 1e-3  # the pause before it
        inside = audio[int(p["start"] * fs) + 80 : int(p["end"] * fs) - 80]
        assert _dominant_hz(inside, fs) == pytest.approx(pitch[p["utt"]], abs=3)
        assert p["asr"] == f"prompt number {p['utt'][-1]}" and p["st_fra"] == f"invite numéro {p['utt'][-1]}"
        previous_end = p["end"]
    tail = len(audio) / fs - previous_end
    assert 0.5 <= tail <= 1.0 + 1e-3
    # the pauses are quiet noise, not digital silence
    gap = audio[int((placed[0]["end"] + 0.05) * fs) : int((placed[1]["start"] - 0.05) * fs)]
    assert 0 < np.abs(gap).max() < 0.01


def test_minutes_cycles_the_prompts_and_stereo_differs_by_channel(test_dir, tmp_path):
    out = tmp_path / "meeting.flac"
    assert main(["--data_dir", str(test_dir), "--out", str(out), "--minutes", "0.25", "--channels", "2"]) == 0
    audio, fs = sf.read(out)
    assert audio.shape[1] == 2 and fs == FS
    assert np.abs(audio[:, 1]).max() == pytest.approx(np.abs(audio[:, 0]).max() * 10 ** (-3 / 20), rel=0.01)
    placed = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["prompts"]
    assert placed[-1]["end"] >= 15.0 and len(audio) / fs < 15.0 + 2.0 + 1.5  # reached, by at most a prompt
    assert {p["utt"] for p in placed[:3]} == {"utt0", "utt1", "utt2"}  # each round holds every prompt


def test_same_seed_same_recording(test_dir):
    prompts = read_prompts(test_dir)
    a, placed_a = build_recording(prompts, FS, (0.2, 0.4), 0, seed=5)
    b, placed_b = build_recording(prompts, FS, (0.2, 0.4), 0, seed=5)
    assert np.array_equal(a, b) and placed_a == placed_b


def test_a_dir_without_references_is_an_error_naming_it(test_dir, tmp_path, capsys):
    (test_dir / "text.st_fra").unlink()
    assert main(["--data_dir", str(test_dir), "--out", str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err
    assert str(test_dir) in err and "text.st_fra" in err
    assert not (tmp_path / "x.wav").exists()
