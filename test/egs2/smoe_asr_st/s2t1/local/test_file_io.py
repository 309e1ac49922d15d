"""Tests for local/file_io.py: the one Kaldi and TSV reader/writer."""

import pytest

from local.file_io import c_sorted, read_kaldi, read_tsv, write_kaldi, write_tsv


def test_tsv_escapes_tabs_newlines_and_backslashes(tmp_path):
    path = tmp_path / "x.tsv"
    rows = [{"a": "1", "b": 0.5}, {"a": "tab\there", "b": "line\nbreak \\ slash\r"}, ("", "")]
    assert write_tsv(path, ["a", "b"], rows) == 3
    assert path.read_text() == "a\tb\n1\t0.5000\ntab\\there\tline\\nbreak \\\\ slash\\r\n\t\n"
    assert read_tsv(path) == [{"a": "1", "b": "0.5000"}, {"a": "tab\there", "b": "line\nbreak \\ slash\r"},
                              {"a": "", "b": ""}]


def test_tsv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "x.tsv"
    with pytest.raises(ValueError, match=r"x.tsv: row 1 has 1 cells, the header 2"):
        write_tsv(path, ["a", "b"], [("only",)])
    path.write_text("a\tb\n1\t2\n3\n")
    with pytest.raises(ValueError, match=r"x.tsv:3: 1 cells, expected 2 \(a, b\)"):
        read_tsv(path)


def test_kaldi_roundtrip_sorted_in_byte_order(tmp_path):
    path = tmp_path / "text"
    write_kaldi(path, {"b": "two", "B": "one", "a_x": "", "a-x": "three words"})
    assert path.read_text() == "B one\na-x three words\na_x \nb two\n"
    assert read_kaldi(path) == {"B": "one", "a-x": "three words", "a_x": "", "b": "two"}
    assert c_sorted(["b", "B", "a_x", "a-x"]) == ["B", "a-x", "a_x", "b"]


def test_kaldi_errors(tmp_path):
    with pytest.raises(ValueError, match=r"text: key 'u1': expected a key without spaces and no tab"):
        write_kaldi(tmp_path / "text", {"u1": "a\tb"})
    (tmp_path / "dup").write_text("u1 a\nu2 b\nu1 c\n")
    with pytest.raises(ValueError, match=r"dup:3: key u1 repeated"):
        read_kaldi(tmp_path / "dup")
