"""local/run_table.sh end to end on a slice of the real corpus: two variants, one seed.

The recipe runs in a scratch copy made of links to the checkout, as in test_run_sh.py
(data, exp, RESULTS.md and results/ land in tmp; downloads come from the shared cache).
The default run uses the Asterisk corpus: about 3.5 minutes on 2 cores (the data and the
two runs). The tts_ui corpus builds its TTS audio first, from Debian packages fetched into
the downloads cache on first use (minutes, and the network), so it runs only with
`./tools/test.sh -m slow` (22 min beside two trainings, 6.6 CPU-minutes). Test
sets that share keys, as tts_ui's do, are covered in CI by test_run_sh.py.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from espnet_smoe.reporter_stats import read_reporter_stats

VARIANTS = ("hard_sharing", "smoe_encdec")
METRICS = ("wer", "bleu", "chrf")
# A 1-epoch model never ends its hypotheses: cap them at 0.3 x the encoder frames. With
# --inference_nj 1 one decoding process per model decodes every test set and task (ESPnet imported once).
INFERENCE_ARGS = "--beam_size 2 --maxlenratio 0.3"
# 12-18 min on 2 cores: deselected by default (pytest.ini), run with `-m slow`.
TTS_UI = pytest.mark.slow


def driver(recipe: Path, *args: str, log_name: str = "run_table.log") -> tuple[int, str]:
    log = recipe / log_name
    with open(log, "w") as f:
        proc = subprocess.run(["local/run_table.sh", *args], cwd=recipe, stdout=f, stderr=subprocess.STDOUT)
    return proc.returncode, log.read_text()


def tiny_table(tmp_path_factory, scratch_recipe, corpus: str, run_args: str, *more: str) -> tuple[Path, str]:
    recipe = scratch_recipe(tmp_path_factory.mktemp(f"table_{corpus}"))
    code, text = driver(
        recipe, "--corpus", corpus, "--variants", " ".join(VARIANTS), "--seeds", "1", "--nj", "1",
        "--inference_nj", "1", "--run_args", run_args, "--s2t_args", "--max_epoch 1 --num_iters_per_epoch 8",
        "--inference_args", INFERENCE_ARGS, *more,
    )  # fmt: skip
    assert code == 0, text[-5000:]
    return recipe, text


@pytest.fixture(scope="module")
def asterisk_run(tmp_path_factory, scratch_recipe):
    # both runs side by side, one thread each
    return tiny_table(tmp_path_factory, scratch_recipe, "asterisk", "--max_prompts 24 --tts_ui_sizes '0 0 0'",
                      "--parallel_runs", "2")


@pytest.fixture(scope="module")
def tts_ui_run(tmp_path_factory, scratch_recipe):
    return tiny_table(tmp_path_factory, scratch_recipe, "tts_ui", "--max_prompts 24 --tts_ui_sizes '40 10 10'")


def _without_models(folder, names):
    """copytree filter: drop model files and decodes, keep checkpoint.pth (the table reads its reporter)."""
    skip = shutil.ignore_patterns("*.pth", "decode_*", "tensorboard", "images")(folder, names)
    return skip - {"checkpoint.pth"}


def check_table(table_dir: Path, groups: list[str], prefix: str) -> dict:
    """Every column has a value for both variants; header and outputs are there."""
    table = json.loads((table_dir / "table.json").read_text())
    assert [r["variant"] for r in table["rows"]] == list(VARIANTS)
    keys = [c["key"] for c in table["columns"]]
    assert keys == [f"{g}.{m}_{bw}" for g in groups for m in METRICS for bw in ("nb", "wb")]
    for row in table["rows"]:
        assert row["runs_with_results"] == 1
        assert row["exp_dirs"] == {"1": f"exp/{prefix}{row['variant']}_seed1"}
        for key in keys:
            cell = row["cells"][key]
            assert cell["n"] == 1 and cell["mean"] is not None and cell["std"] is None, key
        assert row["total_params"] >= row["active_params"] > 0
        assert row["step_time"]["mean"] > 0 and row["step_time_ratio"] > 0
        assert row["epochs"] == {"1": 1}
        # the best dev accuracy of the run's own reporter (checkpoint.pth), in %
        stats = read_reporter_stats(table_dir.parents[1] / row["exp_dirs"]["1"])
        best = 100.0 * max(epoch["valid"]["acc"] for epoch in stats.values())
        assert row["valid_acc"]["n"] == 1 and row["valid_acc"]["mean"] == pytest.approx(best)
    hard, smoe = table["rows"]
    assert hard["step_time_ratio"] == pytest.approx(1.0)
    assert hard["total_params"] == hard["active_params"] == smoe["active_params"]
    assert smoe["total_params"] > smoe["active_params"]
    assert table["warnings"] == []
    head = table["header"]
    assert head["command"].startswith("local/run_table.sh --") and "--seeds 1" in head["command"]
    assert "cores" in head["machine"]["cpu"] and head["machine"]["gpu"] and head["git_revision"]
    md = (table_dir / "table.md").read_text()
    assert f"- command: `{head['command']}`" in md
    assert f"- git revision: `{head['git_revision']}`" in md
    assert "|hard sharing|" in md and "|S-MoE enc+dec|" in md and "1.00x" in md
    assert (table_dir / "table.png").read_bytes()[:4] == b"\x89PNG"
    return table


def test_asterisk_table_has_every_column(asterisk_run):
    recipe, text = asterisk_run
    check_table(recipe / "exp/table_asterisk", ["test"], "")
    assert "Stage 1: data, tokens and stats" in text
    assert "hard_sharing_seed1 done" in text and "smoe_encdec_seed1 done" in text
    # --parallel_runs 2: the second run started before the first one ended, each on one thread
    started = text.index("smoe_encdec_seed1: train, decode")
    assert started < text.index("hard_sharing_seed1 done"), text
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # nproc / --parallel_runs
    assert text.count(f"OMP_NUM_THREADS={threads}\n") == 2, text
    # the driver's stage 1 is run.sh's data stages up to the feature stats, its stage 2 the rest
    data_log = (recipe / "exp/table_asterisk/logs/data.log").read_text()
    assert "Stage 10: feature statistics" in data_log and "Stage 11:" not in data_log
    for variant in VARIANTS:
        config = (recipe / f"exp/{variant}_seed1/config.yaml").read_text()
        assert "\nseed: 1\n" in config and "\nmax_epoch: 1\n" in config  # the driver's seed wins
        run_log = (recipe / f"exp/table_asterisk/logs/{variant}_seed1.log").read_text()
        assert "Stage 11: train" in run_log and "Stage 14: pack" in run_log and "Stage 10:" not in run_log


def test_finished_runs_are_skipped(asterisk_run):
    recipe, _ = asterisk_run
    code, text = driver(recipe, "--corpus", "asterisk", "--variants", " ".join(VARIANTS), "--seeds", "1",
                        "--stage", "2", "--stop_stage", "2", log_name="skip.log")  # fmt: skip
    assert code == 0, text
    assert text.count("results.json exists; skipped") == 2


def test_kept_runs_are_restored_instead_of_trained(asterisk_run):
    """--keep (default true) put each finished run's small files in results/runs/;
    on a machine that has lost exp/<run> (another machine: data rebuilt from the repository), stage 2
    restores the runs from there instead of training them, and the table is the same."""
    recipe, _ = asterisk_run
    kept = recipe / "results/runs"
    assert sorted(p.name for p in kept.iterdir()) == sorted(f"{v}_seed1" for v in VARIANTS)
    assert not list(kept.rglob("*.pth")) and sum(f.stat().st_size for f in kept.rglob("*")) < 1_000_000
    for variant in VARIANTS:
        (recipe / f"exp/{variant}_seed1").rename(recipe / f"exp/lost_{variant}")
    try:
        code, text = driver(recipe, "--corpus", "asterisk", "--variants", " ".join(VARIANTS), "--seeds", "1",
                            "--stage", "2", "--name", "kept", log_name="kept.log")  # fmt: skip
        assert code == 0, text
        assert text.count("restored from results/runs/") == 2, text
        assert text.count("results.json exists; skipped") == 2 and "train, decode" not in text, text
        again = json.loads((recipe / "exp/table_kept/table.json").read_text())
        original = json.loads((recipe / "exp/table_asterisk/table.json").read_text())
        assert again["rows"] == original["rows"] and again["significance"] == original["significance"]
    finally:
        for variant in VARIANTS:
            shutil.rmtree(recipe / f"exp/{variant}_seed1", ignore_errors=True)
            (recipe / f"exp/lost_{variant}").rename(recipe / f"exp/{variant}_seed1")


def test_publish_writes_results_section_and_copies(asterisk_run):
    recipe, _ = asterisk_run
    (recipe / "RESULTS.md").write_text("# RESULTS\n\nmain run\n")
    args = ["--corpus", "asterisk", "--variants", " ".join(VARIANTS), "--seeds", "1", "--stage", "3",
            "--name", "ci", "--publish", "true"]  # fmt: skip
    for _ in range(2):  # the second run replaces the section
        code, text = driver(recipe, *args, log_name="publish.log")
        assert code == 0, text
    md = (recipe / "RESULTS.md").read_text()
    assert md.startswith("# RESULTS\n\nmain run\n")
    assert md.count("<!-- table:table_ci begin -->") == 1 and md.count("<!-- table:table_ci end -->") == 1
    assert "(results/table_ci.png)" in md and "--publish true" in md
    published = json.loads((recipe / "results/table_ci.json").read_text())
    assert published == json.loads((recipe / "exp/table_ci/table.json").read_text())
    assert (recipe / "results/table_ci.png").stat().st_size > 10_000


def test_also_against_reaches_the_table(asterisk_run):
    """--also_against names more baselines: the table holds every variant against each."""
    recipe, _ = asterisk_run
    other = VARIANTS[-1]
    code, text = driver(recipe, "--corpus", "asterisk", "--variants", " ".join(VARIANTS), "--seeds", "1",
                        "--stage", "3", "--name", "also", "--also_against", other, log_name="also.log")
    assert code == 0, text
    table = json.loads((recipe / "exp/table_also/table.json").read_text())
    assert [o["baseline"] for o in table["also_against"]] == [other]
    assert set(table["also_against"][0]["rel_wer_change"]) == set(VARIANTS)
    assert table["also_against"][0]["rel_wer_change"][other] == {g: 0.0 for g in table["rows"][0]["rel_wer_change"]}


def test_tts_ui_run_names_are_found(asterisk_run):
    """Stage 3 with --corpus tts_ui reads exp/tts_ui_<variant>_seed<seed> (run.sh's prefix)."""
    recipe, _ = asterisk_run
    for variant in VARIANTS:
        shutil.copytree(recipe / f"exp/{variant}_seed1", recipe / f"exp/tts_ui_{variant}_seed1",
                        ignore=_without_models)
    code, text = driver(recipe, "--variants", " ".join(VARIANTS), "--seeds", "1", "--stage", "3",
                        log_name="tts_ui_stage3.log")  # fmt: skip
    assert code == 0, text
    check_table(recipe / "exp/table_tts_ui", ["test"], "tts_ui_")


def test_failed_run_is_reported_and_the_table_still_written(asterisk_run):
    recipe, _ = asterisk_run
    # seed 7 of hard_sharing fails in run.sh's stage 11 (training): its stats file is gone from this copy
    stats = next((recipe / "exp").glob("stats_asterisk_bpe*"))
    hidden = recipe / "exp/stats_hidden"
    stats.rename(hidden)
    try:
        code, text = driver(recipe, "--corpus", "asterisk", "--variants", "hard_sharing", "--seeds", "1 7",
                            "--stage", "2", "--name", "fail", log_name="fail.log")  # fmt: skip
    finally:
        hidden.rename(stats)
    assert code == 1
    assert "hard_sharing_seed7 FAILED" in text and "failed runs: hard_sharing_seed7" in text
    table = json.loads((recipe / "exp/table_fail/table.json").read_text())
    assert table["rows"][0]["runs_with_results"] == 1
    assert any("hard_sharing_seed7: no results.json" in w for w in table["warnings"])


def test_unknown_variant_fails_early(tmp_path, scratch_recipe):
    recipe = scratch_recipe(tmp_path)
    code, text = driver(recipe, "--variants", "hard_sharing nope", "--seeds", "1")
    assert code == 1 and "no config conf/tuning/train_nope_tiny.yaml" in text
    assert not (recipe / "data").exists()


@TTS_UI
def test_tts_ui_table_has_every_column(tts_ui_run):
    recipe, _ = tts_ui_run
    check_table(recipe / "exp/table_tts_ui", ["tts_ui_test", "ddtp_test", "test"], "tts_ui_")
