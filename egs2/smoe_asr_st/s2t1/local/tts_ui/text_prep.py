"""tts_ui text stage: human en->fr sentence pairs from Debian gettext catalogs and DDTP.

Sources
  * gettext: the French ``.mo`` catalogs of the packages in GETTEXT_PACKAGES (``apt-get download``
    into ``<cache_dir>/debs``, nothing installed); one catalog = one ``<package>/<domain>.mo``.
  * DDTP: Debian package-description translations (``Translation-en`` / ``Translation-fr`` lists
    of a private ``apt-get update``), aligned by Description-md5, paragraph and sentence.

Every candidate goes through ``speakable.check_pair``; exact duplicates (case/punctuation
insensitive) are dropped, the first occurrence in catalog order wins (gettext before DDTP).
Catalogs are then assigned whole to test, dev, train (so no catalog is shared) and each split
is sampled to its requested size. DDTP is an out-of-domain test set (``ddtp_test``).

Outputs in ``--work_dir``: ``text/{train,dev,test,ddtp_test}.tsv`` (text_id, catalog, en, fr),
``text/skipped.tsv`` (every dropped candidate with its reason), ``text/catalogs.tsv`` and
``text/counts.json``.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import polib

from local import debian
from local.file_io import write_tsv
from local.stage import mark_done, stage_done, start_stage
from local.tts_ui.common import parallel_map, utt_rng
from local.tts_ui.speakable import REASONS, check_pair, dedup_key

LANG = "fr"
GETTEXT_PACKAGES = (
    "libreoffice-l10n-fr", "gimp", "gimp-data", "inkscape", "gnucash-common", "evolution-common",
    "evolution-data-server-common", "gnome-control-center-data", "nautilus-data", "vlc-l10n",
    "libgtk-3-common", "libgtk-4-common", "gnome-shell-common", "gnome-software-common",
    "audacity-data", "gramps", "gcc-12-locales", "util-linux-locales", "libc-l10n", "krita-l10n",
    "plasma-workspace-data", "kdenlive-data", "gnome-terminal-data", "rhythmbox-data", "totem-common",
    "shotwell-common", "gedit-common", "evince-common", "darktable", "digikam-data", "scribus-data",
    "hugin-data",
)
DDTP_CATALOG = "ddtp"
# reasons added by this stage on top of speakable.REASONS
EXTRA_REASONS = ("ddtp_paragraph_mismatch", "ddtp_sentence_mismatch", "duplicate", "not_sampled")
SKIP_HEADER = ("source", "catalog", "reason", "en", "fr")


# ----------------------------------------------------------------------------- gettext
def extract_mo(deb: Path, out_dir: Path, lang: str = LANG) -> list[Path]:
    """Write the ``<lang>/LC_MESSAGES/*.mo`` files of a .deb into ``out_dir`` (cached)."""
    out_dir = Path(out_dir)
    stamp = out_dir / ".extracted"
    if stamp.exists() and stamp.read_text().strip() == Path(deb).name:
        return sorted(out_dir.glob("*.mo"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.mo"):
        old.unlink()
    written, names = [], Counter()  # names: how often each .mo name came up (a repeat gets a suffix)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and member.name.endswith(".mo") and parts[-3:-1] == (lang, "LC_MESSAGES"):
                    stem = Path(member.name).stem
                    names[stem] += 1
                    name = stem if names[stem] == 1 else f"{stem}.{names[stem]}"
                    target = out_dir / f"{name}.mo"
                    target.write_bytes(tar.extractfile(member).read())
                    written.append(target)
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise debian.DebianError(f"dpkg-deb --fsys-tarfile {deb} failed (rc={proc.returncode})")
    stamp.write_text(Path(deb).name + "\n")
    return sorted(written)


def scan_catalog(mo_path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]], int]:
    """(kept (en, fr) pairs in catalog order, skipped (reason, en, fr), number of entries)."""
    kept, skipped = [], []
    entries = polib.mofile(str(mo_path))
    for entry in entries:
        plural = bool(entry.msgid_plural)
        fr = entry.msgstr_plural.get(0, "") if plural else entry.msgstr
        reason, en_n, fr_n = check_pair(entry.msgid, fr, plural=plural)
        if reason is None:
            kept.append((en_n, fr_n))
        else:
            skipped.append((reason, entry.msgid, fr))
    return kept, skipped, len(entries)


def _scan_package(job: tuple[str, str, str, str]) -> list[dict]:
    """Worker: extract one package's catalogs and filter them."""
    package, deb, mo_root, lang = job
    results = []
    for mo in extract_mo(Path(deb), Path(mo_root) / package, lang):
        kept, skipped, n = scan_catalog(mo)
        results.append({"catalog": f"{package}/{mo.stem}", "kept": kept, "skipped": skipped, "entries": n})
    return results


# ----------------------------------------------------------------------------- DDTP
def parse_translation_list(text: str, lang: str) -> dict[str, tuple[str, list[str]]]:
    """{Description-md5: (package, description lines)} from a Translation-<lang> list."""
    out = {}
    field = f"Description-{lang}:"
    for record in text.split("\n\n"):
        package = md5 = None
        lines: list[str] = []
        in_desc = False
        for line in record.splitlines():
            if in_desc and line.startswith(" "):  # a continuation line of the description
                lines.append(line)
                continue
            in_desc = line.startswith(field)
            if in_desc:
                lines = [line[len(field):].strip()]
            elif line.startswith("Package:"):
                package = line.split(":", 1)[1].strip()
            elif line.startswith("Description-md5:"):
                md5 = line.split(":", 1)[1].strip()
        if md5 and lines and md5 not in out:
            out[md5] = (package or "", lines)
    return out


_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[«\"'(]?[A-ZÀ-ÖØ-Ý])")
_BULLET = re.compile(r"^\s*(?:[*+o-]|\d+[.)])\s+")


def description_blocks(lines: list[str]) -> list[list[str]]:
    """Description lines -> paragraphs -> text blocks (synopsis first; each list item a block)."""
    paragraphs: list[list[str]] = [[lines[0].strip()]] if lines and lines[0].strip() else []
    current: list[str] = []
    for raw in lines[1:]:
        if raw.strip() == ".":
            paragraphs.append(_blocks(current))
            current = []
        else:
            current.append(raw[1:] if raw.startswith(" ") else raw)
    if current:
        paragraphs.append(_blocks(current))
    return [p for p in paragraphs if p]


def _blocks(par_lines: list[str]) -> list[str]:
    """Join the wrapped lines of a paragraph; a verbatim (indented) or bulleted line starts a block."""
    blocks: list[list[str]] = []
    for line in par_lines:
        if not blocks or line.startswith(" ") or _BULLET.match(line):
            blocks.append([_BULLET.sub("", line).strip()])
        else:
            blocks[-1].append(line.strip())
    return [" ".join(b).strip() for b in blocks if " ".join(b).strip()]


def split_sentences(block: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT.split(block) if s.strip()]


def align_ddtp(
    en_list: dict[str, tuple[str, list[str]]], fr_list: dict[str, tuple[str, list[str]]]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]], dict]:
    """Align descriptions translated into French: ((package, en, fr) pairs, skipped, stats)."""
    pairs, skipped = [], []
    stats = Counter()
    for md5 in sorted(fr_list):
        if md5 not in en_list:
            stats["ddtp_fr_without_en"] += 1
            continue
        package, en_lines = en_list[md5]
        _, fr_lines = fr_list[md5]
        stats["ddtp_descriptions"] += 1
        en_pars, fr_pars = description_blocks(en_lines), description_blocks(fr_lines)
        if len(en_pars) != len(fr_pars) or any(len(a) != len(b) for a, b in zip(en_pars, fr_pars)):
            for block in (b for p in en_pars for b in p):
                for s in split_sentences(block):
                    skipped.append(("ddtp_paragraph_mismatch", package, s, ""))
            continue
        for en_par, fr_par in zip(en_pars, fr_pars):
            for en_block, fr_block in zip(en_par, fr_par):
                en_s, fr_s = split_sentences(en_block), split_sentences(fr_block)
                if len(en_s) != len(fr_s):
                    for s in en_s:
                        skipped.append(("ddtp_sentence_mismatch", package, s, fr_block))
                    continue
                for e, f in zip(en_s, fr_s):
                    pairs.append((package, e, f))
    stats["ddtp_en_only_descriptions"] = len(set(en_list) - set(fr_list))
    return pairs, skipped, dict(stats)


# ----------------------------------------------------------------------------- splits
def assign_splits(sizes: dict[str, int], targets: dict[str, int], seed: int) -> dict[str, str]:
    """Assign whole catalogs to test, dev (in that order) and train.

    Catalogs are visited in a seeded random order; test and dev take catalogs no larger than
    half their target (so at least two catalogs feed each) until they hold their target, then
    the smallest remaining ones if that was not enough. All other catalogs go to train.
    """
    order = sorted(c for c, n in sizes.items() if n > 0)
    rng = utt_rng(seed, "assign_splits")
    order = [order[i] for i in rng.permutation(len(order))]
    assignment: dict[str, str] = {}
    for split in ("test", "dev"):
        target = targets.get(split, 0)
        if target <= 0:
            continue
        cap, pool = max(1, target // 2), 0
        for catalog in order:
            if pool >= target:
                break
            if catalog not in assignment and sizes[catalog] <= cap:
                assignment[catalog] = split
                pool += sizes[catalog]
        for catalog in sorted((c for c in order if c not in assignment), key=lambda c: (sizes[c], c)):
            if pool >= target:
                break
            # keep at least one catalog for train
            if sum(1 for c in order if c not in assignment) <= 1:
                break
            assignment[catalog] = split
            pool += sizes[catalog]
    for catalog in order:
        assignment.setdefault(catalog, "train")
    return assignment


def sample_split(pool: list[tuple], num: int, seed: int, split: str) -> tuple[list[tuple], list[tuple]]:
    """Seeded sample of ``num`` items (in pool order); returns (sampled, not sampled)."""
    if num >= len(pool):
        return list(pool), []
    rng = utt_rng(seed, "sample", split)
    chosen = set(rng.choice(len(pool), size=num, replace=False).tolist())
    return [p for i, p in enumerate(pool) if i in chosen], [p for i, p in enumerate(pool) if i not in chosen]


# ----------------------------------------------------------------------------- main
def build_text(work_dir: Path, cache_dir: Path, num_train: int, num_dev: int, num_test: int, num_ddtp_test: int,
               seed: int = 1, nj: int = 1, packages: tuple[str, ...] = GETTEXT_PACKAGES, ddtp: bool = True,
               deb_dir: Path | None = None, ddtp_lists: tuple[Path, Path] | None = None, offline: bool = False,
               apt: debian.PrivateApt | None = None, force: bool = False) -> dict:
    """Run the text stage; returns the counts summary (also in text/counts.json)."""
    t0 = time.time()
    work_dir, cache_dir = Path(work_dir), Path(cache_dir)
    out = work_dir / "text"
    deb_dir = Path(deb_dir) if deb_dir else cache_dir / "debs"
    config = dict(num_train=num_train, num_dev=num_dev, num_test=num_test, num_ddtp_test=num_ddtp_test,
                  seed=seed, packages=list(packages), ddtp=ddtp, lang=LANG,
                  ddtp_lists=[str(p) for p in ddtp_lists] if ddtp_lists else None)
    stamp = out / ".done"
    if not force and stage_done(stamp, config):  # stage_done logs that the stage is skipped
        return json.loads((out / "counts.json").read_text())
    start_stage(stamp)  # a --force rerun that is interrupted must not leave the old marker behind

    apt = apt or debian.PrivateApt(cache_dir / "apt", languages=("en", LANG))
    # 1. fetch
    debs = apt.download(packages, deb_dir, offline) if packages else {}

    # 2. extract + filter, one package per job
    jobs = [(p, str(d), str(cache_dir / "mo" / LANG), LANG) for p, d in sorted(debs.items())]
    catalogs: dict[str, dict] = {}
    for results in parallel_map(_scan_package, jobs, nj, desc="gettext catalogs", unit="pkg", chunksize=1):
        for r in results:
            catalogs[r["catalog"]] = r
    logging.info("read %d catalogs from %d packages (%d entries)", len(catalogs), len(debs),
                 sum(r["entries"] for r in catalogs.values()))

    skipped: list[tuple[str, str, str, str, str]] = []
    reasons = Counter()
    per_catalog: dict[str, Counter] = defaultdict(Counter)

    def skip(source: str, catalog: str, reason: str, en: str, fr: str) -> None:
        # every dropped candidate: listed in skipped.tsv, counted per reason and per catalog (DDTP as one)
        skipped.append((source, catalog, reason, en, fr))
        reasons[reason] += 1
        per_catalog[DDTP_CATALOG if source == "ddtp" else catalog][reason] += 1

    for name in sorted(catalogs):
        for reason, en, fr in catalogs[name]["skipped"]:
            skip("gettext", name, reason, en, fr)

    # 3. DDTP
    ddtp_pairs, ddtp_stats = [], {}
    if ddtp:
        en_path, fr_path = ddtp_lists or (apt.translation_list("en", offline), apt.translation_list(LANG, offline))
        logging.info("DDTP: aligning %s with %s", Path(en_path).name, Path(fr_path).name)
        en_list = parse_translation_list(debian.read_list_file(en_path), "en")
        fr_list = parse_translation_list(debian.read_list_file(fr_path), LANG)
        aligned, ddtp_skipped, ddtp_stats = align_ddtp(en_list, fr_list)
        for reason, package, en, fr in ddtp_skipped:
            skip("ddtp", f"{DDTP_CATALOG}/{package}", reason, en, fr)
        for package, en, fr in aligned:
            reason, en_n, fr_n = check_pair(en, fr)
            if reason is None:
                ddtp_pairs.append((package, en_n, fr_n))
            else:
                skip("ddtp", f"{DDTP_CATALOG}/{package}", reason, en, fr)
        logging.info("DDTP: %d descriptions in both languages, %d aligned sentences, %d speakable",
                     ddtp_stats.get("ddtp_descriptions", 0), len(aligned), len(ddtp_pairs))

    # 4. dedup: catalogs in name order, then DDTP (pooled under DDTP_CATALOG)
    seen: set[str] = set()
    pools: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # pool -> (catalog, en, fr)
    candidates = [(name, name, en, fr) for name in sorted(catalogs) for en, fr in catalogs[name]["kept"]]
    candidates += [(DDTP_CATALOG, f"{DDTP_CATALOG}/{package}", en, fr) for package, en, fr in ddtp_pairs]
    for pool, catalog, en, fr in candidates:
        key = dedup_key(en)
        if key in seen:
            skip("ddtp" if pool == DDTP_CATALOG else "gettext", catalog, "duplicate", en, fr)
            continue
        seen.add(key)
        pools[pool].append((catalog, en, fr))
    ddtp_pool = pools.pop(DDTP_CATALOG, [])

    # 5. split by catalog, then sample
    sizes = {name: len(pools[name]) for name in catalogs}
    assignment = assign_splits(sizes, {"test": num_test, "dev": num_dev}, seed)
    split_pools: dict[str, list[tuple[str, str, str]]] = {"train": [], "dev": [], "test": []}
    for name in sorted(pools):
        if name in assignment:  # catalogs left empty by the filter belong to no split
            split_pools[assignment[name]].extend(pools[name])
    split_pools["ddtp_test"] = ddtp_pool
    wanted = {"train": num_train, "dev": num_dev, "test": num_test, "ddtp_test": num_ddtp_test if ddtp else 0}
    sampled_per_catalog = Counter()
    summary_splits = {}
    for split, pool in split_pools.items():
        chosen, rest = sample_split(pool, wanted[split], seed, split)
        if len(chosen) < wanted[split]:
            logging.warning("%s: only %d pairs available, %d requested", split, len(chosen), wanted[split])
        for catalog, en, fr in rest:
            skip("ddtp" if split == "ddtp_test" else "gettext", catalog, "not_sampled", en, fr)
        rows = [(f"{split}-{i:06d}", catalog, en, fr) for i, (catalog, en, fr) in enumerate(chosen)]
        write_tsv(out / f"{split}.tsv", ("text_id", "catalog", "en", "fr"), rows)
        sampled_per_catalog.update(DDTP_CATALOG if split == "ddtp_test" else catalog for catalog, _, _ in chosen)
        summary_splits[split] = {
            "catalogs": [DDTP_CATALOG] if split == "ddtp_test" else sorted({c for c, _, _ in pool}),
            "pool": len(pool), "sampled": len(chosen), "requested": wanted[split],
        }
        logging.info("%-9s: %3d catalogs, %6d speakable pairs, %6d sampled (requested %d)", split,
                     len(summary_splits[split]["catalogs"]), len(pool), len(chosen), wanted[split])

    write_tsv(out / "skipped.tsv", SKIP_HEADER, skipped)
    skip_counts = {name: " ".join(f"{r}={c[r]}" for r in sorted(c)) for name, c in per_catalog.items()}
    catalog_rows = [(name, assignment.get(name, "-"), catalogs[name]["entries"], len(catalogs[name]["kept"]),
                     sizes[name], sampled_per_catalog[name], skip_counts.get(name, "")) for name in sorted(catalogs)]
    if ddtp:
        catalog_rows.append((DDTP_CATALOG, "ddtp_test", "-", len(ddtp_pairs), len(ddtp_pool),
                             sampled_per_catalog[DDTP_CATALOG], skip_counts.get(DDTP_CATALOG, "")))
    write_tsv(out / "catalogs.tsv",
              ("catalog", "split", "entries", "speakable", "after_dedup", "sampled", "skipped"), catalog_rows)
    for reason in sorted(reasons, key=lambda r: -reasons[r]):
        logging.info("skipped %-22s %7d", reason, reasons[reason])
    summary = {
        "splits": summary_splits,
        "skipped": {r: reasons[r] for r in (*REASONS, *EXTRA_REASONS) if reasons[r]},
        "skipped_total": len(skipped),
        "catalogs": len(catalogs),
        "gettext_entries": sum(r["entries"] for r in catalogs.values()),
        "ddtp": ddtp_stats,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "counts.json").write_text(json.dumps(summary, indent=1) + "\n")
    mark_done(stamp, config, {k: v["sampled"] for k, v in summary_splits.items()})
    logging.info("text stage done in %.1f s: %s", time.time() - t0,
                 ", ".join(f"{k}={v['sampled']}" for k, v in summary_splits.items()))
    return summary
