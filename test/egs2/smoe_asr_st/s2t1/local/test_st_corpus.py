"""MuST-C and Europarl-ST data prep (local/st_corpus.py, local/mustc.py, local/europarl_st.py).

Fixtures in the real layouts (st_corpus_fake.py): generated noise recordings, unicode texts,
and one of each skip reason. Checked: ids, every text file, segment boundaries to the sample,
bandwidths (which utterances, and that the narrowband copies are band-limited), the skip counts
and lists, the stage marker, and the errors that name a file and line.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from local import st_corpus
from local.file_io import read_kaldi, read_tsv
from local.mustc import parse_yaml_line, talk_speaker
from local.st_corpus import CorpusError, choose_nb

_spec = importlib.util.spec_from_file_location("st_corpus_fake", Path(__file__).with_name("st_corpus_fake.py"))
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)

RATE = 16000


def run_prep(tmp: Path, corpus: str, db: Path, *extra: str) -> int:
    return st_corpus.main(["--corpus", corpus, "--db", str(db), "--data_dir", str(tmp / "data"),
                           "--audio_dir", str(tmp / "dump"), "--min_dur", str(fake.MIN_DUR),
                           "--max_dur", str(fake.MAX_DUR), "--nj", "1", *extra])


@pytest.fixture(scope="module")
def mustc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mustc")
    db = fake.build_mustc(tmp / "MUSTC_v1.0")
    assert run_prep(tmp, "mustc", db) == 0
    return tmp, db


@pytest.fixture(scope="module")
def europarl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("europarl")
    db = fake.build_europarl_st(tmp / "europarl_st")
    assert run_prep(tmp, "europarl_st", db) == 0
    return tmp, db


def sample_count(start: float, end: float) -> int:
    return round(end * RATE) - round(start * RATE)


def base_of(utt: str) -> str:
    """Training id -> recording id (the task suffix removed)."""
    for suffix in ("_asr", "_st_fra"):
        if utt.endswith(suffix):
            return utt[: -len(suffix)]
    raise AssertionError(f"{utt}: no task suffix")


def high_band_share(wave: np.ndarray) -> float:
    """Share of the energy above 4 kHz."""
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / RATE)
    return float(spec[freqs > 4000].sum() / spec.sum())


# ----------------------------------------------------------------------------- MuST-C
def test_mustc_yaml_lines_parse_by_key():
    plain = parse_yaml_line("- {duration: 3.500000, offset: 16.210000, rel_id: 0, speaker_id: spk.1, wav: ted_1.wav}",
                            "x.yaml:1")
    assert plain == {"duration": "3.500000", "offset": "16.210000", "rel_id": "0", "speaker_id": "spk.1",
                     "wav": "ted_1.wav"}
    # another key order, quotes, no rel_id: PyYAML
    quoted = parse_yaml_line("- {wav: 'ted_2.wav', offset: 1.5, duration: 2}", "x.yaml:2")
    assert quoted == {"wav": "ted_2.wav", "offset": 1.5, "duration": 2}
    with pytest.raises(CorpusError, match=r"x\.yaml:3: .*one-entry list"):
        parse_yaml_line("duration: 3.5", "x.yaml:3")
    assert talk_speaker("ted_7.wav") == "ted_00007" and talk_speaker("other talk.wav") == "other_talk"


def test_mustc_ids_and_texts(mustc):
    tmp, _ = mustc
    data = tmp / "data"
    by_id = {}
    for name, lines in fake.MUSTC_LINES.items():
        for y, en, fr in lines:
            entry = parse_yaml_line(y, "")
            offset, duration = float(entry["offset"]), float(entry["duration"])
            by_id.setdefault(f"{talk_speaker(entry['wav'])}_{round(offset * 1000):07d}_"
                             f"{round((offset + duration) * 1000):07d}", (en, fr))
    for name in ("mustc_train", "mustc_dev"):
        text = read_kaldi(data / name / "text")
        expected = {}
        for utt in fake.MUSTC_KEPT[name]:
            en, fr = by_id[utt]
            expected[f"{utt}_asr"] = f"<eng><asr><notimestamps> {en}"
            if utt not in fake.MUSTC_ASR_ONLY:
                expected[f"{utt}_st_fra"] = f"<eng><st_fra><notimestamps> {fr}"
        assert text == expected
        ctc = read_kaldi(data / name / "text.ctc")
        assert ctc == {u: by_id[base_of(u)][0] for u in expected}
        spk = read_kaldi(data / name / "utt2spk")
        assert spk == {u: u[:9] for u in expected}  # ted_NNNNN
    for name in ("mustc_tst_common", "mustc_tst_he"):
        for bw in ("nb", "wb"):
            d = data / f"{name}_{bw}"
            assert read_kaldi(d / "text.asr") == {u: by_id[u][0] for u in fake.MUSTC_KEPT[name]}
            assert read_kaldi(d / "text.st_fra") == {u: by_id[u][1] for u in fake.MUSTC_KEPT[name]}
            assert set(read_kaldi(d / "utt2bw").values()) == {f"<{bw}>"}
    # unicode survives as written (NFC)
    assert "東京" in read_kaldi(data / "mustc_train" / "text.ctc")["ted_00007_0000250_0001750_asr"]
    assert "« guillemets »" in (data / "mustc_dev" / "text").read_text(encoding="utf-8")


def test_mustc_segments_are_cut_to_the_sample(mustc):
    tmp, db = mustc
    wav = read_kaldi(tmp / "data" / "mustc_train" / "wav.scp")
    # a 16 kHz talk: the cut is the source's samples exactly (PCM16 in, PCM16 out)
    source, rate = fake.mustc_source(db, "train", "ted_1")
    assert rate == RATE
    for utt, (start, end) in {"ted_00001_0000500_0001750": (0.5, 1.75),
                              "ted_00001_0002000_0002800": (2.0, 2.8)}.items():
        got, got_rate = sf.read(wav[f"{utt}_asr"], dtype="float32")
        assert got_rate == RATE and got.size == sample_count(start, end)
        if read_kaldi(tmp / "data" / "mustc_train" / "utt2bw")[f"{utt}_asr"] == "<wb>":
            np.testing.assert_array_equal(got, source[round(start * RATE):round(end * RATE)])
    # the 24 kHz talk: resampled to 16 kHz first, then cut
    source, rate = fake.mustc_source(db, "train", "ted_7")
    assert rate == 24000
    reference = taf.resample(torch.from_numpy(source), rate, RATE).numpy()
    got, _ = sf.read(wav["ted_00007_0000250_0001750_asr"], dtype="float32")
    assert got.size == sample_count(0.25, 1.75)
    if read_kaldi(tmp / "data" / "mustc_train" / "utt2bw")["ted_00007_0000250_0001750_asr"] == "<wb>":
        np.testing.assert_allclose(got, reference[4000:28000], atol=1.5 / 32768)
    # the end 0.05 s past the 4.0 s recording: cut at its end
    got, _ = sf.read(wav["ted_00007_0003000_0004050_asr"], dtype="float32")
    assert got.size == 4 * RATE - 3 * RATE


def test_mustc_test_sets_exist_in_both_bandwidths(mustc):
    tmp, db = mustc
    data = tmp / "data"
    source, _ = fake.mustc_source(db, "tst-COMMON", "ted_31")
    nb_wav = read_kaldi(data / "mustc_tst_common_nb" / "wav.scp")
    wb_wav = read_kaldi(data / "mustc_tst_common_wb" / "wav.scp")
    assert list(nb_wav) == list(wb_wav) == fake.MUSTC_KEPT["mustc_tst_common"]
    for utt, (start, end) in zip(nb_wav, [(0.3, 1.3), (1.5, 2.9)]):
        assert nb_wav[utt] != wb_wav[utt]
        nb, _ = sf.read(nb_wav[utt], dtype="float32")
        wb, _ = sf.read(wb_wav[utt], dtype="float32")
        assert nb.size == wb.size == sample_count(start, end)
        np.testing.assert_array_equal(wb, source[round(start * RATE):round(end * RATE)])
        # white noise: ~half its energy above 4 kHz; the telephone copy has next to none
        assert high_band_share(wb) > 0.4 and high_band_share(nb) < 0.01
        assert np.sqrt(np.mean(nb ** 2)) > 0.05  # and it is not silence


def test_mustc_train_bandwidth_follows_the_seeded_fraction(mustc):
    tmp, _ = mustc
    utt2bw = read_kaldi(tmp / "data" / "mustc_train" / "utt2bw")
    wav = read_kaldi(tmp / "data" / "mustc_train" / "wav.scp")
    for utt, bw in utt2bw.items():
        assert bw == ("<nb>" if choose_nb(base_of(utt), 0.5, 1) else "<wb>"), utt
        assert f"/{bw[1:3]}/" in wav[utt]
    # both tasks of an utterance share one audio file
    assert wav["ted_00001_0000500_0001750_asr"] == wav["ted_00001_0000500_0001750_st_fra"]
    # the draw depends on the seed and the id only; the fraction is honoured at scale
    ids = [f"spk_{i:07d}" for i in range(4000)]
    share = np.mean([choose_nb(u, 0.3, 7) for u in ids])
    assert 0.27 < share < 0.33
    assert [choose_nb(u, 0.3, 7) for u in ids[:50]] == [choose_nb(u, 0.3, 7) for u in ids[:50]]
    assert [choose_nb(u, 0.3, 7) for u in ids[:50]] != [choose_nb(u, 0.3, 8) for u in ids[:50]]
    assert not any(choose_nb(u, 0.0, 7) for u in ids[:50]) and all(choose_nb(u, 1.0, 7) for u in ids[:50])


def test_mustc_skips_are_counted_and_listed(mustc):
    tmp, _ = mustc
    summary = json.loads((tmp / "data" / "local" / "mustc" / "summary.json").read_text())
    for name, skips in fake.MUSTC_SKIPS.items():
        s = summary["sets"][name]
        assert s["skipped"] == skips, name
        assert s["kept"] == len(fake.MUSTC_KEPT[name])
        assert s["segments"] == s["kept"] + sum(skips.values())
    assert summary["sets"]["mustc_train"]["st_fra_skipped"] == 1
    assert summary["sets"]["mustc_tst_common"]["nb"] == summary["sets"]["mustc_tst_common"]["wb"] == 2
    assert summary["end_clipped"] == 1
    rows = read_tsv(tmp / "data" / "mustc_train" / "skipped.tsv")
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["missing_audio"]["utt"] == "ted_00099_0001000_0002000"
    assert by_reason["missing_audio"]["source"].endswith("train/txt/train.yaml:10")
    assert by_reason["duplicate_segment"]["source"].endswith("train.yaml:8")
    assert by_reason["no_translation"]["scope"] == "st_fra"
    assert by_reason["too_long"]["detail"] == "2.500 s > 2 s"
    # the test set's skip list is in both of its data dirs and in the corpus-wide list
    for bw in ("nb", "wb"):
        assert [r["reason"] for r in read_tsv(tmp / "data" / f"mustc_tst_common_{bw}" / "skipped.tsv")] == [
            "no_translation_test"]
    assert len(read_tsv(tmp / "data" / "local" / "mustc" / "skipped.tsv")) == 8


def test_mustc_rerun_is_a_noop_and_options_redo_it(mustc, tmp_path, monkeypatch):
    tmp, db = mustc
    text = tmp / "data" / "mustc_train" / "text"
    before = text.stat().st_mtime_ns
    assert run_prep(tmp, "mustc", db) == 0
    assert text.stat().st_mtime_ns == before
    # a redo (as after a kill) cuts again only the recordings whose files are not all there
    wav = read_kaldi(tmp / "data" / "mustc_dev" / "wav.scp")
    lost = Path(wav["ted_00021_0000500_0001500_asr"])
    reference = sf.read(lost, dtype="float32")[0]
    lost.unlink()
    decoded = []
    real_load = st_corpus.load_audio
    monkeypatch.setattr(st_corpus, "load_audio", lambda path: decoded.append(Path(path).name) or real_load(path))
    assert run_prep(tmp, "mustc", db, "--force") == 0
    assert decoded == ["ted_21.wav"]
    np.testing.assert_array_equal(sf.read(lost, dtype="float32")[0], reference)
    summary = json.loads((tmp / "data" / "local" / "mustc" / "summary.json").read_text())
    assert summary["sets"]["mustc_train"]["skipped"] == fake.MUSTC_SKIPS["mustc_train"]
    assert summary["end_clipped"] == 1  # counted from the record of the recording not cut again
    monkeypatch.undo()
    # another fraction: the train/dev bandwidths change, the ids do not
    other = tmp_path / "other"
    assert st_corpus.main(["--corpus", "mustc", "--db", str(db), "--data_dir", str(other / "data"),
                           "--audio_dir", str(other / "dump"), "--max_dur", "2", "--nb_fraction", "1"]) == 0
    assert set(read_kaldi(other / "data" / "mustc_train" / "utt2bw").values()) == {"<nb>"}
    assert set(read_kaldi(other / "data" / "mustc_train" / "text")) == set(read_kaldi(text))


def test_mustc_layout_errors_name_the_file(tmp_path):
    db = fake.build_mustc(tmp_path / "MUSTC")
    # the pair folder itself is accepted as --db
    assert st_corpus.main(["--corpus", "mustc", "--db", str(db / "en-fr"), "--data_dir", str(tmp_path / "d"),
                           "--audio_dir", str(tmp_path / "a"), "--max_dur", "2"]) == 0
    fr = db / "en-fr" / "data" / "dev" / "txt" / "dev.fr"
    fr.write_text("Une seule ligne.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"dev\.yaml: 2 entries, but dev\.en has 2 lines and dev\.fr 1"):
        st_corpus.prepare("mustc", db, tmp_path / "d2", tmp_path / "a2", tmp_path / "l2")
    yml = db / "en-fr" / "data" / "tst-HE" / "txt" / "tst-HE.yaml"
    yml.write_text("- {duration: 1.1, offset: 0.4, speaker_id: spk.41}\n")
    fr.write_text("Une phrase de développement.\nUne autre.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"tst-HE\.yaml:1: no wav"):
        st_corpus.prepare("mustc", db, tmp_path / "d2", tmp_path / "a2", tmp_path / "l2")
    with pytest.raises(CorpusError, match=r"MuST-C en-fr not found under .*nowhere"):
        st_corpus.prepare("mustc", tmp_path / "nowhere", tmp_path / "d2", tmp_path / "a2", tmp_path / "l2")
    assert st_corpus.main(["--corpus", "mustc", "--db", ""]) == 1


# ----------------------------------------------------------------------------- Europarl-ST
def test_europarl_ids_texts_and_speakers(europarl):
    tmp, _ = europarl
    data = tmp / "data"
    rows = {f"{fake.EP_SPEAKERS[s].split('_')[-1]}_{s}_{round(a * 1000):07d}_{round(b * 1000):07d}": (en, fr)
            for split in ("train", "dev", "test") for s, a, b, en, fr in fake.EP_SPLITS[split]}
    for name in ("europarl_st_train", "europarl_st_dev"):
        text = read_kaldi(data / name / "text")
        assert set(text) == {f"{u}_{t}" for u in fake.EUROPARL_KEPT[name] for t in ("asr", "st_fra")}
        for utt in fake.EUROPARL_KEPT[name]:
            assert text[f"{utt}_asr"] == f"<eng><asr><notimestamps> {rows[utt][0]}"
            assert text[f"{utt}_st_fra"] == f"<eng><st_fra><notimestamps> {rows[utt][1]}"
        spk = read_kaldi(data / name / "utt2spk")
        assert all(spk[u] == u.split("_")[0] for u in spk)
    for bw in ("nb", "wb"):
        d = data / f"europarl_st_test_{bw}"
        assert read_kaldi(d / "text.st_fra") == {u: rows[u][1] for u in fake.EUROPARL_KEPT["europarl_st_test"]}
        assert set(read_kaldi(d / "utt2bw").values()) == {f"<{bw}>"}
    # train-noisy is not read by default
    assert not (data / "europarl_st_train-noisy").exists()
    assert "Présidente" in read_kaldi(data / "europarl_st_train" / "text")[
        "96766_en.20081117.22.1-063_0000500_0001700_st_fra"]


def test_europarl_segments_from_m4a_and_wav(europarl):
    tmp, db = europarl
    data = tmp / "data"
    wav = read_kaldi(data / "europarl_st_train" / "wav.scp")
    bws = read_kaldi(data / "europarl_st_train" / "utt2bw")
    for utt in fake.EUROPARL_KEPT["europarl_st_train"]:
        start, end = (int(x) / 1000 for x in utt.rsplit("_", 2)[1:])
        got, rate = sf.read(wav[f"{utt}_asr"], dtype="float32")
        assert rate == RATE and got.size == sample_count(start, end), utt
        if fake.EP_WAV in utt and bws[f"{utt}_asr"] == "<wb>":  # the .wav speech: exact samples
            source, _ = sf.read(db / "en" / "audios" / f"{fake.EP_WAV}.wav", dtype="float32")
            np.testing.assert_array_equal(got, source[round(start * RATE):round(end * RATE)])
    # the m4a test speech (44.1 kHz stereo AAC): cut at 16 kHz to the sample, both bandwidths
    for utt, (start, end) in zip(fake.EUROPARL_KEPT["europarl_st_test"], [(0.2, 1.2), (1.3, 2.8)]):
        nb, _ = sf.read(read_kaldi(data / "europarl_st_test_nb" / "wav.scp")[utt], dtype="float32")
        wb, _ = sf.read(read_kaldi(data / "europarl_st_test_wb" / "wav.scp")[utt], dtype="float32")
        assert nb.size == wb.size == sample_count(start, end)
        assert high_band_share(wb) > 0.3 and high_band_share(nb) < 0.01


def test_europarl_skips(europarl):
    tmp, _ = europarl
    summary = json.loads((tmp / "data" / "local" / "europarl_st" / "summary.json").read_text())
    for name, skips in fake.EUROPARL_SKIPS.items():
        assert summary["sets"][name]["skipped"] == skips, name
        assert summary["sets"][name]["kept"] == len(fake.EUROPARL_KEPT[name])
    rows = {r["reason"]: r for r in read_tsv(tmp / "data" / "europarl_st_train" / "skipped.tsv")}
    assert rows["missing_audio"]["utt"] == f"97030_{fake.EP_MISSING}_0000500_0001500"
    assert rows["missing_audio"]["source"].endswith("en/fr/train/segments.lst:7")
    assert rows["unreadable_audio"]["detail"].startswith(str(db_audio(tmp, fake.EP_BROKEN)))
    assert rows["empty_text"]["source"].endswith("segments.lst:3")


def db_audio(tmp: Path, speech: str) -> Path:
    return tmp / "europarl_st" / "en" / "audios" / f"{speech}.m4a"


def test_europarl_train_noisy_on_request_and_errors(europarl, tmp_path):
    _, db = europarl
    assert st_corpus.main(["--corpus", "europarl_st", "--db", str(db), "--data_dir", str(tmp_path / "data"),
                           "--audio_dir", str(tmp_path / "dump"), "--max_dur", "2",
                           "--europarl_splits", "train-noisy", "test"]) == 0
    assert read_kaldi(tmp_path / "data" / "europarl_st_train-noisy" / "text.ctc") == {
        f"96766_en.20081117.22.1-063_0000500_0001700_{t}": "Noisy alignment." for t in ("asr", "st_fra")}
    bad = tmp_path / "bad"
    fake.build_europarl_st(bad)
    lst = bad / "en" / "fr" / "dev" / "segments.lst"
    lst.write_text("en.20110118.18.3-331 0.30\n")
    with pytest.raises(CorpusError, match=r"dev/segments\.lst:1: .*expected '<speech id> <start seconds>"):
        st_corpus.prepare("europarl_st", bad, tmp_path / "d", tmp_path / "a", tmp_path / "l")
    (bad / "en" / "fr" / "dev" / "segments.en").write_text("one\ntwo\n")
    with pytest.raises(CorpusError, match=r"segments\.lst: 1 segments, but segments\.en has 2 lines"):
        st_corpus.prepare("europarl_st", bad, tmp_path / "d", tmp_path / "a", tmp_path / "l")


def test_missing_ffmpeg_is_an_error_not_a_skip(europarl, monkeypatch, tmp_path):
    _, db = europarl
    monkeypatch.setattr(st_corpus.shutil, "which", lambda name: None)
    with pytest.raises(st_corpus.DecoderMissing, match=r"need ffmpeg and ffprobe.*apt-get install ffmpeg"):
        st_corpus.prepare("europarl_st", db, tmp_path / "d", tmp_path / "a", tmp_path / "l")
    assert not (tmp_path / "d").exists()
