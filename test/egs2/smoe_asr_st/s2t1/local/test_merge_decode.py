"""Tests for local/merge_decode.py: job outputs of one or several tasks merged per task."""

import pytest

from local import merge_decode


def write_jobs(root, task=""):
    (root / "keys.1.scp").write_text("u1 a.wav\nu2 b.wav\n")
    (root / "keys.2.scp").write_text("u3 c.wav\n")
    for j, rows in ((1, {"u2": "deux", "u1": "un"}), (2, {"u3": "trois"})):
        out = root / f"output.{j}" / task / "1best_recog"
        out.mkdir(parents=True)
        (out / "text").write_text("".join(f"{k} {v}\n" for k, v in rows.items()))


def test_merges_one_task_of_multi_task_jobs_into_its_folder(tmp_path):
    write_jobs(tmp_path, "st_fra")
    target = tmp_path / "test_st_fra"
    assert merge_decode.merge(tmp_path, 2, ["text", "score"], "st_fra", target) == ["text"]
    assert (target / "1best_recog/text").read_text() == "u1 un\nu2 deux\nu3 trois\n"


def test_single_task_jobs_and_errors_name_the_logs_folder(tmp_path):
    write_jobs(tmp_path)
    assert merge_decode.merge(tmp_path, 2, ["text"]) == ["text"]
    assert (tmp_path / "1best_recog/text").read_text().splitlines() == ["u1 un", "u2 deux", "u3 trois"]
    (tmp_path / "output.2/1best_recog/text").unlink()
    with pytest.raises(merge_decode.MergeError, match=r"1 of 2 jobs.*see .*/logs\)"):
        merge_decode.merge(tmp_path, 2, ["text"])
    with pytest.raises(merge_decode.MergeError, match="none of text found under .*/output.\\*/asr/1best_recog"):
        merge_decode.merge(tmp_path, 2, ["text"], "asr")
