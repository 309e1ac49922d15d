"""Paired bootstrap resampling between two systems on the same test utterances.

sacrebleu's paired bootstrap (``sacrebleu.significance``, the Moses test) resamples the test
utterances with replacement, recomputes each system's corpus score from per-utterance
sufficient statistics, and asks how often the resampled difference strays from its mean by
more than the observed difference. This module does the same for WER (per-utterance word
edits and reference words) and for sacrebleu's BLEU/chrF statistics, with one addition: a
system may have several training seeds, and its score on a resample is the mean over its
seeds, so one index draw serves every seed of both systems (seeds stay paired with the test
utterances, and the spread over seeds is reported separately by make_table).

With one seed per system, BLEU gives exactly sacrebleu's ``PairedTest(test_type="bs")``
p-value for the same RNG seed (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SACREBLEU_SEED = 12345  # sacrebleu's default SACREBLEU_SEED


@dataclass(frozen=True)
class Comparison:
    """System B against baseline A on one test set and metric.

    delta: B - A on the whole test set (mean over seeds); ci_low/ci_high: the 2.5 and 97.5
    percentiles of the resampled B - A; p_value: the paired bootstrap p-value of the difference.
    """

    baseline: float
    system: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    num_utts: int
    num_samples: int


def wer_statistics(refs: list[str], hyps: list[str]) -> np.ndarray:
    """Per utterance: [word edits (S + D + I), reference words]. (num_utts, 2)."""
    import jiwer

    stats = np.zeros((len(refs), 2), dtype=np.float64)
    for i, (ref, hyp) in enumerate(zip(refs, hyps, strict=True)):
        if not ref.split():
            stats[i] = (len(hyp.split()), 0)  # every hypothesis word is an insertion
            continue
        out = jiwer.process_words(ref, hyp)
        stats[i] = (out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions)
    return stats


def wer_from_statistics(total: np.ndarray) -> float:
    return 100.0 * float(total[0]) / max(float(total[1]), 1.0)


def sacrebleu_metric(metric_name: str):
    """sacrebleu's BLEU or chrF object (default options, as local/score.py scores)."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU, "chrf": CHRF}[metric_name]()


def paired_bootstrap(
    baseline: list[np.ndarray],
    system: list[np.ndarray],
    score: Callable[[np.ndarray], float],
    num_samples: int = 1000,
    seed: int = SACREBLEU_SEED,
) -> Comparison:
    """Paired bootstrap of ``system`` against ``baseline``.

    Args:
        baseline: One (num_utts, num_stats) array of sufficient statistics per seed.
        system: The same for the other system (any number of seeds), rows in the same utterance order.
        score: Corpus score of a column sum of statistics.
        num_samples: Resamples.
        seed: RNG seed of the index draw (sacrebleu's default).
    """
    n = {s.shape[0] for s in baseline + system}
    assert len(n) == 1, f"systems cover different numbers of utterances: {sorted(n)}"
    (num_utts,) = n
    rng = np.random.default_rng(seed)
    idxs = rng.choice(num_utts, size=(num_samples, num_utts), replace=True)  # as sacrebleu draws them

    def mean_score(stats: list[np.ndarray]) -> float:
        return float(np.mean([score(s.sum(0)) for s in stats]))

    def resampled(stats: list[np.ndarray]) -> np.ndarray:  # (num_samples,)
        return np.mean([[score(s[i].sum(0)) for i in idxs] for s in stats], axis=0)

    a, b = mean_score(baseline), mean_score(system)
    ra, rb = resampled(baseline), resampled(system)
    # sacrebleu's p-value: how often |B - A| on a resample strays from its mean by more than observed
    sample_diffs = np.abs(rb - ra)
    p_value = (int(np.sum(sample_diffs - sample_diffs.mean() > abs(b - a))) + 1) / (num_samples + 1)
    if b == a:  # no difference to test (sacrebleu's formula would give its smallest p-value here)
        p_value = 1.0
    low, high = np.percentile(rb - ra, [2.5, 97.5])
    return Comparison(baseline=a, system=b, delta=b - a, ci_low=float(low), ci_high=float(high),
                      p_value=p_value, num_utts=num_utts, num_samples=num_samples)


def compare(metric: str, refs: list[str], baseline_hyps: list[list[str]], system_hyps: list[list[str]],
            num_samples: int = 1000, seed: int = SACREBLEU_SEED) -> Comparison:
    """``metric`` (wer, bleu or chrf) of a system against a baseline, each with one hypothesis list per seed.

    WER expects normalised references and hypotheses (as local/score.py scores them).
    """
    if metric == "wer":
        to_stats, score = (lambda hyps: wer_statistics(refs, hyps)), wer_from_statistics
    elif metric in ("bleu", "chrf"):
        scorer = sacrebleu_metric(metric)  # per-sentence sufficient statistics, scored from their sum

        def to_stats(hyps: list[str]) -> np.ndarray:
            return np.array(scorer._extract_corpus_statistics(hyps, [refs]), dtype="float32")

        def score(total: np.ndarray) -> float:
            return scorer._compute_score_from_stats(total).score
    else:
        raise ValueError(f"unknown metric {metric!r}: expected wer, bleu or chrf")
    return paired_bootstrap([to_stats(h) for h in baseline_hyps], [to_stats(h) for h in system_hyps], score,
                            num_samples=num_samples, seed=seed)


def _texts(entry: dict, kind: str) -> tuple[list[str], list[str]]:
    """References and hypotheses of a results.json entry, in utterance order, scored as local/score.py does."""
    from local.score import normalize_for_wer, read_kaldi_text

    refs, hyps = read_kaldi_text(Path(entry["ref"])), read_kaldi_text(Path(entry["hyp"]))
    keys = sorted(refs)
    missing = [k for k in keys if k not in hyps]
    if missing:
        raise ValueError(f"{entry['hyp']}: no hypothesis for {len(missing)} utterance(s), e.g. {missing[0]}")
    if kind == "asr":
        return [normalize_for_wer(refs[k]) for k in keys], [normalize_for_wer(hyps[k]) for k in keys]
    return [refs[k] for k in keys], [hyps[k] for k in keys]


def compare_runs(runs: list, baseline: str, num_samples: int = 1000) -> list[dict]:
    """Every variant against the baseline on every test set and task both were scored on.

    Args:
        runs: make_table's runs (``.variant`` and ``.results``: local/score.py's results.json
            entries, whose ``ref``/``hyp`` paths are read again).
        baseline: The baseline variant.

    Returns:
        One row per variant, test set, bandwidth and metric (WER for ASR, BLEU and chrF for ST):
        both means over seeds, the difference with its 95 % bootstrap interval, and the p-value.
    """
    by_variant: dict[str, dict[tuple, list[dict]]] = {}
    for run in runs:
        for entry in run.results or []:
            if "ref" not in entry or "hyp" not in entry:
                raise ValueError(f"{run.exp_dir}/results.json: an entry without 'ref'/'hyp' paths "
                                 f"({entry.get('test_set')}, {entry.get('task')}); rescore it with local/score.py")
            key = (entry["test_set"], entry["bandwidth"], entry["task"])
            by_variant.setdefault(run.variant, {}).setdefault(key, []).append(entry)
    rows = []
    for variant, cells in by_variant.items():
        if variant == baseline:
            continue
        for key, entries in sorted(cells.items()):
            base_entries = by_variant.get(baseline, {}).get(key)
            if not base_entries:
                continue
            kind = "asr" if key[2] == "asr" else "st"
            refs, _ = _texts(entries[0], kind)
            base_hyps = [_texts(e, kind)[1] for e in base_entries]
            sys_hyps = [_texts(e, kind)[1] for e in entries]
            for metric in ("wer",) if kind == "asr" else ("bleu", "chrf"):
                c = compare(metric, refs, base_hyps, sys_hyps, num_samples=num_samples)
                rows.append({"variant": variant, "baseline_variant": baseline, "test_set": key[0],
                             "bandwidth": key[1], "task": key[2], "metric": metric,
                             "seeds": [len(base_entries), len(entries)], **asdict(c)})
    return rows
