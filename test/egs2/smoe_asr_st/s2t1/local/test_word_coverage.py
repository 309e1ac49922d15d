"""local/word_coverage.py: test words the training transcripts never hold, counted by hand."""

import json

from local import word_coverage


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in rows.items()))


def make_data(root):
    # training transcripts: each recording twice (ASR and ST rows), as the recipe writes them
    write(root / "train/text.ctc", {"a_asr": "Press 1 to accept.", "a_st_fra": "Press 1 to accept.",
                                    "b_asr": "Please hold, the call's on.", "b_st_fra": "Please hold, the call's on."})
    write(root / "bigger/text.ctc", {"a_asr": "press one to reject the call", "b_asr": "please HOLD"})
    # "PLEASE" and "call's" match after normalisation; "reject", "it" and "now" are not in train
    write(root / "test_nb/text.asr", {"u1": "PLEASE press 1 to reject it!", "u2": "Hold the call's now.",
                                      "u3": "to accept"})
    return root


def test_counts_against_a_hand_count(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    out = tmp_path / "cov.json"
    assert word_coverage.main(["--data_dir", str(data), "--train_sets", "train bigger",
                               "--test_sets", "test_nb", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # train: press 1 to accept please hold the call's on -> 9 types
    train = report["train"]
    assert train["word_types"] == 9
    c = train["test_sets"]["test_nb"]
    # test words: please press 1 to reject it | hold the call's now | to accept -> 12; unseen: reject, it, now
    assert (c["tokens"], c["unseen_tokens"], c["sentences"], c["sentences_with_unseen"]) == (12, 3, 3, 2)
    assert c["unseen_percent"] == 25.0
    assert sorted(w for w, _ in c["most_common_unseen"]) == ["it", "now", "reject"]
    # bigger: press one to reject the call please hold -> 8 types; unseen: 1 it call's now accept
    b = report["bigger"]
    assert b["word_types"] == 8
    assert b["test_sets"]["test_nb"]["unseen_tokens"] == 5
    assert b["test_sets"]["test_nb"]["sentences_with_unseen"] == 3
    printed = capsys.readouterr().out
    assert "| train | 9 | test_nb | 3 of 12 (25.0 %) | 2 of 3 |" in printed


def test_a_missing_file_is_named(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    assert word_coverage.main(["--data_dir", str(data), "--train_sets", "train",
                               "--test_sets", "test_wb"]) == 1
    err = capsys.readouterr().err
    assert "test_wb/text.asr not found" in err


def test_a_malformed_line_is_named(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    (data / "train/text.ctc").write_text("a_asr press one\n\nb_asr hold\n")
    assert word_coverage.main(["--data_dir", str(data), "--train_sets", "train", "--test_sets", "test_nb"]) == 1
    assert "train/text.ctc:2: empty line" in capsys.readouterr().err


def test_errors_split_by_coverage(tmp_path, capsys):
    """The hypotheses of the sentences whose words are all seen are scored apart from the others."""
    data = make_data(tmp_path / "data")
    decode = tmp_path / "decode"
    # u3 ("to accept", every word seen) is misheard, u1 and u2 (unseen words) are right
    write(decode / "test_nb_asr/1best_recog/text_nospecial",
          {"u1": "please press 1 to reject it", "u2": "hold the call's now", "u3": "to except"})
    out = tmp_path / "cov.json"
    assert word_coverage.main(["--data_dir", str(data), "--train_sets", "train", "--test_sets", "test_nb",
                               "--decode_dir", str(decode), "--out", str(out)]) == 0
    by = json.loads(out.read_text())["train"]["test_sets"]["test_nb"]["asr_by_coverage"]
    # "to accept" -> "to except": 1 of 2 words, 2 of 9 characters
    assert by["all_seen"] == {"sentences": 1, "wer": 50.0, "cer": 22.22}
    assert by["with_unseen"] == {"sentences": 2, "wer": 0.0, "cer": 0.0}
    assert "| 2 of 3 | 22.2 | 0.0 |" in capsys.readouterr().out


def test_hypotheses_must_match_the_references(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    decode = tmp_path / "decode"
    write(decode / "test_nb_asr/1best_recog/text_nospecial", {"u1": "please", "u9": "hold"})
    assert word_coverage.main(["--data_dir", str(data), "--train_sets", "train", "--test_sets", "test_nb",
                               "--decode_dir", str(decode)]) == 1
    err = capsys.readouterr().err
    assert "u2" in err and "u9" in err, err
