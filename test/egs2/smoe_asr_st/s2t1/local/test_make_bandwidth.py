"""Tests for local/make_bandwidth.py (stage 2): NB/WB pairs at 16 kHz."""

import json

import numpy as np
import soundfile as sf

from local import asterisk_data as ad
from local import make_bandwidth
from local.file_io import read_tsv


def high_band_fraction(path, cutoff=4000.0):
    x, rate = sf.read(str(path), dtype="float64")
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    return float(spec[freqs > cutoff].sum() / spec.sum())


def table(path):
    return {r["name"]: r for r in read_tsv(path)}


def test_status_per_prompt(pipeline):
    rows = table(pipeline["bandwidth"])
    inv = {r["name"] for r in read_tsv(pipeline["inventory"])}
    assert set(rows) == inv  # one row per inventory prompt, nothing dropped
    assert rows["corrupt-wav"]["status"] == "corrupt_audio"
    assert rows["corrupt-g722"]["status"] == "corrupt_audio"
    assert rows["missing-audio"]["status"] == "no_audio"
    assert rows["fr-only"]["status"] == "no_audio"
    ok = {n for n, r in rows.items() if r["status"] == "ok"}
    assert "vm-tocallback" in ok and "orphan-audio" in ok and "silence/1" in ok
    assert len(ok) == len(inv) - 4


def test_nb_wb_pairs_same_set_same_length(pipeline, fake):
    rows = table(pipeline["bandwidth"])
    inv = {r["name"]: r for r in read_tsv(pipeline["inventory"])}
    nb_files = {p.stem for p in (pipeline["bandwidth_dir"] / "nb").glob("*.wav")}
    wb_files = {p.stem for p in (pipeline["bandwidth_dir"] / "wb").glob("*.wav")}
    ok = {ad.flat_name(n) for n, r in rows.items() if r["status"] == "ok"}
    assert nb_files == wb_files == ok
    for name, r in rows.items():
        if r["status"] != "ok":
            continue
        nb, wb = sf.info(r["nb_wav"]), sf.info(r["wb_wav"])
        assert (nb.samplerate, nb.channels, nb.subtype) == (16000, 1, "PCM_16")
        assert (wb.samplerate, wb.channels, wb.subtype) == (16000, 1, "PCM_16")
        assert nb.frames == wb.frames == int(r["samples"])
        assert nb.frames == 2 * sf.info(inv[name]["wav8k"]).frames
        assert float(r["duration"]) == float(inv[name]["dur8k"])


def test_real_nb_is_band_limited_and_wb_is_not(pipeline):
    r = table(pipeline["bandwidth"])["vm-tocallback"]
    assert high_band_fraction(r["wb_wav"]) > 0.2  # the fixture has 5 and 6.5 kHz tones
    assert high_band_fraction(r["nb_wav"]) < 1e-3


def test_simulated_nb_and_source_switch(pipeline, tmp_path):
    out = tmp_path / "bw"
    args = ["--inventory", str(pipeline["inventory"]), "--out_dir", str(out)]
    assert make_bandwidth.main(args + ["--nb_source", "simulated"]) == 0
    rows = table(out / "bandwidth.tsv")
    r = rows["vm-tocallback"]
    assert r["nb_source"] == "simulated"
    wb_in, _ = sf.read(r["wb_wav"])
    assert high_band_fraction(r["nb_wav"]) < 1e-3
    assert sf.info(r["nb_wav"]).frames == wb_in.size
    nb_sim, _ = sf.read(r["nb_wav"])
    assert 0.3 < np.std(nb_sim) / np.std(wb_in) < 1.0  # speech band kept, the >4 kHz part removed
    assert json.loads((out / ".done").read_text())["config"]["nb_source"] == "simulated"
    # same source again: skipped (file untouched); other source: redone
    before = (out / "bandwidth.tsv").stat().st_mtime_ns
    assert make_bandwidth.main(args + ["--nb_source", "simulated"]) == 0
    assert (out / "bandwidth.tsv").stat().st_mtime_ns == before
    assert make_bandwidth.main(args + ["--nb_source", "real"]) == 0
    assert table(out / "bandwidth.tsv")["vm-tocallback"]["nb_source"] == "real"
