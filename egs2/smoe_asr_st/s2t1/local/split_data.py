#!/usr/bin/env python3
"""Stage 3: filter the Asterisk prompts and write the Kaldi-style data dirs.

Filtering (each prompt gets at most one reason; every skip is logged, counted
and written to ``<local_dir>/skipped.tsv``; nothing is dropped silently), in
this order of precedence:

* ``silence``: ``silence/*`` files (digital silence, not speech);
* ``audio_without_transcript``: audio with no English transcript entry;
* ``translation_only``: a French entry with neither English entry nor audio;
* ``missing_audio``: an English entry without (both) audio files;
* ``corrupt_audio``: unreadable/empty audio (stage 1 or 2 failed on it);
* ``length_mismatch``: the NB and WB takes differ in length;
* ``empty_text``: the English text is empty after normalisation
  (``asterisk_data.normalize_text``: NFC, ``[...]``/``<...>`` annotations and a
  trailing parenthesised stage direction removed, whitespace collapsed; case and
  punctuation kept);
* ``too_short`` / ``too_long``: duration outside ``[--min_dur, --max_dur]``;
* ``id_collision``: two names map to the same utterance id.

Prompts are only used in pairs: a prompt is kept in both bandwidths or in
neither, so every split has the same prompt set in NB and WB.

Missing French translation (no entry, or empty after normalisation): the prompt
stays ASR training/dev data (only its ``_asr`` utterances are written) and the
ST side is logged as skipped (scope ``st_fra``, reason ``no_translation``).  In
the test sets every prompt needs both references, so a test-family prompt
without French is skipped (reason ``no_translation_test``).

Split: by prompt family (``digits/1`` -> ``digits``, ``vm-tocallback`` ->
``vm``); a family lies in exactly one split.  Families that share an identical
English sentence (case and punctuation ignored, e.g. ``conf-onlyone`` and
``confbridge-only-one``) are merged into one split unit, so no sentence is in
two splits.  ``--train_only_families`` (default digits, letters) and the units
holding them always go to train.  The other units are shuffled with ``--seed``
and assigned greedily: to test while it is below
``--test_frac`` of the kept prompts (a family may overshoot the target by at
most 25 %; only units with at least one French translation), then to dev
(``--dev_frac``), else train.  Units too large to fit (``vm``) land in train.
``--max_prompts N`` then keeps a seeded slice of N prompts with every split
non-empty (CI runs); the rest are logged as ``max_prompts_slice``.

Output: S2T data dirs (``local/data_dir.py``, validated when written) data/train,
data/dev (ASR and ST utterances), data/test_nb, data/test_wb (one per prompt), plus ``<local_dir>/skipped.tsv``,
``<local_dir>/split_families.tsv`` and ``<local_dir>/split_summary.json``.  data/dev_nb and data/dev_wb hold
the dev prompts laid out as the test sets are (one per prompt, both references), so decoding options can be
chosen on dev with ``run.sh --test_sets "dev_nb dev_wb"``; data/train_nb and data/train_wb do the same for the
train prompts, so ``--test_sets "train_nb train_wb"`` measures how well a model fits the recordings it trained
on, against the held-out prompts of the test sets.  A prompt without French is not in them (scope
``dev_nb_wb`` or ``train_nb_wb``, reason ``no_translation``; its ASR utterances stay in data/dev or data/train).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from local.asterisk_data import is_silence, normalize_text, prompt_family, utt_base
from local.data_dir import add_recording, new_files, write_data_dir
from local.file_io import read_tsv, write_tsv
from local.log import setup_logging

SPLITS = ("train", "dev", "test")
SKIP_COLUMNS = ["name", "scope", "split", "reason", "detail"]


@dataclass
class Prompt:
    """A kept prompt: its English text, French text (empty: none, ``fr_detail`` says why) and audio pair."""

    name: str
    family: str
    en: str
    fr: str
    fr_detail: str
    nb_wav: str
    wb_wav: str
    duration: float
    split: str = ""


# --------------------------------------------------------------------------- filtering
def skip_reason(row: dict[str, str], bw: dict[str, str], min_dur: float, max_dur: float) -> tuple[str, str] | None:
    """The first filter (see the module docstring) that an inventory row fails: (reason, detail), or None."""
    status = bw["status"]
    if is_silence(row["name"]):
        return "silence", "digital silence, not speech"
    if row["en_entry"] != "1":
        if row["wav8k"] or row["g722"]:
            return "audio_without_transcript", "audio file has no core-sounds-en entry"
        return "translation_only", "French entry without English entry or audio"
    if status in ("no_audio", "missing_source"):
        return "missing_audio", bw["detail"] or "English entry without audio"
    if status in ("corrupt_audio", "length_mismatch"):
        return status, bw["detail"]
    if status != "ok":
        return "corrupt_audio", f"unknown stage-2 status {status!r}"
    vanished = [p for p in (bw["nb_wav"], bw["wb_wav"]) if not Path(p).is_file()]
    if vanished:
        return "missing_audio", f"stage-2 output missing: {', '.join(vanished)}"
    if not normalize_text(row["en_text"]):
        return "empty_text", f"raw: {row['en_text']!r}"
    duration = float(bw["duration"])
    if duration < min_dur:
        return "too_short", f"{duration:.3f} s < {min_dur} s"
    if duration > max_dur:
        return "too_long", f"{duration:.3f} s > {max_dur} s"
    return None


def skip_record(name: str, scope: str, split: str, reason: str, detail: str) -> dict[str, str]:
    """A row of skipped.tsv."""
    return {"name": name, "scope": scope, "split": split, "reason": reason, "detail": detail}


def filter_prompts(inventory: list[dict[str, str]], bandwidth: dict[str, dict[str, str]], min_dur: float,
                   max_dur: float) -> tuple[list[Prompt], list[dict[str, str]]]:
    """Apply the filters; returns kept prompts and skip records (scope 'prompt')."""
    kept: list[Prompt] = []
    skips: list[dict[str, str]] = []
    seen_ids: dict[str, str] = {}
    for row in inventory:
        name, bw = row["name"], bandwidth[row["name"]]
        reason = skip_reason(row, bw, min_dur, max_dur)
        base = utt_base(name, "nb")
        if reason is None and base in seen_ids:
            reason = "id_collision", f"same utterance id as {seen_ids[base]!r}"
        if reason is not None:
            skips.append(skip_record(name, "prompt", "-", *reason))
            continue
        seen_ids[base] = name
        fr, fr_detail = "", ""
        if row["fr_entry"] != "1":
            fr_detail = "no core-sounds-fr entry"
        else:
            fr = normalize_text(row["fr_text"])
            if not fr:
                fr_detail = f"French text empty after normalisation (raw {row['fr_text']!r})"
        kept.append(Prompt(name, prompt_family(name), normalize_text(row["en_text"]), fr, fr_detail, bw["nb_wav"],
                           bw["wb_wav"], float(bw["duration"])))
    return kept, skips


# --------------------------------------------------------------------------- splitting
def text_key(text: str) -> str:
    """Case/punctuation-insensitive form used to find duplicate transcripts."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def split_units(prompts: list[Prompt]) -> dict[str, str]:
    """Family -> split unit: families sharing an identical English transcript
    (``text_key``) are merged (union-find), so no sentence is in two splits."""
    parent: dict[str, str] = {}

    def find(f: str) -> str:
        parent.setdefault(f, f)
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    first_family: dict[str, str] = {}
    for p in sorted(prompts, key=lambda p: p.name):
        find(p.family)
        key = text_key(p.en)
        if key in first_family:
            a, b = find(first_family[key]), find(p.family)
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            first_family[key] = p.family
    members: dict[str, list[str]] = defaultdict(list)
    for f in parent:
        members[find(f)].append(f)
    return {f: "+".join(sorted(members[find(f)])) for f in parent}


def assign_families(prompts: list[Prompt], train_only: Iterable[str], dev_frac: float, test_frac: float,
                    seed: int) -> tuple[dict[str, str], dict[str, str]]:
    """Returns (family -> split, family -> unit); deterministic for a seed.

    Units (``split_units``) are assigned as wholes; a unit holding a train-only
    family is train-only."""
    unit_of = split_units(prompts)
    n_all: Counter = Counter(unit_of[p.family] for p in prompts)
    n_fr: Counter = Counter(unit_of[p.family] for p in prompts if p.fr)
    total = sum(n_all.values())
    train_only = set(train_only)
    forced = {unit_of[f] for f in unit_of if f in train_only}
    split = {u: "train" for u in n_all if u in forced}
    eligible = sorted(u for u in n_all if u not in forced)
    random.Random(seed).shuffle(eligible)
    targets = {"test": max(1, round(test_frac * total)), "dev": max(1, round(dev_frac * total))}
    filled = {"test": 0, "dev": 0}

    def fits(which: str, n: int) -> bool:
        cap = targets[which] + max(1, targets[which] // 4)
        return filled[which] < targets[which] and filled[which] + n <= cap

    for unit in eligible:
        if n_fr[unit] and fits("test", n_fr[unit]):
            split[unit], filled["test"] = "test", filled["test"] + n_fr[unit]
        elif fits("dev", n_all[unit]):
            split[unit], filled["dev"] = "dev", filled["dev"] + n_all[unit]
        else:
            split[unit] = "train"

    # tiny corpora: make sure test and dev are not empty (smallest free units)
    for which in ("test", "dev"):
        if any(s == which for s in split.values()):
            continue
        movable = [u for u in eligible if split[u] == "train" and (n_fr[u] if which == "test" else n_all[u])]
        movable.sort(key=lambda u: (n_all[u], u))
        train_left = sum(n_all[u] for u, s in split.items() if s == "train")
        for unit in movable:
            if train_left - n_all[unit] > 0:
                split[unit] = which
                break
        else:
            raise ValueError(
                f"cannot form a non-empty {which} split: {len(eligible)} splittable units "
                f"({sorted(eligible)}), train-only families {sorted(train_only & set(unit_of))}"
            )
    if not any(s == "train" for s in split.values()):
        raise ValueError("train split would be empty")
    return {f: split[u] for f, u in unit_of.items()}, unit_of


def take_slice(by_split: dict[str, list[Prompt]], max_prompts: int,
               seed: int) -> tuple[dict[str, list[Prompt]], list[Prompt]]:
    """Seeded slice of max_prompts prompts, every split non-empty; returns (kept, dropped)."""
    total = sum(len(v) for v in by_split.values())
    if max_prompts <= 0 or max_prompts >= total:
        return by_split, []
    if max_prompts < len(SPLITS):
        raise ValueError(f"--max_prompts must be >= {len(SPLITS)} to keep every split non-empty")
    quota = {s: max(1, round(max_prompts * len(by_split[s]) / total)) for s in ("test", "dev")}
    quota["train"] = max(1, max_prompts - quota["test"] - quota["dev"])
    rng = random.Random(seed + 1)
    kept, dropped = {}, []
    for s in SPLITS:
        pool = sorted(by_split[s], key=lambda p: p.name)
        rng.shuffle(pool)
        # translated prompts first so the ST side of every split is non-empty too
        pool.sort(key=lambda p: not p.fr)
        kept[s] = sorted(pool[: quota[s]], key=lambda p: p.name)
        dropped.extend(pool[quota[s]:])
    return kept, dropped


# --------------------------------------------------------------------------- writing
def _wav_path(path: str, absolute: bool) -> str:
    out = str(Path(path).absolute()) if absolute else path
    if any(c.isspace() for c in out):
        raise ValueError(f"whitespace in audio path {out!r}: Kaldi wav.scp cannot hold it")
    return out


def write_train_dir(out: Path, prompts: list[Prompt], absolute: bool) -> dict[str, int]:
    """data/train, data/dev: (prompt, bw) x (asr, st_fra), utt ids ``<base>_asr``/``<base>_st_fra``."""
    files, counts = new_files(), Counter()
    for p in prompts:
        for bw, wav in (("nb", p.nb_wav), ("wb", p.wb_wav)):
            base = utt_base(p.name, bw)
            for utt in add_recording(files, base, _wav_path(wav, absolute), bw, p.en, p.fr):
                counts[f"{utt.removeprefix(base + '_')}_{bw}"] += 1
    write_data_dir(out, files)
    return dict(counts)


def write_test_dir(out: Path, prompts: list[Prompt], bw: str, absolute: bool) -> None:
    """data/test_{nb,wb} (and dev_{nb,wb}): utt id ``<base>``, with the references text.asr and text.st_fra."""
    files = new_files()
    for p in prompts:
        if not p.fr:
            raise AssertionError(f"test prompt {p.name} has no French reference")
        wav = _wav_path(p.nb_wav if bw == "nb" else p.wb_wav, absolute)
        add_recording(files, utt_base(p.name, bw), wav, bw, p.en, p.fr, test=True)
    write_data_dir(out, files)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", default="data/local/asterisk/prompts.tsv", type=Path)
    parser.add_argument("--bandwidth", default="data/local/bandwidth/bandwidth.tsv", type=Path)
    parser.add_argument("--data_dir", default="data", type=Path)
    parser.add_argument("--local_dir", default="data/local", type=Path, help="skip log and summaries")
    parser.add_argument("--min_dur", default=0.2, type=float, help="seconds")
    parser.add_argument("--max_dur", default=8.0, type=float, help="seconds")
    parser.add_argument("--dev_frac", default=0.08, type=float)
    parser.add_argument("--test_frac", default=0.12, type=float)
    parser.add_argument("--train_only_families", default="digits,letters")
    parser.add_argument("--seed", default=777, type=int)
    parser.add_argument("--max_prompts", default=0, type=int, help="0 = all; else a small slice for CI")
    parser.add_argument("--abs_paths", action="store_true", help="absolute paths in wav.scp")
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    start = time.time()
    for path, stage in ((args.inventory, "local/fetch_asterisk.py"), (args.bandwidth, "local/make_bandwidth.py")):
        if not path.exists():
            logging.error("%s not found: run %s first", path, stage)
            return 1
    inventory = read_tsv(args.inventory)
    bandwidth = {r["name"]: r for r in read_tsv(args.bandwidth)}
    stale = sorted({r["name"] for r in inventory} ^ set(bandwidth))
    if stale:
        logging.error("%s does not match %s (%d names differ, e.g. %s): rerun stage 2 with --force",
                      args.bandwidth, args.inventory, len(stale), stale[:5])
        return 1
    nb_sources = {r["nb_source"] for r in bandwidth.values()}
    logging.info("%d inventory prompts; NB source: %s", len(inventory), ",".join(sorted(nb_sources)))

    kept, skips = filter_prompts(inventory, bandwidth, args.min_dur, args.max_dur)
    train_only = [f for f in args.train_only_families.split(",") if f]
    try:
        fam_split, unit_of = assign_families(kept, train_only, args.dev_frac, args.test_frac, args.seed)
    except ValueError as exc:
        logging.error("%s", exc)
        return 1

    by_split: dict[str, list[Prompt]] = defaultdict(list)
    for p in kept:
        p.split = fam_split[p.family]
        if p.split == "test" and not p.fr:
            skips.append(skip_record(p.name, "prompt", "test", "no_translation_test", p.fr_detail))
            continue
        by_split[p.split].append(p)
    by_split, dropped = take_slice({s: by_split.get(s, []) for s in SPLITS}, args.max_prompts, args.seed)
    for p in dropped:
        skips.append(skip_record(p.name, "prompt", p.split, "max_prompts_slice", f"--max_prompts {args.max_prompts}"))
    for s in ("train", "dev"):
        for p in by_split[s]:
            if not p.fr:
                skips.append(skip_record(p.name, "st_fra", s, "no_translation", p.fr_detail + "; ASR utterances kept"))
    for s in SPLITS:
        if not by_split[s]:
            logging.error("split %s is empty after filtering", s)
            return 1

    # a family is in one split by construction (fam_split maps each family to one split)
    fam_sets = {s: {p.family for p in by_split[s]} for s in SPLITS}

    summary: dict[str, object] = {"nb_source": ",".join(sorted(nb_sources)),
                                  "min_dur": args.min_dur, "max_dur": args.max_dur, "seed": args.seed}
    for s in ("train", "dev"):
        counts = write_train_dir(args.data_dir / s, by_split[s], args.abs_paths)
        summary[s] = {"prompts": len(by_split[s]), "families": len(fam_sets[s]), "utts": sum(counts.values()),
                      **counts, "minutes_per_bw": round(sum(p.duration for p in by_split[s]) / 60, 2)}
    for bw in ("nb", "wb"):
        write_test_dir(args.data_dir / f"test_{bw}", by_split["test"], bw, args.abs_paths)
    summary["test"] = {"prompts": len(by_split["test"]), "families": len(fam_sets["test"]),
                       "utts_per_set": len(by_split["test"]),
                       "minutes_per_bw": round(sum(p.duration for p in by_split["test"]) / 60, 2)}
    # train and dev in the test sets' layout: both references are needed, so a prompt without French is left out
    for s in ("train", "dev"):
        decodable = [p for p in by_split[s] if p.fr]
        for p in by_split[s]:
            if not p.fr:
                skips.append(skip_record(p.name, f"{s}_nb_wb", s, "no_translation", p.fr_detail))
        if decodable:
            for bw in ("nb", "wb"):
                write_test_dir(args.data_dir / f"{s}_{bw}", decodable, bw, args.abs_paths)
        summary[f"{s}_nb_wb"] = {"utts_per_set": len(decodable)}
    summary["max_duration_kept"] = round(max(p.duration for s in SPLITS for p in by_split[s]), 3)

    skip_counts = Counter((r["scope"], r["reason"]) for r in skips)
    summary["skipped"] = {f"{scope}:{reason}": n for (scope, reason), n in sorted(skip_counts.items())}
    write_tsv(args.local_dir / "skipped.tsv", SKIP_COLUMNS,
              sorted(skips, key=lambda r: (r["scope"], r["reason"], r["name"])))
    n_prompts, n_fr = Counter(p.family for p in kept), Counter(p.family for p in kept if p.fr)
    fam_rows = [{"family": fam, "unit": unit_of[fam], "split": fam_split[fam], "prompts": n_prompts[fam],
                 "with_fr": n_fr[fam]} for fam in sorted(fam_split)]
    write_tsv(args.local_dir / "split_families.tsv", ["family", "unit", "split", "prompts", "with_fr"], fam_rows)
    (args.local_dir / "split_summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    for (scope, reason), n in sorted(skip_counts.items()):
        logging.info("skipped %-8s %-26s %d", scope, reason, n)
    for s in SPLITS:
        logging.info("%-5s %s", s, summary[s])
    logging.info("longest kept utterance: %.2f s (set the S2T speech_length >= this)", summary["max_duration_kept"])
    logging.info("wrote %s/{train,dev,test_nb,test_wb,dev_nb,dev_wb,train_nb,train_wb} in %.1f s",
                 args.data_dir, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
