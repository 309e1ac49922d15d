"""Tests for local/split_data.py (stage 3): filtering, family split, Kaldi dirs."""

import json
import random

import pytest

from local import asterisk_data as ad
from local import split_data
from local.file_io import c_sorted, read_tsv

TRAIN_FILES = ["spk2utt", "text", "text.ctc", "text.prev", "utt2bw", "utt2spk", "wav.scp"]
TEST_FILES = sorted(TRAIN_FILES + ["text.asr", "text.st_fra"])


def name_of(utt):
    """en_nb_digits-1_asr -> digits-1 (flat name)."""
    base = utt[len("en_nb_"):]
    for suffix in ("_asr", "_st_fra"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def prompts_in(data, split):
    if split == "test":
        return {name_of(u) for u in read(data / "test_nb", "wav.scp")}
    return {name_of(u) for u in read(data / split, "wav.scp")}


def read(d, fname):
    out = {}
    for line in (d / fname).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        assert key not in out
        out[key] = value
    return out


def test_files_sorted_and_consistent(pipeline):
    data = pipeline["data"]
    for split, files in (("train", TRAIN_FILES), ("dev", TRAIN_FILES),
                         ("test_nb", TEST_FILES), ("test_wb", TEST_FILES),
                         ("dev_nb", TEST_FILES), ("dev_wb", TEST_FILES)):
        d = data / split
        assert sorted(p.name for p in d.iterdir()) == files
        utts = list(read(d, "wav.scp"))
        assert utts, split
        for fname in files:
            keys = [line.split(" ", 1)[0] for line in (d / fname).read_text().splitlines()]
            assert keys == c_sorted(keys) == c_sorted(utts), (split, fname)
            assert all("\t" not in line for line in (d / fname).read_text().splitlines())
        assert read(d, "utt2spk") == {u: u for u in utts}
        assert read(d, "spk2utt") == {u: u for u in utts}
        assert set(read(d, "text.prev").values()) == {"<na>"}
        for u, bw in read(d, "utt2bw").items():
            assert bw == ("<nb>" if u.startswith("en_nb_") else "<wb>")


def test_train_dev_text_formats(pipeline, fake):
    for split in ("train", "dev"):
        d = pipeline["data"] / split
        text, ctc, wav = read(d, "text"), read(d, "text.ctc"), read(d, "wav.scp")
        for u, t in text.items():
            if u.endswith("_asr"):
                assert t == "<eng><asr><notimestamps> " + ctc[u]
            else:
                assert u.endswith("_st_fra")
                assert t.startswith("<eng><st_fra><notimestamps> ") and len(t) > 28
                assert ctc[u] == ctc[u[: -len("_st_fra")] + "_asr"]
                assert wav[u] == wav[u[: -len("_st_fra")] + "_asr"]
            assert "[" not in t and "(note" not in t
        # every (prompt, bandwidth) twice, except prompts without French (ASR only)
        for u in text:
            if u.endswith("_asr") and name_of(u) not in {ad.flat_name(n) for n in fake.NO_FRENCH}:
                assert u[: -len("_asr")] + "_st_fra" in text
        for bw_a, bw_b in (("en_nb_", "en_wb_"), ("en_wb_", "en_nb_")):
            assert {u[6:] for u in text if u.startswith(bw_a)} == {u[6:] for u in text if u.startswith(bw_b)}


def test_normalised_texts(pipeline):
    ctc = {}
    ref_fr = {}
    for split in ("train", "dev", "test_wb"):
        ctc.update({name_of(u): t for u, t in read(pipeline["data"] / split, "text.ctc").items()})
    for split in ("train", "dev"):
        ref_fr.update({name_of(u): t.split(" ", 1)[1] for u, t in read(pipeline["data"] / split, "text").items()
                       if u.endswith("_st_fra")})
    ref_fr.update({name_of(u): t for u, t in read(pipeline["data"] / "test_wb", "text.st_fra").items()})
    assert ctc["letters-dot"] == "dot"
    assert ctc["spy-iax2"] == "IAX"
    assert ctc["vm-intro"] == "Please leave your message after the tone. When done hang up."
    assert ref_fr["vm-intro"] == "Laissez votre message après le bip. (ne m'appelez plus) Merci."
    assert ref_fr["vm-tocallback"] == "pour joindre la personne qui a envoyé ce message, appuyez sur 2"


def test_split_by_family(pipeline):
    data = pipeline["data"]
    original = {ad.flat_name(r["name"]): r["name"] for r in read_tsv(pipeline["inventory"])}
    fams = {s: {ad.prompt_family(original[n]) for n in prompts_in(data, s)} for s in ("train", "dev", "test")}
    assert all(fams.values())
    assert not fams["train"] & fams["dev"]
    assert not fams["train"] & fams["test"]
    assert not fams["dev"] & fams["test"]
    assert {"digits", "letters"} <= fams["train"]
    # families sharing a sentence ("Thank you.") are one unit
    units = {r["family"]: r for r in read_tsv(pipeline["local"] / "split_families.tsv")}
    assert units["auth"]["unit"] == units["privacy"]["unit"] == "auth+privacy"
    assert units["auth"]["split"] == units["privacy"]["split"]


def test_test_sets_pair_and_references(pipeline):
    nb, wb = pipeline["data"] / "test_nb", pipeline["data"] / "test_wb"
    nb_utts, wb_utts = read(nb, "wav.scp"), read(wb, "wav.scp")
    assert {u[6:] for u in nb_utts} == {u[6:] for u in wb_utts}
    assert all(u.startswith("en_nb_") for u in nb_utts) and all(u.startswith("en_wb_") for u in wb_utts)
    for d in (nb, wb):
        asr, st, ctc, text = read(d, "text.asr"), read(d, "text.st_fra"), read(d, "text.ctc"), read(d, "text")
        assert all(st.values()) and all(asr.values())
        assert asr == ctc
        assert text == {u: "<eng><asr><notimestamps> " + t for u, t in asr.items()}
    for u, path in nb_utts.items():
        assert "/nb/" in path and wb_utts["en_wb_" + u[6:]] == path.replace("/nb/", "/wb/")


@pytest.mark.parametrize("split", ["dev", "train"])
def test_split_in_the_test_layout(pipeline, tmp_path, split):
    """data/{dev,train}_{nb,wb}: every prompt of the split with French, once, with the split's references;
    the others logged."""
    out = tmp_path / "seed1"  # seed 1 puts agent-user (no French) in dev
    assert split_data.main(["--inventory", str(pipeline["inventory"]), "--bandwidth", str(pipeline["bandwidth"]),
                            "--min_dur", "0.2", "--max_dur", "2.5", "--seed", "1",
                            "--data_dir", str(out), "--local_dir", str(out / "local")]) == 0
    text, ctc = read(out / split, "text"), read(out / split, "text.ctc")
    with_fr = {name_of(u) for u in text if u.endswith("_st_fra")}
    without_fr = {name_of(u) for u in text} - with_fr
    assert with_fr, text
    # the fake inventory's two prompts without French: agent-user in dev, dir-welcome in train (seed 1)
    assert without_fr == {"dev": {"agent-user"}, "train": {"dir-welcome"}}[split], (with_fr, without_fr)
    for bw in ("nb", "wb"):
        d = out / f"{split}_{bw}"
        asr, st = read(d, "text.asr"), read(d, "text.st_fra")
        assert set(asr) == set(st) == {f"en_{bw}_{n}" for n in with_fr}
        for u in asr:
            assert asr[u] == ctc[u + "_asr"]
            assert text[u + "_st_fra"] == "<eng><st_fra><notimestamps> " + st[u]
            assert read(d, "wav.scp")[u] == read(out / split, "wav.scp")[u + "_asr"]
    left_out = [(r["name"], r["reason"]) for r in read_tsv(out / "local/skipped.tsv")
                if r["scope"] == f"{split}_nb_wb"]
    assert sorted(left_out) == sorted((n, "no_translation") for n in without_fr)
    summary = json.loads((out / "local/split_summary.json").read_text())
    assert summary[f"{split}_nb_wb"] == {"utts_per_set": len(with_fr)}


def test_every_prompt_accounted_for(pipeline, fake):
    """No silent drops: each inventory name is in a split or logged with a reason."""
    skipped = read_tsv(pipeline["local"] / "skipped.tsv")
    prompt_skips = {r["name"]: r["reason"] for r in skipped if r["scope"] == "prompt"}
    st_skips = {r["name"]: r["reason"] for r in skipped if r["scope"] == "st_fra"}
    kept = set()
    for s in ("train", "dev", "test"):
        kept |= prompts_in(pipeline["data"], s)
    names = {r["name"] for r in read_tsv(pipeline["inventory"])}
    for name in names:
        assert (ad.flat_name(name) in kept) != (name in prompt_skips), name
    for name, reason in fake.EXPECTED_PROMPT_SKIPS.items():
        assert prompt_skips.get(name) == reason, name
    for name in fake.NO_FRENCH:
        assert st_skips.get(name) == "no_translation" or prompt_skips.get(name) == "no_translation_test"
    summary = json.loads((pipeline["local"] / "split_summary.json").read_text())
    assert summary["skipped"]["prompt:corrupt_audio"] == 2
    assert summary["skipped"]["prompt:missing_audio"] == 1
    assert summary["max_duration_kept"] <= fake.MAX_DUR


def test_deterministic_and_sliced(pipeline, tmp_path):
    common = ["--inventory", str(pipeline["inventory"]), "--bandwidth", str(pipeline["bandwidth"]),
              "--min_dur", "0.2", "--max_dur", "2.5"]
    out = tmp_path / "again"
    assert split_data.main(common + ["--data_dir", str(out), "--local_dir", str(out / "local")]) == 0
    for d in ("train", "dev", "test_nb", "test_wb", "dev_nb", "dev_wb", "train_nb", "train_wb"):
        for f in (pipeline["data"] / d).iterdir():
            assert (out / d / f.name).read_text() == f.read_text()
    sliced = tmp_path / "sliced"
    assert split_data.main(common + ["--data_dir", str(sliced), "--local_dir", str(sliced / "local"),
                                     "--max_prompts", "4"]) == 0
    sizes = {s: len(prompts_in(sliced, s)) for s in ("train", "dev", "test")}
    assert all(sizes.values()) and sum(sizes.values()) == 4
    assert any(u.endswith("_st_fra") for u in read(sliced / "train", "text"))
    reasons = [r["reason"] for r in read_tsv(sliced / "local" / "skipped.tsv")]
    full = sum(len(prompts_in(pipeline["data"], s)) for s in ("train", "dev", "test"))
    assert reasons.count("max_prompts_slice") == full - 4


def make_prompts(n_families, per_family, seed=0):
    rng = random.Random(seed)
    prompts = []
    for f in range(n_families):
        for i in range(rng.randint(1, per_family)):
            name = f"fam{f:02d}-p{i}"
            prompts.append(split_data.Prompt(name, f"fam{f:02d}", f"sentence {f} {i}", "phrase", "",
                                             "nb.wav", "wb.wav", 1.0))
    for i in range(10):
        prompts.append(split_data.Prompt(f"digits/{i}", "digits", f"digit {i}", "chiffre", "", "a", "b", 0.5))
    return prompts


def test_assign_families_fractions_and_seed():
    prompts = make_prompts(60, 6)
    split, unit = split_data.assign_families(prompts, ["digits"], 0.1, 0.15, seed=3)
    assert split["digits"] == "train"
    counts = {s: sum(1 for p in prompts if split[p.family] == s) for s in ("train", "dev", "test")}
    total = len(prompts)
    assert 0.15 * total <= counts["test"] <= 0.15 * total * 1.25 + 1
    assert 0.1 * total <= counts["dev"] <= 0.1 * total * 1.25 + 1
    assert split_data.assign_families(prompts, ["digits"], 0.1, 0.15, seed=3)[0] == split
    assert split_data.assign_families(prompts, ["digits"], 0.1, 0.15, seed=4)[0] != split


def test_assign_families_too_few_families_is_an_error():
    prompts = make_prompts(1, 3)
    with pytest.raises(ValueError, match="non-empty"):
        split_data.assign_families(prompts, ["digits"], 0.1, 0.15, seed=0)


def test_missing_inputs_fail_clearly(tmp_path, caplog):
    rc = split_data.main(["--inventory", str(tmp_path / "nope.tsv"), "--bandwidth", str(tmp_path / "x.tsv")])
    assert rc == 1
    assert "run local/fetch_asterisk.py first" in caplog.text


def test_digits_and_letters_always_train():
    prompts = []
    for fam in [f"f{i}" for i in range(8)] + ["digits", "letters"]:
        for j in range(3):
            name = f"{fam}/{j}" if fam in ("digits", "letters") else f"{fam}-{j}"
            prompts.append(split_data.Prompt(name, fam, f"{fam} {j}", "fr", "", "a", "b", 1.0))
    free_placements = set()
    for seed in range(20):
        split, _ = split_data.assign_families(prompts, ["digits", "letters"], 0.1, 0.15, seed)
        assert split["digits"] == split["letters"] == "train"
        free, _ = split_data.assign_families(prompts, [], 0.1, 0.15, seed)
        free_placements |= {free["digits"], free["letters"]}
    assert free_placements != {"train"}  # without the rule they would move
