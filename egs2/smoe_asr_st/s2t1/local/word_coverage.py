#!/usr/bin/env python3
"""How many words of the test references a training set never says.

A word the training transcripts never hold can only be written from subword pieces heard in other
words, so the share of such words in the test references is a measure of how far the test sets lie
from the training data, apart from any acoustic difference. Words are compared after the WER
normalisation of ``local/score.py`` (lower case, punctuation but apostrophes removed).

    python -m local.word_coverage --data_dir data --train_sets "train train_mix" \\
        --test_sets "test_nb test_wb" --out exp/word_coverage.json

Training transcripts: ``<data_dir>/<train_set>/text.ctc`` (the English transcript of every
utterance, ``local/data_dir.py``); test references: ``<data_dir>/<test_set>/text.asr``. Prints one
table row per (training set, test set) and writes the counts and the most frequent unseen words to
``--out`` as JSON.

With ``--decode_dir`` (a ``run.sh`` stage 12 folder: ``<test_set>_asr/1best_recog/text_nospecial``)
it also scores the ASR hypotheses of the test sentences whose words are all in the training
transcripts apart from those with an unseen word (WER and CER as ``local/score.py``), which tells
whether the unseen words are what the errors come from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from local.file_io import key_mismatch
from local.score import ScoreError, hypothesis_path, normalize_for_wer, read_kaldi_text, score_asr

MOST_COMMON = 20  # unseen words listed per test set


def read_words(path: Path) -> dict[str, list[str]]:
    """``{utt: normalised words}`` of a Kaldi text file.

    Raises:
        ScoreError: If the file is missing or a line is malformed (``score.read_kaldi_text``: names the file and line).
    """
    return {utt: normalize_for_wer(text).split() for utt, text in read_kaldi_text(path).items()}


def coverage(train_vocab: set[str], test: dict[str, list[str]]) -> dict:
    """Counts of the test words (and sentences) absent from ``train_vocab``."""
    tokens = [w for words in test.values() for w in words]
    unseen = Counter(w for w in tokens if w not in train_vocab)
    n_unseen = sum(unseen.values())
    return {
        "sentences": len(test),
        "sentences_with_unseen": sum(any(w not in train_vocab for w in words) for words in test.values()),
        "tokens": len(tokens),
        "unseen_tokens": n_unseen,
        "unseen_percent": round(100 * n_unseen / len(tokens), 2) if tokens else 0.0,
        "most_common_unseen": unseen.most_common(MOST_COMMON),
    }


def score_by_coverage(train_vocab: set[str], test: dict[str, list[str]], hyps: dict[str, list[str]]) -> dict:
    """WER and CER (%) of the sentences with every word in ``train_vocab`` (``all_seen``) and of the others.

    Raises:
        ValueError: If the hypotheses do not hold the same utterances as the references.
    """
    problems = key_mismatch(test, hyps, "utterance", "of the references missing", "not in the references")
    if problems:
        raise ValueError("hypotheses: " + "; ".join(problems))
    out = {}
    for group, keep in (("all_seen", True), ("with_unseen", False)):
        keys = sorted(u for u, words in test.items() if all(w in train_vocab for w in words) == keep)
        if keys:
            scores = score_asr([" ".join(test[u]) for u in keys], [" ".join(hyps[u]) for u in keys])
            out[group] = {"sentences": len(keys), "wer": round(scores["wer"], 2), "cer": round(scores["cer"], 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path("data"))
    parser.add_argument("--train_sets", required=True, help="space-separated data dirs with text.ctc")
    parser.add_argument("--test_sets", required=True, help="space-separated data dirs with text.asr")
    parser.add_argument("--decode_dir", type=Path, help="score the ASR hypotheses found here by coverage")
    parser.add_argument("--out", type=Path, help="JSON report (optional)")
    args = parser.parse_args(argv)
    try:
        tests = {t: read_words(args.data_dir / t / "text.asr") for t in args.test_sets.split()}
        hyps = {}
        if args.decode_dir:
            hyps = {t: read_words(hypothesis_path(args.decode_dir, t, "asr")) for t in tests}
        report = {}
        for train_set in args.train_sets.split():
            vocab = {w for words in read_words(args.data_dir / train_set / "text.ctc").values() for w in words}
            report[train_set] = {"word_types": len(vocab),
                                 "test_sets": {t: coverage(vocab, words) for t, words in tests.items()}}
            for t in hyps:
                report[train_set]["test_sets"][t]["asr_by_coverage"] = score_by_coverage(vocab, tests[t], hyps[t])
    except (ScoreError, ValueError) as err:
        print(f"word_coverage: {err}", file=sys.stderr)
        return 1
    by_cov = " CER (%): all words seen | CER: with an unseen word |" if hyps else ""
    print("| training set | word types | test set | test words unseen in training | sentences with one |" + by_cov)
    print("|---|---:|---|---:|---:|" + ("---:|---:|" if hyps else ""))
    for train_set, r in report.items():
        for test_set, c in r["test_sets"].items():
            row = (f"| {train_set} | {r['word_types']} | {test_set} | {c['unseen_tokens']} of {c['tokens']} "
                   f"({c['unseen_percent']:.1f} %) | {c['sentences_with_unseen']} of {c['sentences']} |")
            if hyps:
                row += "".join(f" {c['asr_by_coverage'][g]['cer']:.1f} |" if g in c["asr_by_coverage"] else " - |"
                               for g in ("all_seen", "with_unseen"))
            print(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
