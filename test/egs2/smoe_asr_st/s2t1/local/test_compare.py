"""Tests for local/compare.py: comparison table, relative WER change, chart."""

import json

import pytest

from local import compare


def write_exp(root, tag, scores, model_info=None, extra_results=()):
    """Writes an exp dir like local/score.py would.

    Args:
        root: Parent folder.
        tag: Experiment folder name.
        scores: {"wer_nb": .., "wer_wb": .., "bleu_nb": .., "bleu_wb": ..}.
        model_info: Optional model_info.json content.
        extra_results: More results.json entries.
    """
    exp_dir = root / tag
    exp_dir.mkdir(parents=True)
    results = []
    for bw in ("nb", "wb"):
        results.append(
            {"test_set": f"test_{bw}", "bandwidth": bw, "task": "asr", "num_utts": 5,
             "wer": scores[f"wer_{bw}"], "cer": scores[f"wer_{bw}"] / 2}
        )  # fmt: skip
        results.append(
            {"test_set": f"test_{bw}", "bandwidth": bw, "task": "st_fra", "num_utts": 5,
             "bleu": scores[f"bleu_{bw}"], "chrf": scores[f"bleu_{bw}"] + 20}
        )  # fmt: skip
    results.extend(extra_results)
    report = {"tag": tag, "decode_dir": f"{exp_dir}/decode", "results": results}
    (exp_dir / "results.json").write_text(json.dumps(report))
    if model_info is not None:
        (exp_dir / "model_info.json").write_text(json.dumps(model_info))
    return exp_dir


BASE = {"wer_nb": 10.0, "wer_wb": 20.0, "bleu_nb": 15.0, "bleu_wb": 25.0}
SMOE = {"wer_nb": 8.0, "wer_wb": 18.0, "bleu_nb": 17.5, "bleu_wb": 26.25}
WORSE = {"wer_nb": 12.0, "wer_wb": 19.0, "bleu_nb": 14.0, "bleu_wb": 24.0}


@pytest.fixture
def exps(tmp_path):
    """Three variants; the last has no model_info.json."""
    dense = {"total_params": 85_000_000, "active_params": 85_000_000}
    moe = {"total_params": 120_500_000, "active_params": 86_250_000}
    dirs = [
        write_exp(tmp_path, "hard", BASE, dense),
        write_exp(tmp_path, "smoe_enc", SMOE, moe),
        write_exp(tmp_path, "worse", WORSE),
    ]
    return tmp_path, dirs


def run_compare(out_dir, *args):
    return compare.main([*args, "--out_dir", str(out_dir)])


def table_rows(md):
    """Markdown table rows (without header and separator) as cell lists."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return [line.strip("|").split("|") for line in lines[2:]]


def test_table_values_equal_inputs(exps):
    root, dirs = exps
    out = root / "cmp"
    names = ["hard sharing", "S-MoE enc", "worse"]
    assert run_compare(out, "--exp_dirs", *map(str, dirs), "--names", *names) == 0
    table = json.loads((out / "compare.json").read_text())
    assert table["baseline"] == "hard sharing"
    assert [c["label"] for c in table["columns"]] == [
        "ASR WER NB (%)", "ASR WER WB (%)", "ST BLEU NB", "ST BLEU WB",
    ]  # fmt: skip
    for row, scores in zip(table["variants"], (BASE, SMOE, WORSE)):
        assert row["values"] == scores
        assert row["test_sets"]["wer_nb"] == "test_nb"

    md = (out / "compare.md").read_text()
    rows = table_rows(md)
    assert [r[0] for r in rows] == names
    assert rows[0][1:5] == ["10.00", "20.00", "15.00", "25.00"]
    assert rows[1][1:5] == ["8.00", "18.00", "17.50", "26.25"]
    assert rows[0][5:7] == ["85.00M", "85.00M"]
    assert rows[1][5:7] == ["120.50M", "86.25M"]
    assert table["variants"][1]["total_params"] == 120_500_000


def test_relative_wer_change_against_first_row(exps):
    root, dirs = exps
    out = root / "cmp"
    assert run_compare(out, "--exp_dirs", *map(str, dirs)) == 0
    table = json.loads((out / "compare.json").read_text())
    rel = [row["rel_wer_change"] for row in table["variants"]]
    # Mean over nb and wb of (WER - WER_base) / WER_base, in percent.
    expected_smoe = ((8 - 10) / 10 + (18 - 20) / 20) / 2 * 100
    expected_worse = ((12 - 10) / 10 + (19 - 20) / 20) / 2 * 100
    assert rel == pytest.approx([0.0, expected_smoe, expected_worse])
    rows = table_rows((out / "compare.md").read_text())
    assert [r[-1] for r in rows] == ["baseline", "-15.0%", "+7.5%"]


def test_missing_model_info_and_default_names(exps):
    root, dirs = exps
    out = root / "cmp"
    assert run_compare(out, "--exp_dirs", *map(str, dirs)) == 0
    table = json.loads((out / "compare.json").read_text())
    assert [v["name"] for v in table["variants"]] == ["hard", "smoe_enc", "worse"]
    assert table["variants"][2]["total_params"] is None
    rows = table_rows((out / "compare.md").read_text())
    assert rows[2][5:7] == ["-", "-"]


def test_png_is_written(exps):
    root, dirs = exps
    out = root / "cmp"
    assert run_compare(out, "--exp_dirs", *map(str, dirs)) == 0
    png = (out / "compare.png").read_bytes()
    assert len(png) > 1000
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_variants_file(exps):
    root, dirs = exps
    listing = root / "variants.tsv"
    listing.write_text(f"# name\texp\nbaseline\t{dirs[0]}\n\nS-MoE\t{dirs[1]}\n")
    assert run_compare(root / "cmp", "--variants_file", str(listing)) == 0
    table = json.loads((root / "cmp/compare.json").read_text())
    assert [v["name"] for v in table["variants"]] == ["baseline", "S-MoE"]

    listing.write_text(f"baseline\t{dirs[0]}\nno tab here {dirs[1]}\n")
    with pytest.raises(compare.CompareError, match=r"variants.tsv:2: expected"):
        compare.read_variants_file(listing)


def test_several_test_sets_per_bandwidth_need_a_choice(tmp_path, capsys):
    other = [
        {"test_set": "test_nb_g722", "bandwidth": "nb", "task": "asr", "wer": 30.0},
        {"test_set": "test_nb_g722", "bandwidth": "nb", "task": "st_fra", "bleu": 5.0},
    ]
    a = write_exp(tmp_path, "a", BASE, extra_results=other)
    b = write_exp(tmp_path, "b", SMOE, extra_results=other)
    out = tmp_path / "cmp"
    assert run_compare(out, "--exp_dirs", str(a), str(b)) == 1
    err = capsys.readouterr().err
    assert "several nb test sets for asr (test_nb, test_nb_g722)" in err
    assert "--test_sets" in err

    chosen = ["--test_sets", "test_nb_g722 test_wb"]
    assert run_compare(out, "--exp_dirs", str(a), str(b), *chosen) == 0
    table = json.loads((out / "compare.json").read_text())
    assert table["variants"][0]["values"]["wer_nb"] == 30.0
    assert table["variants"][0]["values"]["wer_wb"] == BASE["wer_wb"]
    # Same nb WER for both: the change comes from wb only, halved by the mean.
    expected = (18 - 20) / 20 / 2 * 100
    assert table["variants"][1]["rel_wer_change"] == pytest.approx(expected)


def test_extra_metric_columns(exps):
    root, dirs = exps
    out = root / "cmp"
    metrics = ["--metrics", "wer", "bleu", "chrf"]
    assert run_compare(out, "--exp_dirs", *map(str, dirs), *metrics) == 0
    table = json.loads((out / "compare.json").read_text())
    assert [c["key"] for c in table["columns"]][-2:] == ["chrf_nb", "chrf_wb"]
    assert table["variants"][1]["values"]["chrf_wb"] == SMOE["bleu_wb"] + 20
    assert "ST chrF WB" in (out / "compare.md").read_text()


def test_missing_results_and_result_gaps(tmp_path, capsys):
    a = write_exp(tmp_path, "a", BASE)
    missing = str(tmp_path / "nope")
    assert run_compare(tmp_path / "cmp", "--exp_dirs", str(a), missing) == 1
    assert "nope/results.json not found" in capsys.readouterr().err

    # An experiment scored on nb only: its wb cells are '-', the change uses nb.
    b = tmp_path / "b"
    b.mkdir()
    nb_only = [{"test_set": "test_nb", "bandwidth": "nb", "task": "asr", "wer": 5.0}]
    (b / "results.json").write_text(json.dumps({"tag": "b", "results": nb_only}))
    out = tmp_path / "cmp"
    assert run_compare(out, "--exp_dirs", str(a), str(b)) == 0
    rows = table_rows((out / "compare.md").read_text())
    assert rows[1][1:5] == ["5.00", "-", "-", "-"]
    assert rows[1][-1] == "-50.0%"
    assert (out / "compare.png").stat().st_size > 0
