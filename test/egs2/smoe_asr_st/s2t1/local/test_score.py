"""Tests for local/score.py: WER/CER with jiwer, BLEU/chrF with sacrebleu."""

import json

import jiwer
import pytest
import sacrebleu

from local import score

# Per test set: utterance -> (reference, hypothesis) for each task. The
# normalised ASR strings are written out by hand so the test does not reuse
# the code under test.
ASR = {
    "test_nb": {
        "nb_1": ("Hello, world! It's a test.", "hello world its a test"),
        "nb_2": ("The well-known cat sat.", ""),
        "nb_3": ("Good morning.", "Good morning, everyone!"),
    },
    "test_wb": {
        "wb_1": ("Don\u2019t stop (now).", "don't stop now"),
        "wb_2": ("A B   C", "a x c d"),
    },
}
ASR_NORMALISED = {
    "test_nb": {
        "nb_1": ("hello world it's a test", "hello world its a test"),
        "nb_2": ("the well known cat sat", ""),
        "nb_3": ("good morning", "good morning everyone"),
    },
    "test_wb": {
        "wb_1": ("don't stop now", "don't stop now"),
        "wb_2": ("a b c", "a x c d"),
    },
}
ST = {
    "test_nb": {
        "nb_1": (
            "Bonjour le monde, c'est un test.",
            "Bonjour le monde, c'est un essai.",
        ),
        "nb_2": ("Le chat bien connu était assis.", "Le chat connu était assis."),
        "nb_3": ("Bonjour.", ""),
    },
    "test_wb": {
        "wb_1": ("Ne t'arrête pas maintenant.", "Ne t'arrête pas maintenant."),
        "wb_2": ("A B C", "a x c d"),
    },
}
BANDWIDTH = {"test_nb": "<nb>", "test_wb": "<wb>"}


def write_kaldi(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    # Reverse order: the scorer must align by key, not by line.
    lines = [f"{utt} {text}".rstrip() + "\n" for utt, text in reversed(entries.items())]
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def exp(tmp_path):
    """A data dir, a decode dir and an out dir for two test sets, two tasks."""
    data, decode = tmp_path / "data", tmp_path / "exp/tag/decode_test"
    for test_set in ASR:
        utts = ASR[test_set]
        write_kaldi(data / test_set / "utt2bw", {u: BANDWIDTH[test_set] for u in utts})
        for task, table in (("asr", ASR), ("st_fra", ST)):
            pairs = table[test_set]
            refs = {u: r for u, (r, _) in pairs.items()}
            write_kaldi(data / test_set / f"text.{task}", refs)
            hyp = decode / f"{test_set}_{task}" / "1best_recog" / "text_nospecial"
            write_kaldi(hyp, {u: h for u, (_, h) in pairs.items()})
    return tmp_path


def run_score(root, test_sets="test_nb test_wb", tasks="asr st_fra"):
    return score.main(
        [
            "--data_dir", str(root / "data"),
            "--decode_dir", str(root / "exp/tag/decode_test"),
            "--test_sets", test_sets,
            "--tasks", tasks,
            "--out_dir", str(root / "exp/tag"),
        ]
    )  # fmt: skip


def load_results(root):
    report = json.loads((root / "exp/tag/results.json").read_text())
    return report, {(r["test_set"], r["task"]): r for r in report["results"]}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World! It's well-known.", "hello world it's well known"),
        ("  A \t B  ", "a b"),
        ("Don\u2019t «stop» now...", "don't stop now"),
        ("", ""),
    ],
)
def test_normalize_for_wer(raw, expected):
    assert score.normalize_for_wer(raw) == expected


def test_asr_scores_equal_jiwer(exp):
    assert run_score(exp) == 0
    _, results = load_results(exp)
    for test_set, pairs in ASR_NORMALISED.items():
        refs = [r for r, _ in pairs.values()]
        hyps = [h for _, h in pairs.values()]
        words = jiwer.process_words(refs, hyps)
        got = results[(test_set, "asr")]
        assert got["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))
        assert got["cer"] == pytest.approx(100 * jiwer.cer(refs, hyps))
        assert (got["sub"], got["del"], got["ins"]) == (
            words.substitutions,
            words.deletions,
            words.insertions,
        )
        assert got["num_words"] == sum(len(r.split()) for r in refs)
        assert got["num_utts"] == len(pairs)
        assert "bleu" not in got


def test_st_scores_equal_sacrebleu(exp):
    assert run_score(exp) == 0
    _, results = load_results(exp)
    for test_set, pairs in ST.items():
        refs = [r for r, _ in pairs.values()]
        hyps = [h for _, h in pairs.values()]
        got = results[(test_set, "st_fra")]
        assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
        assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
        assert "wer" not in got


def test_bandwidth_and_report_fields(exp):
    assert run_score(exp) == 0
    report, results = load_results(exp)
    assert results[("test_nb", "asr")]["bandwidth"] == "nb"
    assert results[("test_wb", "st_fra")]["bandwidth"] == "wb"
    assert report["tag"] == "tag"
    assert report["decode_dir"].endswith("exp/tag/decode_test")
    env = report["environment"]
    for key in ("date", "hostname", "python", "torch", "espnet", "git_revision"):
        assert env[key]
    assert env["cpu"] and env["gpu"]
    assert "lower-cased" in report["normalization"]["wer"]
    assert "tok:13a" in report["normalization"]["bleu_signature"]


def test_results_md_tables(exp):
    assert run_score(exp) == 0
    _, results = load_results(exp)
    md = (exp / "exp/tag/RESULTS.md").read_text()
    assert "## Environments" in md
    assert "lower-cased" in md  # the normalisation is stated
    assert "### ASR (asr), narrowband (nb): WER" in md
    assert "### ST (st_fra), wideband (wb)" in md
    assert md.count("|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|") == 2
    assert md.count("|dataset|Snt|Chr|Corr|Sub|Del|Ins|Err|") == 2
    assert md.count("|dataset|Snt|BLEU|chrF|") == 2
    nb = results[("test_nb", "asr")]
    row = next(line for line in md.splitlines() if line.startswith("|test_nb|3|"))
    cells = row.strip("|").split("|")
    assert cells[2] == str(nb["num_words"])
    assert cells[-1] == f"{nb['wer']:.1f}"
    st = results[("test_wb", "st_fra")]
    assert f"|test_wb|2|{st['bleu']:.1f}|{st['chrf']:.1f}|" in md


def test_missing_and_extra_utterances_are_named(exp, capsys):
    hyp = exp / "exp/tag/decode_test/test_wb_asr/1best_recog/text_nospecial"
    write_kaldi(hyp, {"wb_1": "don't stop now", "wb_zzz": "extra"})
    assert run_score(exp, tasks="asr") == 1
    err = capsys.readouterr().err
    assert "1 utterance(s) of" in err and "missing: wb_2" in err
    assert "not in" in err and "wb_zzz" in err
    assert str(hyp) in err
    assert not (exp / "exp/tag/results.json").exists()


def test_mixed_bandwidth_is_an_error(exp, capsys):
    (exp / "data/test_nb/utt2bw").write_text("nb_1 <nb>\nnb_2 <wb>\nnb_3 <nb>\n")
    assert run_score(exp, test_sets="test_nb") == 1
    err = capsys.readouterr().err
    assert "mixes bandwidths (2 nb, 1 wb)" in err
    assert "test_nb/utt2bw" in err


def test_read_bandwidth_values(tmp_path):
    path = tmp_path / "utt2bw"
    path.write_text("u1 wb\nu2 <wb>\n")
    assert score.read_bandwidth(path) == "wb"
    path.write_text("u1 <nb>\nu2 <sb>\n")
    message = r"utt2bw: utterance 'u2' has bandwidth '<sb>'"
    with pytest.raises(score.ScoreError, match=message):
        score.read_bandwidth(path)


def test_empty_hypothesis_line_and_duplicates(tmp_path):
    path = tmp_path / "text"
    path.write_text("u1\nu2 some words\n")
    assert score.read_kaldi_text(path) == {"u1": "", "u2": "some words"}
    path.write_text("u1 a\nu1 b\n")
    with pytest.raises(score.ScoreError, match=r"text:2: key u1 repeated"):
        score.read_kaldi_text(path)
    with pytest.raises(score.ScoreError, match=r"missing.txt not found"):
        score.read_kaldi_text(tmp_path / "missing.txt")


def test_unknown_task_is_an_error(exp, capsys):
    assert run_score(exp, tasks="mt") == 1
    assert "unknown task 'mt'" in capsys.readouterr().err
