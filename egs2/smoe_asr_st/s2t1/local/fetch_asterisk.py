#!/usr/bin/env python3
"""Stage 1: obtain the Asterisk core sounds (en audio + en/fr transcripts), decode G.722.

Sources, in this order (``--source auto``):

1. ``--db DIR`` (``ASTERISK=`` in db.sh) when not empty: a folder holding the four
   Debian .debs, or the upstream ``asterisk-core-sounds-*-<version>.tar.gz``
   tarballs, or an already unpacked tree (e.g. a Debian root, or the folder of an
   installed system, ``/usr/share``).  Unpacked trees are read in place.
2. ``apt-get download`` of the four packages WITHOUT installing them
   (``local.debian.PrivateApt``: a private apt state under ``<download_dir>/apt``).
3. The upstream tarballs by URL (``--upstream_url``; en-wav, en-g722, fr-wav).
   Their transcripts ``core-sounds-en.txt``/``core-sounds-fr.txt`` lie at the
   top of the tarballs.

Outputs under ``--out_dir`` (default ``data/local/asterisk``):

* ``unpacked/``: unpacked packages/tarballs (not for an in-place db tree);
* ``wb16k/<name>.wav``: the G.722 files decoded to 16 kHz mono PCM16;
* ``prompts.tsv``: one row per prompt name seen anywhere (English transcript,
  French transcript, .wav or .g722 list), with columns ``name, en_entry,
  en_text, fr_entry, fr_text, wav8k, g722, wav16k, dur8k, dur16k, problem,
  detail``.  Texts are the raw transcript text (tabs removed); normalisation
  happens in stage 3.  ``problem`` is empty or one of ``corrupt_wav8k``,
  ``corrupt_g722``; nothing is dropped here;
* ``.done``: stage marker (``local.stage``); a second run with the same source
  options does nothing (``--force`` redoes the work).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from local import debian
from local.asterisk_data import SUBFOLDER_FAMILIES, clean_field, parse_transcript
from local.file_io import display_path, write_tsv
from local.log import setup_logging
from local.stage import mark_done, stage_done, start_stage

PACKAGES = ("asterisk-core-sounds-en", "asterisk-core-sounds-en-wav", "asterisk-core-sounds-en-g722",
            "asterisk-core-sounds-fr")
DEFAULT_VERSION = "1.6.1"
DEFAULT_UPSTREAM_URL = "https://downloads.asterisk.org/pub/telephony/sounds/releases"
# upstream tarball part -> subfolder of unpacked/upstream it is extracted into
UPSTREAM_PARTS = {"en-wav": "en", "en-g722": "en", "fr-wav": "fr"}
PROMPT_COLUMNS = ["name", "en_entry", "en_text", "fr_entry", "fr_text", "wav8k", "g722", "wav16k", "dur8k", "dur16k",
                  "problem", "detail"]


# --------------------------------------------------------------------------- unpacking
def find_tarballs(folder: Path) -> dict[str, Path]:
    """Upstream part -> newest-looking tarball in folder."""
    hits = {part: sorted(folder.glob(f"asterisk-core-sounds-{part}-*.tar.gz")) for part in UPSTREAM_PARTS}
    return {part: paths[-1] for part, paths in hits.items() if paths}


def _fresh_root(found: dict[str, Path], wanted, what: str, root: Path) -> Path:
    """An empty ``root`` to unpack into, once every ``wanted`` file is ``found``."""
    missing = [p for p in wanted if p not in found]
    if missing:
        raise FileNotFoundError(f"missing {what} for {missing}")
    if root.exists():
        shutil.rmtree(root)
    return root


def unpack_debs(debs: dict[str, Path], unpack_dir: Path) -> Path:
    root = _fresh_root(debs, PACKAGES, ".deb", unpack_dir / "debian")
    logging.info("unpacking %s into %s", ", ".join(str(debs[p]) for p in PACKAGES), root)
    return debian.unpack_prefix([debs[p] for p in PACKAGES], root)


def unpack_tarballs(tarballs: dict[str, Path], unpack_dir: Path) -> Path:
    root = _fresh_root(tarballs, UPSTREAM_PARTS, "upstream tarball(s)", unpack_dir / "upstream")
    for part, sub in tqdm(UPSTREAM_PARTS.items(), desc="unpack tarballs", unit="tar"):
        dest = root / sub
        dest.mkdir(parents=True, exist_ok=True)
        logging.info("extracting %s -> %s", tarballs[part], dest)
        with tarfile.open(tarballs[part], "r:gz") as tar:
            if part.startswith("fr"):
                # only the French transcript is needed, not the French audio
                members = [m for m in tar.getmembers() if Path(m.name).name.startswith("core-sounds-fr.txt")]
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, filter="data")
    return root


# --------------------------------------------------------------------------- downloading
def upstream_download(download_dir: Path, base_url: str, version: str) -> dict[str, Path]:
    download_dir.mkdir(parents=True, exist_ok=True)
    for part in UPSTREAM_PARTS:
        name = f"asterisk-core-sounds-{part}-{version}.tar.gz"
        dest, tmp = download_dir / name, download_dir / f"{name}.part"
        if dest.exists():
            logging.info("already downloaded: %s", dest)
            continue
        url = f"{base_url.rstrip('/')}/{name}"
        logging.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)  # an interrupted download leaves a .part, never a truncated tarball
    return find_tarballs(download_dir)


# --------------------------------------------------------------------------- locating
def find_transcript(roots: list[Path], lang: str) -> Path:
    names = {f"core-sounds-{lang}.txt", f"core-sounds-{lang}.txt.gz"}
    hits: list[Path] = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            hits.extend(Path(dirpath) / f for f in files if f in names)
    if not hits:
        raise FileNotFoundError(f"core-sounds-{lang}.txt[.gz] not found under {[str(r) for r in roots]}")
    hits.sort()
    if len(hits) > 1:
        logging.warning("several %s transcripts, using %s: %s", lang, hits[0], [str(h) for h in hits])
    return hits[0]


def find_audio_dir(roots: list[Path], ext: str, transcript: Path | None = None) -> Path:
    """The English sounds folder holding *.<ext> files (digits/ etc. are inside it)."""
    candidates: dict[Path, int] = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            d = Path(dirpath)
            if d.name in SUBFOLDER_FAMILIES:
                continue
            n = sum(1 for f in files if f.endswith("." + ext))
            if n:
                candidates[d] = n
    if not candidates:
        raise FileNotFoundError(f"no *.{ext} files under {[str(r) for r in roots]}")

    # an English folder (en, en_US_f_Allison, ...), else the transcript's folder, else the only one
    preferred = [d for d in candidates if d.name == "en" or d.name.startswith(("en_", "en-"))]
    if not preferred and transcript is not None:
        preferred = [d for d in candidates if d == transcript.parent]
    if not preferred and len(candidates) == 1:
        preferred = list(candidates)
    if not preferred:
        raise FileNotFoundError(f"cannot tell which folder holds the English *.{ext} files: "
                                f"{sorted(map(str, candidates))}")
    best = max(sorted(preferred), key=lambda d: candidates[d])
    logging.info("English *.%s folder: %s (%d top-level files)", ext, best, candidates[best])
    return best


def list_audio(audio_dir: Path, ext: str) -> dict[str, Path]:
    """Prompt name (relative path without extension, '/'-separated) -> file."""
    paths = sorted(p for p in audio_dir.rglob(f"*.{ext}") if p.is_file())
    return {path.relative_to(audio_dir).with_suffix("").as_posix(): path for path in paths}


# --------------------------------------------------------------------------- decoding
def decode_g722_file(src: Path, dst: Path) -> int:
    """Decode one G.722 (64 kbit/s) file to 16 kHz PCM16 wav; returns the sample count."""
    import G722  # local import: only this stage needs the codec

    data = src.read_bytes()
    if not data:
        raise ValueError("empty G.722 file")
    pcm = np.frombuffer(G722.G722(16000, 64000).decode(data), dtype=np.int16)
    if pcm.size == 0:
        raise ValueError("G.722 decoder returned no samples")
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), pcm, 16000, subtype="PCM_16")
    return int(pcm.size)


# --------------------------------------------------------------------------- main
def obtain_sources(args) -> tuple[list[Path], str]:
    """Returns the roots to search and a description of the source."""
    unpack_dir = args.out_dir / "unpacked"
    db = Path(args.db) if args.db else None
    source = ("db" if db else "apt") if args.source == "auto" else args.source
    if source == "db":
        if db is None or not db.is_dir():
            raise FileNotFoundError(f"--db {args.db!r} is not a folder")
        # package name -> newest-looking .deb in db (exact package-name match)
        debs = {pkg: deb for pkg in PACKAGES if (deb := debian.cached_deb(db, pkg))}
        tarballs = find_tarballs(db)
        if debs:
            logging.info("db %s: %d .deb file(s)", db, len(debs))
            return [unpack_debs(debs, unpack_dir)], f"db-debs:{db}"
        if tarballs:
            logging.info("db %s: %d upstream tarball(s)", db, len(tarballs))
            return [unpack_tarballs(tarballs, unpack_dir)], f"db-tarballs:{db}"
        logging.info("db %s: reading an unpacked tree in place", db)
        return [db], f"db-tree:{db}"
    if source == "apt":
        try:
            debs = debian.PrivateApt(args.download_dir / "apt").download(PACKAGES, args.download_dir)
            return [unpack_debs(debs, unpack_dir)], "apt"
        except Exception as exc:  # noqa: BLE001 - any apt failure -> next source
            if args.source == "apt":
                raise
            logging.warning("apt-get download failed (%s); trying the upstream tarballs", exc)
            source = "upstream"
    if source == "upstream":
        logging.info("fetching upstream tarballs (version %s) from %s", args.version, args.upstream_url)
        tarballs = upstream_download(args.download_dir, args.upstream_url, args.version)
        return [unpack_tarballs(tarballs, unpack_dir)], f"upstream:{args.upstream_url}"
    raise ValueError(f"unknown source {source}")


def build_inventory(roots: list[Path], out_dir: Path) -> tuple[list[dict[str, object]], dict[str, int]]:
    en_txt, fr_txt = find_transcript(roots, "en"), find_transcript(roots, "fr")
    (en_entries, en_stats), (fr_entries, fr_stats) = parse_transcript(en_txt), parse_transcript(fr_txt)
    logging.info("English transcript %s: %s", en_txt, en_stats)
    logging.info("French transcript %s: %s", fr_txt, fr_stats)
    wav_dir, g722_dir = find_audio_dir(roots, "wav", en_txt), find_audio_dir(roots, "g722", en_txt)
    wavs, g722s = list_audio(wav_dir, "wav"), list_audio(g722_dir, "g722")
    logging.info("audio: %d .wav (8 kHz) in %s, %d .g722 in %s", len(wavs), wav_dir, len(g722s), g722_dir)

    names = sorted(set(en_entries) | set(fr_entries) | set(wavs) | set(g722s))
    rows: list[dict[str, object]] = []
    counts = {"prompts": len(names), "corrupt_wav8k": 0, "corrupt_g722": 0, "decoded": 0}
    wb_dir = out_dir / "wb16k"
    for name in tqdm(names, desc="decode G.722 / check wav", unit="prompt"):
        row: dict[str, object] = {**dict.fromkeys(PROMPT_COLUMNS, ""), "name": name}
        for lang, entries in (("en", en_entries), ("fr", fr_entries)):
            row[f"{lang}_entry"] = int(name in entries)
            row[f"{lang}_text"] = clean_field(entries[name].raw) if name in entries else ""
        problems: list[tuple[str, str]] = []
        if name in wavs:
            row["wav8k"] = display_path(wavs[name])
            try:
                info = sf.info(str(wavs[name]))
                if info.samplerate != 8000 or info.channels != 1 or info.frames == 0:
                    raise ValueError(f"expected 8 kHz mono, got {info.samplerate} Hz x{info.channels}, "
                                     f"{info.frames} frames")
                row["dur8k"] = info.frames / info.samplerate
            except Exception as exc:  # noqa: BLE001 - recorded, never dropped
                problems.append(("corrupt_wav8k", f"{type(exc).__name__}: {exc}"))
        if name in g722s:
            row["g722"] = display_path(g722s[name])
            dst = wb_dir / f"{name}.wav"
            try:
                n = decode_g722_file(g722s[name], dst)
                row["wav16k"] = display_path(dst)
                row["dur16k"] = n / 16000
                counts["decoded"] += 1
            except Exception as exc:  # noqa: BLE001
                problems.append(("corrupt_g722", f"{type(exc).__name__}: {exc}"))
        if problems:
            row["problem"] = problems[0][0]
            row["detail"] = clean_field("; ".join(f"{k}: {v}" for k, v in problems))
            for key, _ in problems:
                counts[key] += 1
            logging.warning("%s: %s", name, row["detail"])
        rows.append(row)

    counts.update(
        en_entries=len(en_entries), fr_entries=len(fr_entries), wav_files=len(wavs), g722_files=len(g722s),
        en_entry_without_audio=sum(1 for n in en_entries if n not in wavs and n not in g722s),
        audio_without_en_entry=sum(1 for n in set(wavs) | set(g722s) if n not in en_entries),
        wav_without_g722=sum(1 for n in wavs if n not in g722s),
        g722_without_wav=sum(1 for n in g722s if n not in wavs),
        fr_only_entries=sum(1 for n in fr_entries if n not in en_entries),
    )
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="", help="ASTERISK folder from db.sh ('' = download)")
    p.add_argument("--download_dir", default="downloads", type=Path)
    p.add_argument("--out_dir", default="data/local/asterisk", type=Path)
    p.add_argument("--source", default="auto", choices=["auto", "db", "apt", "upstream"])
    p.add_argument("--version", default=DEFAULT_VERSION, help="upstream tarball version")
    p.add_argument("--upstream_url", default=DEFAULT_UPSTREAM_URL)
    p.add_argument("--force", action="store_true", help="redo even if the .done marker exists")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    start = time.time()
    out_dir: Path = args.out_dir
    marker, inventory = out_dir / ".done", out_dir / "prompts.tsv"
    config = {"db": args.db, "source": args.source, "version": args.version, "upstream_url": args.upstream_url}
    if not args.force and stage_done(marker, config, [inventory]):
        return 0
    start_stage(marker)
    roots, source = obtain_sources(args)
    rows, counts = build_inventory(roots, out_dir)
    write_tsv(inventory, PROMPT_COLUMNS, rows)
    for rate in ("8k", "16k"):
        seconds = sum(float(r[f"dur{rate}"]) for r in rows if r[f"dur{rate}"] != "")
        counts[f"total_dur{rate}_min"] = round(seconds / 60, 2)
    for key, value in counts.items():
        logging.info("  %-24s %s", key, value)
    logging.info("wrote %s (%d rows) from %s in %.1f s", inventory, len(rows), source, time.time() - start)
    mark_done(marker, config, {"source": source, **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
