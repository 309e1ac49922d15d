"""Tests for local/fetch_asterisk.py (stage 1) on a synthetic corpus."""

import shutil
import time

import pytest
import soundfile as sf

from local import fetch_asterisk
from local.file_io import read_tsv


def inventory(paths):
    return {r["name"]: r for r in read_tsv(paths["inventory"])}


def test_inventory_lists_every_name(pipeline, fake):
    rows = inventory(pipeline)
    en_names = {line.split(":", 1)[0] for line in fake.EN_TRANSCRIPT.splitlines() if ":" in line}
    fr_names = {line.split(":", 1)[0] for line in fake.FR_TRANSCRIPT.splitlines() if ":" in line}
    expected = en_names | fr_names | set(fake.AUDIO_DURATIONS)
    assert set(rows) == expected
    assert rows["orphan-audio"]["en_entry"] == "0" and rows["orphan-audio"]["wav8k"]
    assert rows["missing-audio"]["en_entry"] == "1" and not rows["missing-audio"]["wav8k"]
    assert rows["fr-only"]["en_entry"] == "0" and rows["fr-only"]["fr_entry"] == "1"
    assert rows["agent-user"]["fr_entry"] == "0"
    assert rows["dir-welcome"]["fr_entry"] == "1" and rows["dir-welcome"]["fr_text"] == ""
    # raw text is kept; normalisation happens in stage 3
    assert rows["letters/dot"]["en_text"] == "dot [.]"
    assert rows["vm-tocallback"]["fr_text"].startswith("pour joindre la personne qui a envoyé")


def test_corrupt_files_are_flagged_not_dropped(pipeline):
    rows = inventory(pipeline)
    assert rows["corrupt-wav"]["problem"] == "corrupt_wav8k"
    assert rows["corrupt-g722"]["problem"] == "corrupt_g722"
    assert "empty G.722 file" in rows["corrupt-g722"]["detail"]
    flagged = {n for n, r in rows.items() if r["problem"]}
    assert flagged == {"corrupt-wav", "corrupt-g722"}


def test_g722_decoded_to_16k_twice_the_samples(pipeline, fake):
    rows = inventory(pipeline)
    checked = 0
    for name, r in rows.items():
        if not (r["wav8k"] and r["wav16k"]) or r["problem"]:
            continue
        nb, wb = sf.info(r["wav8k"]), sf.info(r["wav16k"])
        assert (nb.samplerate, wb.samplerate, wb.channels, wb.subtype) == (8000, 16000, 1, "PCM_16")
        assert wb.frames == 2 * nb.frames
        assert float(r["dur8k"]) == pytest.approx(fake.AUDIO_DURATIONS[name], abs=1e-3)
        assert float(r["dur16k"]) == pytest.approx(float(r["dur8k"]), abs=1e-3)
        checked += 1
    assert checked == len(fake.AUDIO_DURATIONS) - 2  # all but the two corrupt ones


def test_rerun_is_a_no_op(pipeline):
    inv = pipeline["inventory"]
    before = inv.stat().st_mtime_ns
    time.sleep(0.01)
    assert fetch_asterisk.main(["--db", str(pipeline["tree"]), "--out_dir", str(pipeline["asterisk"])]) == 0
    assert inv.stat().st_mtime_ns == before


def test_from_debs_matches_tree(pipeline, fake, tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not available")
    debs = fake.build_debs(pipeline["tree"], tmp_path / "debs")
    out = tmp_path / "asterisk"
    assert fetch_asterisk.main(["--db", str(debs), "--out_dir", str(out)]) == 0
    from_debs = {r["name"]: r for r in read_tsv(out / "prompts.tsv")}
    from_tree = inventory(pipeline)
    assert set(from_debs) == set(from_tree)
    for name in from_tree:
        for key in ("en_entry", "en_text", "fr_entry", "fr_text", "dur8k", "dur16k", "problem"):
            assert from_debs[name][key] == from_tree[name][key], (name, key)
    assert "unpacked/debian/usr/share/asterisk/sounds/en_US_f_Allison" in from_debs["vm-goodbye"]["wav8k"]


def test_upstream_tarballs_by_url(pipeline, fake, tmp_path):
    tarballs = fake.build_tarballs(pipeline["tree"], tmp_path / "mirror")
    out, dl = tmp_path / "asterisk", tmp_path / "downloads"
    assert fetch_asterisk.main(["--source", "upstream", "--upstream_url", tarballs.as_uri(),
                                "--download_dir", str(dl), "--out_dir", str(out)]) == 0
    assert sorted(p.name for p in dl.glob("*.tar.gz")) == sorted(p.name for p in tarballs.glob("*.tar.gz"))
    rows = {r["name"]: r for r in read_tsv(out / "prompts.tsv")}
    assert set(rows) == set(inventory(pipeline))
    assert rows["digits/1"]["wav8k"].endswith("unpacked/upstream/en/digits/1.wav")
    assert rows["vm-goodbye"]["fr_text"] == "Au revoir!"
    # a db folder holding the same tarballs works too
    out2 = tmp_path / "asterisk2"
    assert fetch_asterisk.main(["--db", str(tarballs), "--out_dir", str(out2)]) == 0
    assert (out2 / "prompts.tsv").read_text().count("\n") == (out / "prompts.tsv").read_text().count("\n")


def test_missing_transcript_is_a_clear_error(fake, tmp_path):
    tree = tmp_path / "tree"
    sounds = tree / fake.SOUNDS_SUBDIR
    fake.write_prompt_audio(sounds, "vm-goodbye", 0.3, seed=1)
    (tree / fake.EN_DOC).parent.mkdir(parents=True)
    (tree / fake.EN_DOC).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="core-sounds-fr"):
        fetch_asterisk.main(["--db", str(tree), "--out_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / ".done").exists()


def test_find_audio_dir_prefers_english(tmp_path):
    for sub in ("fr_FR_f_Sylvie", "en_US_f_Allison", "en_US_f_Allison/digits"):
        d = tmp_path / sub
        d.mkdir(parents=True)
        (d / "x.wav").write_bytes(b"")
    assert fetch_asterisk.find_audio_dir([tmp_path], "wav").name == "en_US_f_Allison"
