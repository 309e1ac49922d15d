"""Tests for local/speed_perturb.py: copies at each speed factor, with their texts and ids."""

import numpy as np
import pytest
import soundfile as sf

from local import speed_perturb
from local.data_dir import write_data_dir
from local.file_io import read_kaldi

RATE = 16000


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum)) * RATE / len(wave)


@pytest.fixture
def train_dir(tmp_path):
    """Two recordings (1 s and 7.5 s tones), each as an asr and an st_fra utterance."""
    files = {name: {} for name in speed_perturb.FILES}
    for rec, seconds, bw in (("a", 1.0, "<nb>"), ("b", 7.5, "<wb>")):
        wav = tmp_path / f"{rec}.wav"
        sf.write(wav, tone(seconds, 440.0), RATE)
        for task, target in (("asr", f"words of {rec}"), ("st_fra", f"mots de {rec}")):
            utt = f"{rec}_{task}"
            files["wav.scp"][utt] = str(wav)
            files["text"][utt] = f"<eng><{task}><notimestamps> {target}"
            files["text.ctc"][utt] = f"words of {rec}"
            files["text.prev"][utt] = "<na>"
            files["utt2bw"][utt] = bw
    write_data_dir(tmp_path / "train", files)
    return tmp_path / "train"


def test_perturb_changes_length_and_pitch_by_the_factor():
    wave = tone(2.0, 500.0)
    for factor in (0.9, 1.1):
        out = speed_perturb.perturb(speed_perturb.torch.from_numpy(wave)[None], RATE, factor)[0].numpy()
        assert abs(len(out) - len(wave) / factor) <= 1, (factor, len(out))
        assert abs(peak_hz(out) - 500.0 * factor) < 2.0, (factor, peak_hz(out))
    with pytest.raises(ValueError, match="positive"):
        speed_perturb.perturb(speed_perturb.torch.zeros(1, 10), RATE, 0.0)


def test_copies_every_utterance_at_every_factor_and_drops_long_copies(train_dir, tmp_path):
    out = tmp_path / "train_sp"
    counts = speed_perturb.speed_perturb(train_dir, out, [0.9, 1.0, 1.1], tmp_path / "audio", max_duration=8.0)
    wav = read_kaldi(out / "wav.scp")
    # b (7.5 s) at 0.9 is 8.33 s: left out, with both its utterances listed
    assert sorted(wav) == ["a_asr", "a_st_fra", "b_asr", "b_st_fra", "sp0.9-a_asr", "sp0.9-a_st_fra",
                           "sp1.1-a_asr", "sp1.1-a_st_fra", "sp1.1-b_asr", "sp1.1-b_st_fra"]
    assert counts["sp0.9: longer than 8 s"] == 1 and counts["sp0.9: recordings"] == 1
    skipped = (out / "skipped.tsv").read_text().splitlines()
    reason = "longer than 8 s after speed 0.9"
    assert skipped[1:] == [f"sp0.9\tb_asr\t{reason}", f"sp0.9\tb_st_fra\t{reason}"]
    # texts, bandwidth and CTC targets follow the recording; the speaker carries the factor
    src = {name: read_kaldi(train_dir / name) for name in speed_perturb.FILES[1:]}
    for utt in wav:
        orig = utt.split("-", 1)[1] if utt.startswith("sp") else utt
        for name, rows in src.items():
            assert read_kaldi(out / name)[utt] == rows[orig], (name, utt)
    assert read_kaldi(out / "utt2spk")["sp1.1-a_asr"] == "sp1.1-a_asr"
    # the copies share one audio file per recording and factor, 1/factor as long
    name = speed_perturb.copy_name("a_asr", str(tmp_path / "a.wav"))
    assert wav["sp1.1-a_asr"] == wav["sp1.1-a_st_fra"] == str(tmp_path / "audio" / "sp1.1" / name)
    assert wav["a_asr"] == str(tmp_path / "a.wav")
    assert abs(sf.info(wav["sp0.9-a_asr"]).frames - RATE / 0.9) <= 1
    assert abs(sf.info(wav["sp1.1-b_asr"]).frames - 7.5 * RATE / 1.1) <= 1


def test_rerun_reuses_the_written_audio(train_dir, tmp_path):
    audio = tmp_path / "audio"
    speed_perturb.speed_perturb(train_dir, tmp_path / "sp1", [1.1], audio)
    made = audio / "sp1.1" / speed_perturb.copy_name("a_asr", str(tmp_path / "a.wav"))
    sf.write(made, np.zeros(100, dtype=np.float32), RATE)  # marker: a rerun must not rewrite it
    speed_perturb.speed_perturb(train_dir, tmp_path / "sp2", [1.1], audio)
    assert sf.info(made).frames == 100
    assert not list(audio.rglob("*.tmp*"))
    # a source rewritten (a rebuilt corpus) gets a new copy
    sf.write(tmp_path / "a.wav", tone(1.0, 300.0), RATE)
    speed_perturb.speed_perturb(train_dir, tmp_path / "sp3", [1.1], audio)
    fresh = read_kaldi(tmp_path / "sp3" / "wav.scp")["sp1.1-a_asr"]
    assert fresh != str(made) and abs(peak_hz(sf.read(fresh)[0]) - 330.0) < 2.0


def test_bad_input_names_the_utterance_or_the_factors(train_dir, tmp_path):
    with pytest.raises(ValueError, match="distinct positive"):
        speed_perturb.speed_perturb(train_dir, tmp_path / "o", [0.9, 0.9], tmp_path / "audio")
    (tmp_path / "a.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"utterance a_asr: audio file .*a.wav not found"):
        speed_perturb.speed_perturb(train_dir, tmp_path / "o", [0.9], tmp_path / "audio")
