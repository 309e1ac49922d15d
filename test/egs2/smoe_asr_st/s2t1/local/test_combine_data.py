"""Tests for local/combine_data.py: merged training dirs keep evaluation sentences out."""

import numpy as np
import pytest
import soundfile as sf

from local import combine_data


def make_set(root, name, rows):
    """rows: {recording: (seconds, English, French)} -> S2T dir with _asr and _st_fra utterances."""
    d = root / name
    d.mkdir()
    files = {f: {} for f in combine_data.FILES}
    for rec, (seconds, en, fr) in rows.items():
        wav = root / f"{name}_{rec}.wav"
        sf.write(wav, np.zeros(int(16000 * seconds), dtype=np.float32), 16000)
        for task, target in (("asr", en), ("st_fra", fr)):
            utt = f"{rec}_{task}"
            files["wav.scp"][utt] = str(wav)
            files["text"][utt] = f"<eng><{task}><notimestamps> {target}"
            files["text.ctc"][utt] = en
            files["text.prev"][utt] = "<na>"
            files["utt2bw"][utt] = "<wb>"
    for f, content in files.items():
        (d / f).write_text("".join(f"{k} {v}\n" for k, v in sorted(content.items())), encoding="utf-8")
    return d


def make_test(root, name, en, fr):
    d = root / name
    d.mkdir()
    (d / "text.asr").write_text(f"t1 {en}\n", encoding="utf-8")
    (d / "text.st_fra").write_text(f"t1 {fr}\n", encoding="utf-8")
    return d


def read(path):
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_combines_drops_evaluation_sentences_and_long_audio_and_logs_why(tmp_path):
    a = make_set(tmp_path, "a", {"r1": (1.0, "Press one.", "Appuyez sur un."), "r2": (1.0, "Goodbye!", "Au revoir !")})
    b = make_set(tmp_path, "b", {"s1": (2.0, "Open the file", "Ouvrir le fichier"),
                                 "s2": (9.0, "A long sentence", "Une longue phrase"),
                                 "s3": (1.0, "Save it", "Enregistrer"), "s4": (1.0, "Close it", "Fermer")})
    test = make_test(tmp_path, "test", "goodbye", "Ouvrir le fichier.")  # matches r2 (en) and s1 (fr)
    out = tmp_path / "mix"
    counts = combine_data.combine([a, b], [0, 2], [test], 8.0, out)
    assert counts[str(a)] == {"kept": 1, "sentence in an evaluation set": 1}
    # s1 banned, s2 too long: the limit of 2 recordings is met by s3 and s4
    assert counts[str(b)] == {"kept": 2, "sentence in an evaluation set": 1, "longer than 8 s": 1}
    wav = read(out / "wav.scp")
    assert sorted(wav) == ["r1_asr", "r1_st_fra", "s3_asr", "s3_st_fra", "s4_asr", "s4_st_fra"]
    for f in ("text", "text.ctc", "text.prev", "utt2bw", "utt2spk", "spk2utt"):
        assert sorted(read(out / f)) == sorted(wav), f
    skipped = (out / "skipped.tsv").read_text().splitlines()
    assert skipped[0] == "set\tutt\treason"
    assert {tuple(line.split("\t")[1:]) for line in skipped[1:]} == {
        ("r2_asr", "sentence in an evaluation set"), ("r2_st_fra", "sentence in an evaluation set"),
        ("s1_asr", "sentence in an evaluation set"), ("s1_st_fra", "sentence in an evaluation set"),
        ("s2_asr", "longer than 8 s"), ("s2_st_fra", "longer than 8 s")}
    # transcripts in the scored form; translations as written
    text = read(out / "text")
    assert text["r1_asr"] == "<eng><asr><notimestamps> press one"
    assert text["r1_st_fra"] == "<eng><st_fra><notimestamps> Appuyez sur un."
    assert read(out / "text.ctc")["r1_st_fra"] == "press one"


def test_max_recordings_and_raw_transcripts(tmp_path):
    b = make_set(tmp_path, "b", {f"s{i}": (1.0, f"Sentence {i}.", f"Phrase {i}.") for i in range(5)})
    out = tmp_path / "mix"
    counts = combine_data.combine([b], [3], [], 8.0, out, normalize=False)
    assert counts[str(b)] == {"kept": 3, "over --max_recordings": 2}
    assert read(out / "text")["s0_asr"] == "<eng><asr><notimestamps> Sentence 0."


def test_inconsistent_data_dir_is_named(tmp_path):
    b = make_set(tmp_path, "b", {"s1": (1.0, "One", "Un")})
    (b / "utt2bw").write_text("s1_asr <wb>\n")
    missing = r"b/utt2bw: 1 lines; expected the 2 utterances of wav.scp \(first missing: s1_st_fra\)"
    with pytest.raises(ValueError, match=missing):
        combine_data.combine([b], [0], [], 8.0, tmp_path / "mix")
    (b / "utt2bw").write_text("s1_asr <wb>\ns1_asr <nb>\n")
    unsorted = r"b/utt2bw:2: id s1_asr after s1_asr; expected sorted \(LC_ALL=C\), unique ids"
    with pytest.raises(ValueError, match=unsorted):
        combine_data.combine([b], [0], [], 8.0, tmp_path / "mix")
