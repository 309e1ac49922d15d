"""run.sh end to end on a slice of the real corpus: every stage, tiny model.

The recipe runs in a scratch copy made of links to the checkout (so data,
exp and downloads land in tmp), from the Asterisk download to packed.zip.
"""

import json
import subprocess

import pytest


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, scratch_recipe):
    root = tmp_path_factory.mktemp("recipe")
    recipe = scratch_recipe(root)
    log = root / "run.log"
    with open(log, "w") as f:
        proc = subprocess.run(
            ["./run.sh", "--max_prompts", "24", "--nj", "2", "--train_args", "--max_epoch 2",
             "--inference_args", "--beam_size 2"],
            cwd=recipe, stdout=f, stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    return recipe, text


def test_every_stage_ran(recipe_run):
    _, text = recipe_run
    for stage in range(1, 10):
        assert f"Stage {stage}:" in text


def test_results_hold_wer_and_bleu_for_both_bandwidths(recipe_run):
    recipe, _ = recipe_run
    exp = recipe / "exp/train_smoe_encdec_tiny"
    results = json.loads((exp / "results.json").read_text())["results"]
    got = {(r["task"], r["bandwidth"]): r for r in results}
    assert set(got) == {("asr", "nb"), ("asr", "wb"), ("st_fra", "nb"), ("st_fra", "wb")}
    for bw in ("nb", "wb"):
        assert 0.0 <= got[("asr", bw)]["wer"] and got[("asr", bw)]["num_utts"] > 0
        assert 0.0 <= got[("st_fra", bw)]["bleu"] <= 100.0
    md = (exp / "RESULTS.md").read_text()
    assert "WER" in md and "BLEU" in md


def test_model_info_and_package(recipe_run):
    recipe, _ = recipe_run
    exp = recipe / "exp/train_smoe_encdec_tiny"
    info = json.loads((exp / "model_info.json").read_text())
    assert info["total_params"] > info["active_params"] > 0
    assert info["encoder"] == "smoe_conformer"
    assert (exp / "packed.zip").stat().st_size > 10_000


def test_data_prep_logged_its_skips(recipe_run):
    recipe, _ = recipe_run
    skipped = (recipe / "data/local/skipped.tsv").read_text().splitlines()
    assert len(skipped) > 1  # header + the slice's skipped prompts, each with a reason
