#!/usr/bin/env python3
"""Scores decoded test sets: WER/CER for ASR, BLEU/chrF for speech translation.

Usage::

    python -m local.score --data_dir data \\
        --decode_dir exp/<tag>/decode_<inference_tag> \\
        --test_sets "test_nb test_wb" --tasks "asr st_fra" --out_dir exp/<tag>

For every test set and task the hypotheses are read from
``<decode_dir>/<test_set>_<task>/1best_recog/text_nospecial`` and the references from
``<data_dir>/<test_set>/text.<task>`` (Kaldi ``utt text`` lines, ``local/file_io.py``; the text may
be empty). Both must hold the same utterances. The bandwidth of a test set is the single value of
its ``utt2bw`` (``<nb>`` or ``<wb>``).

A task named ``asr`` is scored with jiwer (WER and CER, with substitution, deletion and insertion
counts) after the normalisation in NORMALIZATION; a task named ``st*`` is scored with sacrebleu's
corpus BLEU and chrF on the detokenised text with sacrebleu's defaults. Writes
``<out_dir>/results.json`` and ``<out_dir>/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

from local.data_dir import BANDWIDTH_TOKENS
from local.file_io import key_mismatch, read_kaldi

# utt2bw values: the tokens, or the plain names
BANDWIDTHS = {**{token: bw for bw, token in BANDWIDTH_TOKENS.items()}, **{bw: bw for bw in BANDWIDTH_TOKENS}}
BANDWIDTH_NAMES = {"nb": "narrowband", "wb": "wideband"}

# Written into results.json and RESULTS.md so that numbers stay comparable.
NORMALIZATION = {
    "wer": "lower-cased; Unicode punctuation (categories P*) except apostrophes replaced by a space (the "
           "typographic apostrophe U+2019 is written as '); whitespace collapsed. CER counts characters, "
           "spaces included, of the same normalised text.",
    "bleu": "sacrebleu defaults on the detokenised text: 13a tokenizer, case-sensitive, corpus level, one reference.",
}

# Keep only apostrophes from the punctuation: they are part of English words.
APOSTROPHES = {"'", "\u2019"}


class ScoreError(Exception):
    """Inconsistent or missing scoring inputs."""


def read_kaldi_text(path: Path) -> dict[str, str]:
    """``{utt: text}`` of a Kaldi text file (``file_io.read_kaldi``; the text may be empty).

    Raises:
        ScoreError: If the file is missing or malformed (an empty line, an utterance twice).
    """
    if not path.is_file():
        raise ScoreError(f"{path} not found")
    try:
        return {utt: text.strip() for utt, text in read_kaldi(path).items()}
    except ValueError as err:
        raise ScoreError(str(err)) from None


def read_bandwidth(path: Path) -> str:
    """The single bandwidth (``nb`` or ``wb``) of an utt2bw; a missing, empty or mixed file is a ScoreError."""
    values = read_kaldi_text(path)
    if not values:
        raise ScoreError(f"{path} is empty")
    for utt, value in values.items():
        if value not in BANDWIDTHS:
            raise ScoreError(f"{path}: utterance {utt!r} has bandwidth {value!r}; expected one of {sorted(BANDWIDTHS)}")
    counts = Counter(BANDWIDTHS[value] for value in values.values())
    if len(counts) > 1:
        summary = ", ".join(f"{n} {bw}" for bw, n in sorted(counts.items()))
        raise ScoreError(f"{path}: test set mixes bandwidths ({summary}); expected one")
    return next(iter(counts))


def normalize_for_wer(text: str) -> str:
    """Applies the WER/CER normalisation described in NORMALIZATION."""
    chars = []
    for char in text.lower():
        if char in APOSTROPHES:
            chars.append("'")
        elif unicodedata.category(char).startswith("P"):
            # A space, not nothing: "well-known" must not become "wellknown".
            chars.append(" ")
        else:
            chars.append(char)
    return " ".join("".join(chars).split())


def task_kind(task: str) -> str:
    """Maps a task name to its metric family: ``asr`` or ``st``."""
    if task == "asr" or task.startswith("st"):
        return "asr" if task == "asr" else "st"
    raise ScoreError(f"unknown task {task!r}: expected 'asr' or a name starting with 'st'")


def score_asr(refs: list[str], hyps: list[str]) -> dict:
    """Word and character error rates (in %) with their error counts, of normalised aligned texts."""
    import jiwer

    words, chars = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    return {
        "wer": 100.0 * words.wer, "cer": 100.0 * chars.cer,
        "num_words": words.hits + words.substitutions + words.deletions,
        "corr": words.hits, "sub": words.substitutions, "del": words.deletions, "ins": words.insertions,
        "num_chars": chars.hits + chars.substitutions + chars.deletions,
        "char_corr": chars.hits, "char_sub": chars.substitutions, "char_del": chars.deletions,
        "char_ins": chars.insertions,
    }  # fmt: skip


def score_st(refs: list[str], hyps: list[str]) -> tuple[dict, dict]:
    """Corpus BLEU and chrF with sacrebleu's defaults, and the signatures of the two metrics."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    scores = {"bleu": bleu.corpus_score(hyps, [refs]).score, "chrf": chrf.corpus_score(hyps, [refs]).score}
    return scores, {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}


def hypothesis_path(decode_dir: Path, test_set: str, task: str) -> Path:
    """Where ``run.sh`` stage 12 leaves the hypotheses of one test set and task (special tokens removed)."""
    return decode_dir / f"{test_set}_{task}" / "1best_recog" / "text_nospecial"


def score_one(data_dir: Path, decode_dir: Path, test_set: str, task: str) -> tuple[dict, dict]:
    """Scores one test set for one task: the results.json entry, and sacrebleu signatures (empty for ASR)."""
    kind = task_kind(task)
    bandwidth = read_bandwidth(data_dir / test_set / "utt2bw")
    ref_path = data_dir / test_set / f"text.{task}"
    hyp_path = hypothesis_path(decode_dir, test_set, task)
    refs, hyps = read_kaldi_text(ref_path), read_kaldi_text(hyp_path)
    problems = key_mismatch(refs, hyps, "utterance", f"of {ref_path} missing", f"not in {ref_path}")
    if problems:  # utterances present on one side only
        raise ScoreError(f"{hyp_path}: " + "; ".join(problems))
    keys = sorted(refs)
    if not keys:
        raise ScoreError(f"{ref_path} has no utterances")
    entry = {"test_set": test_set, "bandwidth": bandwidth, "task": task, "num_utts": len(keys)}
    signatures: dict = {}
    if kind == "asr":
        ref_list, hyp_list = [normalize_for_wer(refs[k]) for k in keys], [normalize_for_wer(hyps[k]) for k in keys]
        if not any(ref_list):
            raise ScoreError(f"{ref_path}: every reference is empty after normalisation")
        entry.update(score_asr(ref_list, hyp_list))
    else:
        scores, signatures = score_st([refs[k] for k in keys], [hyps[k] for k in keys])
        entry.update(scores)
    entry["ref"], entry["hyp"] = str(ref_path), str(hyp_path)
    return entry, signatures


def _run(cmd: list[str], cwd: Path) -> str:
    """Output of a small command, or '' when it cannot run."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str:
    # nvidia-smi rather than torch: no CUDA initialisation just to score text ('' when there is none).
    names = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], Path.cwd())
    return ", ".join(names.splitlines()) or "none"


def environment_info() -> dict:
    """Describes where and with what the scores were computed."""
    here = Path(__file__).resolve().parent
    revision = _run(["git", "rev-parse", "HEAD"], here) or "unknown"
    if revision != "unknown" and _run(["git", "status", "--porcelain", "--untracked-files=no"], here):
        revision += " (with uncommitted changes)"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(), "python": platform.python_version(),
        **{package: _version(package) for package in ("torch", "espnet", "jiwer", "sacrebleu")},
        "git_revision": revision, "cpu": f"{_cpu_name()} ({os.cpu_count() or 1} cores)", "gpu": _gpu_name(),
    }  # fmt: skip


def results_markdown(report: dict) -> str:
    """Renders results.json content as RESULTS.md (ESPnet style).

    One section per task and bandwidth; ASR sections have a WER and a CER table, ST sections a
    BLEU/chrF table. Counts are percentages of the reference words (characters), as in ESPnet.
    """
    env, norm = report["environment"], report["normalization"]
    out = [
        "<!-- Generated by local/score.py; edit the scoring, not this file. -->",
        "# RESULTS",
        "## Environments",
        f"- date: `{env['date']}`",
        f"- hostname: `{env['hostname']}`",
        f"- python version: `{env['python']}`",
        f"- espnet version: `espnet {env['espnet']}`",
        f"- pytorch version: `pytorch {env['torch']}`",
        f"- scoring: `jiwer {env['jiwer']}`, `sacrebleu {env['sacrebleu']}`",
        f"- Git hash: `{env['git_revision']}`",
        f"- cpu: `{env['cpu']}`; gpu: `{env['gpu']}`",
        "",
        f"## {report['tag']}",
        f"- decode_dir: `{report['decode_dir']}`",
        f"- WER/CER normalisation: {norm['wer']}",
        f"- BLEU/chrF: {norm['bleu']}",
        "- Corr/Sub/Del/Ins/Err: % of the reference words (characters for CER);"
        " Snt: utterances; Wrd/Chr: reference words/characters.",
    ]
    out += [f"- {name} signature: `{norm[name + '_signature']}`" for name in ("bleu", "chrf")
            if name + "_signature" in norm]
    results = report["results"]
    for task in dict.fromkeys(r["task"] for r in results):
        for bw in dict.fromkeys(r["bandwidth"] for r in results):
            rows = [r for r in results if r["task"] == task and r["bandwidth"] == bw]
            if not rows:
                continue
            kind = task_kind(task)
            title = f"{kind.upper()} ({task}), {BANDWIDTH_NAMES.get(bw, bw)} ({bw})"
            if kind == "asr":
                out += ["", f"### {title}: WER", "", *_error_table(rows, "Wrd", "")]
                out += ["", f"### {title}: CER", "", *_error_table(rows, "Chr", "char_")]
            else:
                out += ["", f"### {title}", "", "|dataset|Snt|BLEU|chrF|", "|---|---|---|---|"]
                out += [f"|{r['test_set']}|{r['num_utts']}|{r['bleu']:.1f}|{r['chrf']:.1f}|" for r in rows]
    return "\n".join(out) + "\n"


def _error_table(rows: list[dict], unit: str, prefix: str) -> list[str]:
    """ESPnet-style ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|`` table lines."""
    lines = [f"|dataset|Snt|{unit}|Corr|Sub|Del|Ins|Err|", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        total = r["num_words" if prefix == "" else "num_chars"]
        sub, dele, ins = r[prefix + "sub"], r[prefix + "del"], r[prefix + "ins"]
        counts = (r[prefix + "corr"], sub, dele, ins, sub + dele + ins)
        cells = [r["test_set"], str(r["num_utts"]), str(total)]
        cells += [f"{100.0 * n / total:.1f}" if total else "-" for n in counts]  # % of the reference
        lines.append("|" + "|".join(cells) + "|")
    return lines


def split_words(items: list[str] | None) -> list[str]:
    """Flattens options given as one quoted string (as run.sh passes lists) or several words."""
    return [w for item in items or [] for w in item.split()]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="e.g. data")
    parser.add_argument("--decode_dir", type=Path, required=True, help="e.g. exp/<tag>/decode_<inference_tag>")
    parser.add_argument("--test_sets", nargs="+", required=True,
                        help='test sets, e.g. "test_nb test_wb" (one quoted string or several)')
    parser.add_argument("--tasks", nargs="+", required=True,
                        help='tasks, e.g. "asr st_fra" (one quoted string or several)')
    parser.add_argument("--out_dir", type=Path, required=True, help="e.g. exp/<tag>")
    parser.add_argument("--tag", default=None, help="experiment name (default: the out_dir name)")
    args = parser.parse_args(argv)
    test_sets, tasks = split_words(args.test_sets), split_words(args.tasks)

    normalization = dict(NORMALIZATION)
    results = []
    try:
        for task in tasks:
            for test_set in test_sets:
                entry, signatures = score_one(args.data_dir, args.decode_dir, test_set, task)
                results.append(entry)
                normalization.update({f"{metric}_signature": sig for metric, sig in signatures.items()})
    except ScoreError as err:
        print(f"score.py: error: {err}", file=sys.stderr)
        return 1

    report = {
        "tag": args.tag or args.out_dir.resolve().name, "decode_dir": str(args.decode_dir),
        "environment": environment_info(), "normalization": normalization,
        "units": {"wer": "%", "cer": "%", "corr/sub/del/ins": "word counts (char_*: character counts)",
                  "bleu": "sacrebleu BLEU, 0-100", "chrf": "sacrebleu chrF, 0-100"},
        "results": results,
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    markdown = results_markdown(report)
    (args.out_dir / "RESULTS.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
