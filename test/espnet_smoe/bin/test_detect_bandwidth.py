"""``python -m espnet_smoe.bin.detect_bandwidth``: utt2bw from the audio of a data dir."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import espnet2
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from espnet_smoe.bin.detect_bandwidth import main, read_utt2bw


@pytest.fixture
def data_dir(tmp_path):
    """Two real AN4 recordings, wideband and telephone, each with an ASR and an ST row,
    plus a silent and a clipped recording."""
    tarball = Path(espnet2.__file__).parents[1] / "egs3/mini_an4/esp2_asr/downloads.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, filter="data")
    sphs = sorted((tmp_path / "downloads/an4").glob("wav/*/*/*.sph"))[:2]
    wav_dir = tmp_path / "wav"
    wav_dir.mkdir()
    wav_scp = {}
    for i, sph in enumerate(sphs):
        wide, fs = sf.read(sph, dtype="float32")
        narrow = AF.resample(AF.resample(torch.from_numpy(wide), fs, 8000), 8000, fs).numpy()
        for bw, wave in (("wb", wide), ("nb", narrow)):
            path = wav_dir / f"{bw}{i}.wav"
            sf.write(path, wave, fs, subtype="PCM_16")
            for task in ("asr", "st_fra"):
                wav_scp[f"{bw}{i}_{task}"] = path
    sf.write(wav_dir / "silent.wav", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    wav_scp["silent_asr"] = wav_dir / "silent.wav"
    sf.write(wav_dir / "clipped.wav", np.clip(narrow * 30, -0.6, 0.6), 16000, subtype="PCM_16")
    wav_scp["clipped_asr"] = wav_dir / "clipped.wav"
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wav_scp.items())))
    return d


def test_writes_utt2bw_with_fallbacks_and_scores_a_reference(data_dir, tmp_path):
    reference = tmp_path / "ref_utt2bw"
    truth = {k: k[:2] for k in (line.split()[0] for line in (data_dir / "wav.scp").read_text().splitlines())}
    truth.update(silent_asr="wb", clipped_asr="nb")
    truth["wb1_st_fra"] = "nb"  # a wrong reference label must count as an error
    reference.write_text("".join(f"{k} <{v}>\n" for k, v in sorted(truth.items())))

    report = main(["--data_dir", str(data_dir), "--fallback", "wb", "--reference", str(reference),
                   "--report", str(tmp_path / "report.json")])

    written = read_utt2bw(data_dir / "utt2bw")
    assert list(written) == sorted(written)  # Kaldi order
    expected = {k: k[:2] for k in truth if k[:2] in ("nb", "wb")}
    expected.update(silent_asr="wb", clipped_asr="wb")  # both fall back
    assert written == expected
    assert [(f["utt"], f["reason"]) for f in report["fallbacks"]] == [("clipped_asr", "clipped"),
                                                                      ("silent_asr", "silence")]
    assert report["utterances"] == 10
    # errors: the wrong reference label and the clipped nb that fell back to wb
    assert report["accuracy"] == pytest.approx(8 / 10)
    assert report["confusion"] == {"nb->nb": 4, "nb->wb": 2, "wb->wb": 4}
    assert sorted(e["utt"] for e in report["errors"]) == ["clipped_asr", "wb1_st_fra"]
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_refuses_to_overwrite_and_names_bad_reference_lines(data_dir, tmp_path):
    (data_dir / "utt2bw").write_text("x <nb>\n")
    with pytest.raises(FileExistsError, match="utt2bw exists; pass --overwrite"):
        main(["--data_dir", str(data_dir)])
    bad = tmp_path / "bad_utt2bw"
    bad.write_text("nb0_asr <nb>\nnb0_st_fra <narrow>\n")
    with pytest.raises(ValueError, match=r"bad_utt2bw:2: expected '<utt-id> <nb>' or '<utt-id> <wb>', got "
                                         r"'nb0_st_fra <narrow>'"):
        main(["--data_dir", str(data_dir), "--overwrite", "--reference", str(bad)])
    with pytest.raises(FileNotFoundError, match="nowhere/wav.scp: no such file"):
        main(["--data_dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])


def test_unreadable_audio_names_the_utterance(data_dir):
    with open(data_dir / "wav.scp", "a") as f:
        f.write("zz_missing_asr /no/such/file.wav\n")
    with pytest.raises(RuntimeError, match=r"wav.scp: utterance zz_missing_asr: cannot read '/no/such/file.wav'"):
        main(["--data_dir", str(data_dir), "--overwrite"])


def test_command_line(data_dir):
    proc = subprocess.run([sys.executable, "-m", "espnet_smoe.bin.detect_bandwidth", "--data_dir", str(data_dir),
                           "--fallback", "nb"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_utt2bw(data_dir / "utt2bw")["silent_asr"] == "nb"
    assert "silent_asr: silence audio, bandwidth unknown: wrote the fallback <nb>" in proc.stderr
