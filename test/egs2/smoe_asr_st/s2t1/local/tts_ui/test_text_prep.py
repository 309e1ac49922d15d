"""tts_ui text stage on handmade gettext catalogs (packed into .debs) and DDTP lists."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import polib
import pytest

from local.file_io import read_tsv
from local.tts_ui import prepare, text_prep

NOUNS = [("window", "fenêtre"), ("file", "fichier"), ("layer", "calque"), ("folder", "dossier"),
         ("image", "image"), ("page", "page"), ("table", "tableau"), ("track", "piste")]
VERBS = [("Open", "Ouvrir"), ("Close", "Fermer"), ("Delete", "Supprimer"), ("Move", "Déplacer")]
ADJS = [("current", "courant"), ("selected", "sélectionné"), ("hidden", "caché")]

# one bad entry per reason, present in every catalog (so the expected counts are known)
BAD_ENTRIES = [
    ("Could not open %s for reading now", "Impossible d'ouvrir %s en lecture", "format_specifier"),
    ("<b>Bold</b> text is shown here now", "Le texte <b>gras</b> est affiché ici", "markup"),
    ("_Save the document to the disk", "_Enregistrer le document sur le disque", "accelerator"),
    ("See https://example.org for all details", "Voir https://example.org pour les détails", "url"),
    ("Quit", "Quitter", "too_short"),
    ("Use 4 threads for the job please", "Utiliser 4 fils pour la tâche", "digits"),
]
# msgfmt/polib leave untranslated entries and the header out of a .mo: they never reach the filter
N_PACKAGES, CATALOGS_PER_PACKAGE, GOOD_PER_CATALOG = 4, 2, 12
SHARED = ("Open the current window again", "Ouvrir de nouveau la fenêtre courante")  # in every catalog


def good_pairs(cat_index: int) -> list[tuple[str, str]]:
    out = []
    for i in range(GOOD_PER_CATALOG):
        verb = VERBS[i % len(VERBS)]
        noun = NOUNS[(i + cat_index) % len(NOUNS)]
        adj = ADJS[i % len(ADJS)]
        out.append((f"{verb[0]} the {adj[0]} {noun[0]} of catalog {chr(97 + cat_index)} item {chr(97 + i)}",
                    f"{verb[1]} le {noun[1]} {adj[1]} du catalogue {chr(97 + cat_index)} élément {chr(97 + i)}"))
    return out


def make_mo(path: Path, pairs, plural=True) -> None:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": "fr"}
    for en, fr in pairs:
        po.append(polib.POEntry(msgid=en, msgstr=fr))
    if plural:
        po.append(polib.POEntry(msgid="One file was removed from here", msgid_plural="Many files were removed",
                                msgstr_plural={0: "Un fichier a été supprimé", 1: "Des fichiers ont été supprimés"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    po.save_as_mofile(str(path))


def build_deb(root: Path, package: str, files: dict[str, Path], out_dir: Path) -> Path:
    stage = root / f"stage-{package}"
    (stage / "DEBIAN").mkdir(parents=True)
    (stage / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.org>\n"
        "Description: test catalogs\n")
    for rel, src in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, stage / rel)
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(stage)
    return deb


DDTP_EN = """Package: foo
Description-md5: 0001
Description-en: simple tool to convert the pictures
 This tool converts all the pictures of a folder. It keeps the original
 pictures untouched.
 .
 It is fast and easy to use.

Package: bar
Description-md5: 0002
Description-en: library for reading the documents
 This library reads the documents of the office suite.
 .
 Second paragraph here that the French version lacks.

Package: baz
Description-md5: 0003
Description-en: only in English nobody translated it
 Nobody translated this description into French.
"""
DDTP_FR = """Package: foo
Description-md5: 0001
Description-fr: outil simple pour convertir les images
 Cet outil convertit toutes les images d'un dossier. Il laisse les images
 d'origine intactes.
 .
 Il est rapide et facile à utiliser.

Package: bar
Description-md5: 0002
Description-fr: bibliothèque pour lire les documents
 Cette bibliothèque lit les documents de la suite bureautique.
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts_ui_text_src")
    debs = root / "debs"
    packages = []
    cat = 0
    for p in range(N_PACKAGES):
        files = {}
        for c in range(CATALOGS_PER_PACKAGE):
            mo = root / f"mo{cat}.mo"
            make_mo(mo, good_pairs(cat) + [SHARED] + [(e, f) for e, f, _ in BAD_ENTRIES])
            files[f"usr/share/locale/fr/LC_MESSAGES/dom{c}.mo"] = mo
            cat += 1
        # other languages and fr_CA must be ignored
        other = root / f"other{p}.mo"
        make_mo(other, [("Open the hidden page of nothing", "Otro idioma que no cuenta aquí")], plural=False)
        files["usr/share/locale/es/LC_MESSAGES/dom0.mo"] = other
        files["usr/share/locale/fr_CA/LC_MESSAGES/dom0.mo"] = other
        packages.append(f"pkg{p}")
        build_deb(root, f"pkg{p}", files, debs)
    (root / "Translation-en").write_text(DDTP_EN)
    (root / "Translation-fr").write_text(DDTP_FR)
    return {"root": root, "debs": debs, "packages": packages,
            "ddtp": (root / "Translation-en", root / "Translation-fr")}


def run_text(sources, work: Path, seed=1, nj=1, num_train=40, num_dev=10, num_test=10, **kw):
    return text_prep.build_text(
        work, work / "cache", num_train=num_train, num_dev=num_dev, num_test=num_test, num_ddtp_test=10,
        seed=seed, nj=nj, packages=tuple(sources["packages"]), deb_dir=sources["debs"],
        ddtp_lists=sources["ddtp"], offline=True, **kw)


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    work = tmp_path_factory.mktemp("tts_ui_text")
    summary = run_text(sources, work, nj=2)
    return work, summary


def test_extract_only_french_catalogs(sources, tmp_path):
    deb = sorted(sources["debs"].glob("pkg0_*.deb"))[0]
    mos = text_prep.extract_mo(deb, tmp_path / "mo")
    assert [m.name for m in mos] == ["dom0.mo", "dom1.mo"]
    kept, skipped, n = text_prep.scan_catalog(mos[0])
    assert n == GOOD_PER_CATALOG + 1 + len(BAD_ENTRIES) + 1  # + shared + plural
    assert len(kept) == GOOD_PER_CATALOG + 1
    assert Counter(r for r, _, _ in skipped) == Counter([r for _, _, r in BAD_ENTRIES] + ["plural"])


def test_splits_share_no_catalog_and_no_sentence(built):
    work, summary = built
    rows = {s: read_tsv(work / "text" / f"{s}.tsv") for s in ("train", "dev", "test", "ddtp_test")}
    assert [len(rows[s]) for s in ("train", "dev", "test")] == [40, 10, 10]
    catalogs = {s: {r["catalog"] for r in rows[s]} for s in ("train", "dev", "test")}
    assert catalogs["train"] and catalogs["dev"] and catalogs["test"]
    assert not catalogs["train"] & catalogs["dev"]
    assert not catalogs["train"] & catalogs["test"]
    assert not catalogs["dev"] & catalogs["test"]
    # the catalog table says the same
    table = {r["catalog"]: r["split"] for r in read_tsv(work / "text" / "catalogs.tsv")}
    for split in ("train", "dev", "test"):
        assert {c for c, s in table.items() if s == split} >= catalogs[split]
    assert set(summary["splits"]["test"]["catalogs"]) == catalogs["test"]
    sentences = [r["en"].lower() for s in rows for r in rows[s]]
    assert len(sentences) == len(set(sentences))
    # text ids are unique and name their split
    assert all(r["text_id"].startswith(f"{s}-") for s in rows for r in rows[s])


def test_skipped_counted_with_reasons(built):
    work, summary = built
    n_catalogs = N_PACKAGES * CATALOGS_PER_PACKAGE
    skipped = read_tsv(work / "text" / "skipped.tsv")
    gettext = Counter(r["reason"] for r in skipped if r["source"] == "gettext")
    for _, _, reason in BAD_ENTRIES:
        assert gettext[reason] == n_catalogs, reason
    assert gettext["plural"] == n_catalogs
    assert gettext["duplicate"] == n_catalogs - 1  # SHARED kept once
    # nothing is dropped silently: every gettext entry is either in a split or in skipped.tsv
    total_entries = n_catalogs * (GOOD_PER_CATALOG + 1 + len(BAD_ENTRIES) + 1)
    in_splits = sum(len(read_tsv(work / "text" / f"{s}.tsv")) for s in ("train", "dev", "test"))
    assert in_splits + sum(gettext.values()) == total_entries
    assert summary["gettext_entries"] == total_entries
    assert summary["skipped"]["format_specifier"] == n_catalogs
    # the bad sentences are listed verbatim with their reason
    listed = {(r["en"], r["reason"]) for r in skipped}
    for en, _, reason in BAD_ENTRIES:
        assert (en, reason) in listed


def test_ddtp_alignment_and_reasons(built):
    work, _ = built
    ddtp = read_tsv(work / "text" / "ddtp_test.tsv")
    pairs = {r["en"]: r["fr"] for r in ddtp}
    assert pairs["This tool converts all the pictures of a folder."] == (
        "Cet outil convertit toutes les images d'un dossier.")
    assert pairs["It keeps the original pictures untouched."] == "Il laisse les images d'origine intactes."
    assert pairs["It is fast and easy to use."] == "Il est rapide et facile à utiliser."
    assert pairs["simple tool to convert the pictures"] == "outil simple pour convertir les images"
    assert all(r["catalog"] == "ddtp/foo" for r in ddtp)
    skipped = [r for r in read_tsv(work / "text" / "skipped.tsv") if r["source"] == "ddtp"]
    mismatch = [r["en"] for r in skipped if r["reason"] == "ddtp_paragraph_mismatch"]
    assert "This library reads the documents of the office suite." in mismatch
    assert "Second paragraph here that the French version lacks." in mismatch
    assert not any("Nobody translated" in r["en"] for r in ddtp)


def test_same_seed_same_lists_other_seed_differs(sources, built, tmp_path):
    work, _ = built
    again = run_text(sources, tmp_path / "again", seed=1, nj=1)
    other = run_text(sources, tmp_path / "other", seed=7, nj=1)
    for split in ("train", "dev", "test", "ddtp_test", "skipped", "catalogs"):
        assert (work / "text" / f"{split}.tsv").read_bytes() == (tmp_path / "again/text" / f"{split}.tsv").read_bytes()
    assert again["splits"] == json.loads((work / "text" / "counts.json").read_text())["splits"]
    differs = [s for s in ("train", "dev", "test")
               if (work / "text" / f"{s}.tsv").read_bytes() != (tmp_path / "other/text" / f"{s}.tsv").read_bytes()]
    assert differs, "a different seed should change the split or the sample"
    assert other["splits"]["train"]["sampled"] == 40


def test_resume_skips_finished_stage(sources, built, caplog):
    work, _ = built
    before = (work / "text" / "train.tsv").stat().st_mtime_ns
    run_text(sources, work, nj=2)
    assert (work / "text" / "train.tsv").stat().st_mtime_ns == before
    run_text(sources, work, nj=1, num_train=30)  # other options: redone
    assert len(read_tsv(work / "text" / "train.tsv")) == 30
    run_text(sources, work, nj=1)  # back to the original
    assert len(read_tsv(work / "text" / "train.tsv")) == 40


def test_interrupted_forced_rerun_is_not_taken_for_done(sources, tmp_path, monkeypatch):
    work = tmp_path / "work"
    run_text(sources, work)
    assert (work / "text" / ".done").exists()

    def broken_download(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(text_prep.debian.PrivateApt, "download", broken_download)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_text(sources, work, force=True)
    assert not (work / "text" / ".done").exists()  # the next run redoes the stage


def test_cli(sources, tmp_path):
    """The text stage alone through the corpus's one entry point."""
    report = prepare.main([
        "--stage", "text", "--stop_stage", "text", "--audio_dir", str(tmp_path / "a"),
        "--work_dir", str(tmp_path / "w"), "--cache_dir", str(tmp_path / "c"), "--offline",
        "--deb_dir", str(sources["debs"]), "--packages", *sources["packages"], "--ddtp_lists",
        *map(str, sources["ddtp"]), "--num_train", "20", "--num_dev", "5", "--num_test", "5", "--nj", "1",
        "--verbose", "0"])
    summary = report["text"]
    assert {s: v["sampled"] for s, v in summary["splits"].items()} == {
        "train": 20, "dev": 5, "test": 5, "ddtp_test": 4}


def test_assign_splits_caps_and_fallback():
    sizes = {"a": 100, "b": 3, "c": 4, "d": 5, "e": 200, "f": 6}
    got = text_prep.assign_splits(sizes, {"test": 8, "dev": 5}, seed=3)
    test = [c for c, s in got.items() if s == "test"]
    dev = [c for c, s in got.items() if s == "dev"]
    assert sum(sizes[c] for c in test) >= 8 and sum(sizes[c] for c in dev) >= 5
    assert "a" not in test + dev and "e" not in test + dev  # big catalogs stay in train
    assert got["a"] == got["e"] == "train"
