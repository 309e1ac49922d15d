"""Tests for local/data_dir.py: the S2T data dir writer and validate_data_dir."""

import pytest

from local.data_dir import DataDirError, add_utterance, new_files, prompt_text, validate_data_dir, write_data_dir


def _train_files():
    files = new_files()
    for base, bw in (("en_nb_a", "nb"), ("en_wb_a", "wb")):
        add_utterance(files, f"{base}_asr", f"/w/{base}.wav", bw, "asr", "Hello.", "hello")
        add_utterance(files, f"{base}_st_fra", f"/w/{base}.wav", bw, "st_fra", "Bonjour.", "hello")
    return files


def test_writer_files_and_contents(tmp_path):
    assert prompt_text("st_fra", "Bonjour.") == "<eng><st_fra><notimestamps> Bonjour."
    assert write_data_dir(tmp_path, _train_files()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "spk2utt", "text", "text.ctc", "text.prev", "utt2bw", "utt2spk", "wav.scp"]
    assert (tmp_path / "text").read_text().splitlines() == [
        "en_nb_a_asr <eng><asr><notimestamps> Hello.", "en_nb_a_st_fra <eng><st_fra><notimestamps> Bonjour.",
        "en_wb_a_asr <eng><asr><notimestamps> Hello.", "en_wb_a_st_fra <eng><st_fra><notimestamps> Bonjour."]
    assert (tmp_path / "utt2bw").read_text().split()[1::2] == ["<nb>", "<nb>", "<wb>", "<wb>"]
    assert set((tmp_path / "text.prev").read_text().split()[1::2]) == {"<na>"}
    assert (tmp_path / "utt2spk").read_text() == (tmp_path / "spk2utt").read_text()


def test_writer_groups_speakers(tmp_path):
    files = _train_files()
    utt2spk = {u: u[:7] for u in files["wav.scp"]}
    write_data_dir(tmp_path, files, utt2spk)
    assert (tmp_path / "spk2utt").read_text() == (
        "en_nb_a en_nb_a_asr en_nb_a_st_fra\nen_wb_a en_wb_a_asr en_wb_a_st_fra\n")
    with pytest.raises(DataDirError, match="utterance en_nb_a_asr does not start with its speaker id x"):
        write_data_dir(tmp_path, files, {**utt2spk, "en_nb_a_asr": "x"})
    files["text"].pop("en_wb_a_asr")
    with pytest.raises(DataDirError, match=r"/text: utterance ids differ from wav.scp's, e.g. \['en_wb_a_asr'\]"):
        write_data_dir(tmp_path, files)


@pytest.mark.parametrize("name, content, message", [
    ("wav.scp", "b /w/b.wav\na /w/a.wav\n", r"wav.scp:2: id a after b; expected sorted \(LC_ALL=C\), unique ids"),
    ("text.ctc", "a hello\nc hi\n", r"text.ctc:2: utterance c; expected utterance b as in wav.scp"),
    ("text.ctc", "a hello\n", r"text.ctc: 1 lines; expected the 2 utterances of wav.scp \(first missing: b\)"),
    ("text", "a <eng><asr><notimestamps> hi\nb <eng><asr><notimestamps> \n", r"text:2: utterance b: empty text"),
    ("utt2bw", "a <nb>\nb <tel>\n", r"utt2bw:2: utterance b: bandwidth '<tel>'; expected one of <nb>, <wb>"),
    ("spk2utt", "a a\n", r"spk2utt: lists 1 utterances; expected the 2 of wav.scp"),
])
def test_validate_names_file_line_and_expectation(tmp_path, name, content, message):
    files = {"wav.scp": "a /w/a.wav\nb /w/b.wav\n",
             "text": "a <eng><asr><notimestamps> hi\nb <eng><asr><notimestamps> yo\n",
             "text.ctc": "a hi\nb yo\n", "utt2bw": "a <nb>\nb <wb>\n", "spk2utt": "a a\nb b\n"}
    for n, c in {**files, name: content}.items():
        (tmp_path / n).write_text(c)
    with pytest.raises(DataDirError, match=message):
        validate_data_dir(tmp_path)
    for n, c in files.items():
        (tmp_path / n).write_text(c)
    assert validate_data_dir(tmp_path) == 2


def test_validate_missing_wav_scp(tmp_path):
    with pytest.raises(DataDirError, match=r"wav.scp: missing; expected an S2T data dir"):
        validate_data_dir(tmp_path)
