"""local/significance.py: paired bootstrap against sacrebleu's own test and by hand."""

import random

import jiwer
import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from local.significance import compare, paired_bootstrap, wer_from_statistics, wer_statistics

WORDS = "le chat noir dort sur la table près de fenêtre ouverte ce soir".split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) for _ in range(n)]


def _corrupt(refs: list[str], rate: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(w if rng.random() > rate else rng.choice(WORDS) for w in r.split()) for r in refs]


def test_bleu_p_value_equals_sacrebleu_paired_bootstrap():
    refs = _sentences(60, 0)
    base, system = _corrupt(refs, 0.5, 1), _corrupt(refs, 0.3, 2)
    ours = compare("bleu", refs, [base], [system], num_samples=300)
    test = PairedTest([("base", base), ("sys", system)], {"BLEU": BLEU()}, references=[refs], test_type="bs",
                      n_samples=300)
    _, results = test()
    theirs = results["BLEU"][1]
    assert ours.p_value == pytest.approx(theirs.p_value), (ours, theirs)
    assert ours.baseline == pytest.approx(BLEU().corpus_score(base, [refs]).score)
    assert ours.system == pytest.approx(theirs.score)
    assert ours.delta > 0 and ours.ci_low > 0, ours  # fewer corrupted words: higher BLEU on every resample


def test_wer_statistics_sum_to_jiwer_corpus_wer():
    refs = _sentences(40, 3)
    hyps = _corrupt(refs, 0.2, 4)
    hyps[5] = ""  # a deleted utterance counts its reference words as deletions
    stats = wer_statistics(refs, hyps)
    assert stats.shape == (40, 2)
    assert wer_from_statistics(stats.sum(0)) == pytest.approx(100 * jiwer.wer(refs, hyps))


def test_wer_bootstrap_sees_a_real_difference_and_not_a_random_one():
    refs = _sentences(80, 5)
    worse, better = _corrupt(refs, 0.4, 6), _corrupt(refs, 0.1, 7)
    real = compare("wer", refs, [worse], [better], num_samples=200)
    assert real.delta < -15 and real.ci_high < 0 and real.p_value < 0.01, real
    # the baseline with one utterance made worse: a difference the test set cannot vouch for
    almost = list(worse)
    almost[0] = _corrupt([refs[0]], 1.0, 8)[0] + " " + WORDS[0]
    small = compare("wer", refs, [worse], [almost], num_samples=200)
    assert 0 < small.delta < 1.5 and small.ci_low <= 0 <= small.ci_high and small.p_value > 0.05, small


def test_seeds_are_averaged_on_the_same_resample():
    refs = _sentences(30, 10)
    seeds_a = [_corrupt(refs, 0.3, 11), _corrupt(refs, 0.35, 12)]
    seeds_b = [_corrupt(refs, 0.2, 13), _corrupt(refs, 0.25, 14), _corrupt(refs, 0.15, 15)]
    c = compare("wer", refs, seeds_a, seeds_b, num_samples=50)
    assert c.baseline == pytest.approx(np.mean([100 * jiwer.wer(refs, h) for h in seeds_a]))
    assert c.system == pytest.approx(np.mean([100 * jiwer.wer(refs, h) for h in seeds_b]))
    assert c.num_utts == 30 and c.num_samples == 50


def test_no_difference_has_p_value_one():
    refs = _sentences(20, 16)
    hyps = _corrupt(refs, 0.3, 17)
    c = compare("bleu", refs, [hyps], [list(hyps)], num_samples=50)
    assert c.delta == 0 and c.p_value == 1.0 and c.ci_low == c.ci_high == 0, c


def test_mismatched_systems_are_refused():
    a, b = np.ones((5, 2)), np.ones((6, 2))
    with pytest.raises(AssertionError, match="different numbers of utterances"):
        paired_bootstrap([a], [b], wer_from_statistics)
    with pytest.raises(ValueError, match="unknown metric 'ter'"):
        compare("ter", ["a"], [["a"]], [["a"]])
