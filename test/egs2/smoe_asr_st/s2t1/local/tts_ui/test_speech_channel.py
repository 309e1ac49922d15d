"""tts_ui plan, channel and data dirs; an end-to-end build with real flite/espeak-ng.

The TTS test uses flite/espeak-ng from the system or from Debian .debs unpacked into a cache
(``$TTS_UI_TEST_CACHE``, default ``~/.cache/espnet_smoe/tts_ui``); only that test is skipped,
with the reason, when neither is installed and apt cannot fetch them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from local import debian
from local.file_io import write_tsv
from local.tts_ui import degrade, plan, prepare

SR = 16000


def band_ratio(wave: np.ndarray, cut_hz: float = 4200.0) -> float:
    """Fraction of the energy above cut_hz."""
    spec = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1.0 / SR)
    return float(spec[freqs > cut_hz].sum() / spec.sum())


def write_text_split(path: Path, split: str, n: int) -> None:
    rows = [(f"{split}-{i:06d}", f"cat{i % 3}", f"Open the selected window number {chr(97 + i % 26)} now",
             f"Ouvrir la fenêtre sélectionnée {chr(97 + i % 26)} maintenant") for i in range(n)]
    write_tsv(path / f"{split}.tsv", ("text_id", "catalog", "en", "fr"), rows)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    text = tmp_path_factory.mktemp("plan_text")
    for split, n in (("train", 200), ("dev", 20), ("test", 40), ("ddtp_test", 30)):
        write_text_split(text, split, n)
    return text, {s: plan.make_plan(text / f"{s}.tsv", s, plan.PlanConfig(seed=3))
                  for s in ("train", "dev", "test", "ddtp_test")}


def test_held_out_voices_only_in_test(plans):
    _, p = plans
    held_out = {v.voice_id for v in plan.VOICES if v.test_only}
    assert any(v.engine == "flite" for v in plan.VOICES if v.test_only)
    assert any(v.engine == "espeak-ng" for v in plan.VOICES if v.test_only)
    for split in ("train", "dev"):
        assert not {i["voice"] for i in p[split]} & held_out
    for split in ("test", "ddtp_test"):
        used = {i["voice"] for i in p[split]}
        assert used <= held_out and len(used) >= 3
    assert {i["voice"] for i in p["train"]} >= {"flite-kal16", "flite-awb", "flite-slt"}
    # every utterance id starts with its voice (Kaldi speaker prefix)
    assert all(i["utt"].startswith(i["voice"] + "-") for s in p for i in p[s])


def test_bandwidth_and_channel_shares(plans):
    _, p = plans
    bw = Counter(i["bw"] for i in p["train"])
    assert bw == {"nb": 100, "wb": 100}
    assert Counter(i["bw"] for i in p["dev"]) == {"nb": 10, "wb": 10}
    assert {i["bw"] for i in p["test"]} == {"both"}
    rooms = sum(i["room"] is not None for i in p["train"])
    noisy = [i["noise"] for i in p["train"] if i["noise"]]
    assert 30 <= rooms <= 90 and 30 <= len(noisy) <= 90  # 0.3 of 200 each
    assert all(10.0 <= n["snr"] <= 30.0 for n in noisy)
    assert {n["type"] for n in noisy} == {"babble", "coloured"}
    flite = sum(i["engine"] == "flite" for i in p["train"]) / len(p["train"])
    assert 0.6 <= flite <= 0.8
    utts = {i["utt"] for i in p["train"]}
    assert all(set(n["others"]) <= utts for n in noisy if n["type"] == "babble")
    assert all(i["room"].startswith("test") for i in p["test"] if i["room"])
    assert all(i["room"].startswith("train") for i in p["train"] if i["room"])


def test_plan_is_deterministic(plans):
    text, p = plans
    again = plan.make_plan(text / "train.tsv", "train", plan.PlanConfig(seed=3))
    other = plan.make_plan(text / "train.tsv", "train", plan.PlanConfig(seed=4))
    assert again == p["train"]
    assert other != p["train"]
    assert sorted(i["utt"] for i in p["train"]) == [i["utt"] for i in p["train"]]


def _tone_mix(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    x = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (300, 900, 2000, 3000, 5000, 6500, 7500))
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_narrowband_has_no_energy_above_4k_wideband_has():
    x = _tone_mix()
    wb = degrade.to_bandwidth(x, "wb")
    nb = degrade.to_bandwidth(x, "nb")
    assert abs(len(nb) - len(x)) <= 2
    assert band_ratio(wb) > 0.3  # 3 of 7 tones above 4 kHz
    assert band_ratio(nb) < 1e-3
    # the telephone band itself survives
    assert band_ratio(nb, cut_hz=250.0) > 0.95


def test_noise_at_requested_snr_and_level():
    x = _tone_mix(2.0) * 0.5
    for kind in ("coloured", "babble"):
        item = {"utt": f"u-{kind}", "noise": {"type": kind, "snr": 15.0, "alpha": 1.0, "others": []},
                "level_db": -20.0}
        others = [np.roll(x, 3000) * 0.3, np.roll(x, 7000)] if kind == "babble" else None
        y = degrade.degrade(item, x, seed=1, others=others)
        assert y.shape == x.shape
        scale = np.sqrt(10 ** (-20.0 / 10) / degrade.active_power(x))
        noise = y - x * scale
        snr = 10 * np.log10(np.mean((x * scale) ** 2) / np.mean(noise ** 2))
        assert abs(snr - 15.0) < 0.5, (kind, snr)
        level = 10 * np.log10(degrade.active_power(y))
        assert abs(level - 10 * np.log10(10 ** (-2.0) * (1 + 10 ** -1.5))) < 0.5
    quiet = degrade.degrade({"utt": "q", "noise": None, "level_db": -25.0}, x, seed=1)
    assert abs(10 * np.log10(degrade.active_power(quiet)) + 25.0) < 0.01


def test_room_response_reverberates():
    rooms = plan.draw_rooms("train", plan.PlanConfig(seed=1, num_rooms=2))
    rir = degrade.compute_rir(rooms[0])
    # the direct path comes first: its peak within the first 60 samples (source-microphone distance)
    assert np.argmax(np.abs(rir)) < 60
    assert abs(np.sum(rir ** 2) - 1.0) < 1e-4
    # energy decays: the tail after RT60 holds far less than the first 50 ms
    early = np.sum(rir[: int(0.05 * SR)] ** 2)
    late = np.sum(rir[int(rooms[0]["rt60"] * SR):] ** 2)
    assert late < 0.01 * early


# ----------------------------------------------------------------------------- end to end, real TTS
def tts_cache() -> Path:
    return Path(os.environ.get("TTS_UI_TEST_CACHE", Path.home() / ".cache" / "espnet_smoe" / "tts_ui"))


@pytest.fixture(scope="module")
def runtime():
    try:
        return debian.resolve_tts(tts_cache())
    except debian.DebianError as exc:
        pytest.skip(f"flite/espeak-ng neither installed nor fetchable with apt-get download: {exc}")


def read_kaldi(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = [ln.split(" ", 1)[0] for ln in lines]
    assert keys == sorted(keys), f"{path} not sorted"
    return {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in lines}


def test_end_to_end_with_real_tts(runtime, tmp_path, monkeypatch):
    work, audio, data = tmp_path / "work", tmp_path / "audio", tmp_path / "data"
    text = work / "text"
    for split, n in (("train", 6), ("dev", 2), ("test", 3), ("ddtp_test", 2)):
        write_text_split(text, split, n)
    monkeypatch.setattr(debian, "resolve_tts", lambda *a, **k: runtime)
    args = ["--out_data", str(data), "--audio_dir", str(audio), "--work_dir", str(work), "--stage", "plan",
            "--nj", "1", "--seed", "5", "--room_prob", "0.5", "--noise_prob", "0.5", "--verbose", "0"]
    report = prepare.main(args)
    assert report["speech"]["failed"] == 0 and report["speech"]["synthesised_now"] == 13
    engines = {i["engine"] for s in ("train", "dev", "test", "ddtp_test") for i in plan.read_plan(work / "plan", s)}
    assert engines == {"flite", "espeak-ng"}

    # train/dev: every utterance twice, ASR and ST
    train = data / "tts_ui_train"
    names = ("wav.scp", "text", "text.ctc", "text.prev", "utt2spk", "spk2utt", "utt2bw")
    files = {n: read_kaldi(train / n) for n in names}
    assert len(files["wav.scp"]) == 12
    bases = {u[: -len("_asr")] for u in files["text"] if u.endswith("_asr")}
    assert len(bases) == 6 and set(files["text"]) == {b + s for b in bases for s in ("_asr", "_st_fra")}
    for utt, txt in files["text"].items():
        if utt.endswith("_asr"):
            assert txt.startswith("<eng><asr><notimestamps> Open the selected window")
        else:
            assert utt.endswith("_st_fra") and txt.startswith("<eng><st_fra><notimestamps> Ouvrir la fenêtre")
        assert files["text.ctc"][utt].startswith("Open the selected window")
        assert files["text.prev"][utt] == "<na>"
        assert utt.startswith(files["utt2spk"][utt])
        assert files["utt2bw"][utt] in ("<nb>", "<wb>")
    assert Counter(files["utt2bw"].values()) == {"<nb>": 6, "<wb>": 6}
    held_out = {v.voice_id for v in plan.VOICES if v.test_only}
    assert not set(files["utt2spk"].values()) & held_out

    # tests: the same ids and sentences in both bandwidths, held-out voices only
    for prefix, n in (("tts_ui_test", 3), ("ddtp_test", 2)):
        nb = {f: read_kaldi(data / f"{prefix}_nb" / f) for f in (*names, "text.asr", "text.st_fra")}
        wb = {f: read_kaldi(data / f"{prefix}_wb" / f) for f in (*names, "text.asr", "text.st_fra")}
        assert len(nb["wav.scp"]) == n and nb["text.asr"] == wb["text.asr"]
        assert nb["text.st_fra"] == wb["text.st_fra"] and set(nb["utt2spk"].values()) <= held_out
        assert set(nb["utt2bw"].values()) == {"<nb>"} and set(wb["utt2bw"].values()) == {"<wb>"}
        for utt in nb["wav.scp"]:
            x_nb, sr_nb = sf.read(nb["wav.scp"][utt])
            x_wb, sr_wb = sf.read(wb["wav.scp"][utt])
            assert sr_nb == sr_wb == SR
            assert sf.info(nb["wav.scp"][utt]).subtype == "PCM_16"
            assert band_ratio(x_nb) < 1e-3, utt
            assert band_ratio(x_wb) > 2e-3, utt
            assert abs(len(x_nb) - len(x_wb)) <= 2
    for utt, path in files["wav.scp"].items():
        x, _ = sf.read(path)
        assert (band_ratio(x) < 1e-3) == (files["utt2bw"][utt] == "<nb>"), utt

    # resumable: a second run makes nothing new and leaves the files alone
    mtimes = {p: p.stat().st_mtime_ns for p in audio.rglob("*.flac")}
    again = prepare.main(args)
    assert again["speech"]["synthesised_now"] == 0
    assert {p: p.stat().st_mtime_ns for p in audio.rglob("*.flac")} == mtimes
