"""Tests for local/make_table.py: mean/spread over seeds, step-time ratio, columns,
missing values, header, chart and the RESULTS.md section."""

import json
import math

import pytest
import torch

from local import make_table


def write_checkpoint(exp_dir, epochs, valid_extra=None):
    """checkpoint.pth with ESPnet's reporter state: epochs are (train_time, valid acc, total_count);
    valid_extra: epoch -> more [valid] values (e.g. loss_att_asr)."""
    stats = {
        epoch: {"train": {"train_time": t, "acc": 0.999, "loss": 74.2, "total_count": count,
                          "time": {"__timedelta_seconds__": 50.0}},
                "valid": {"acc": acc, "loss": 82.8, "total_count": 10, "time": {"__timedelta_seconds__": 2.1},
                          **(valid_extra or {}).get(epoch, {})}}
        for epoch, (t, acc, count) in enumerate(epochs, 1)
    }  # fmt: skip
    torch.save({"model": {}, "reporter": {"stats": stats, "epoch": len(epochs)}}, exp_dir / "checkpoint.pth")

# variant -> seed -> scores; two test-set groups (tts_ui_test, test), both bandwidths.
SCORES = {
    "hard_sharing": {
        "1": {"wer": (10.0, 20.0), "bleu": (15.0, 25.0), "chrf": (40.0, 50.0)},
        "2": {"wer": (12.0, 22.0), "bleu": (17.0, 27.0), "chrf": (42.0, 54.0)},
    },
    "smoe_encdec": {
        "1": {"wer": (8.0, 18.0), "bleu": (18.0, 28.0), "chrf": (45.0, 55.0)},
        "2": {"wer": (9.0, 17.0), "bleu": (20.0, 30.0), "chrf": (47.0, 57.0)},
    },
}
# variant -> seed -> per-epoch train_time (s/iter)
STEP_TIMES = {
    "hard_sharing": {"1": [0.5, 0.7], "2": [0.4, 0.6]},  # means 0.6, 0.5 -> 0.55
    "smoe_encdec": {"1": [0.6, 0.8], "2": [0.5, 0.7]},  # means 0.7, 0.6 -> 0.65
}
# variant -> seed -> per-epoch [valid] acc; the best epoch counts (not the last)
VALID_ACCS = {
    "hard_sharing": {"1": [0.30, 0.40], "2": [0.35, 0.30]},  # best 40, 35 -> 37.5 %
    "smoe_encdec": {"1": [0.42, 0.45], "2": [0.47, 0.40]},  # best 45, 47 -> 46 %
}
PARAMS = {
    "hard_sharing": {"total_params": 5_000_000, "active_params": 5_000_000},
    "smoe_encdec": {"total_params": 7_000_000, "active_params": 5_000_000, "expert_params": 4_000_000},
}
GROUPS = {"tts_ui_test": 0.0, "test": 5.0}  # the Asterisk test set is 5 points worse


def write_run(exp_dir, variant, seed, results=True, model_info=True, checkpoint=True):
    exp_dir.mkdir(parents=True)
    if results:
        rows = []
        for group, delta in GROUPS.items():
            for i, bw in enumerate(("nb", "wb")):
                s = SCORES[variant][seed]
                test_set = f"{group}_{bw}"
                rows.append({"test_set": test_set, "bandwidth": bw, "task": "asr", "num_utts": 7,
                             "wer": s["wer"][i] + delta, "cer": 1.0})
                rows.append({"test_set": test_set, "bandwidth": bw, "task": "st_fra", "num_utts": 7,
                             "bleu": s["bleu"][i] - delta, "chrf": s["chrf"][i] - delta})
        env = {"hostname": "vm", "cpu": "Test CPU (2 cores)", "gpu": "none", "git_revision": "abc"}
        (exp_dir / "results.json").write_text(json.dumps({"tag": exp_dir.name, "environment": env,
                                                          "results": rows}))
    if model_info:
        (exp_dir / "model_info.json").write_text(json.dumps(PARAMS[variant]))
    if checkpoint:
        epochs = zip(STEP_TIMES[variant][seed], VALID_ACCS[variant][seed], (100, 200))
        write_checkpoint(exp_dir, list(epochs))
    return exp_dir


@pytest.fixture
def exps(tmp_path):
    for variant in SCORES:
        for seed in ("1", "2"):
            write_run(tmp_path / "exp" / f"tts_ui_{variant}_seed{seed}", variant, seed)
    return tmp_path


def run_table(root, *extra, variants="hard_sharing smoe_encdec", seeds="1 2"):
    out = root / "exp/table_t"
    code = make_table.main([
        "--exp_template", str(root / "exp/tts_ui_{variant}_seed{seed}"), "--variants", variants,
        "--seeds", seeds, "--out_dir", str(out), "--command", "local/run_table.sh --seeds '1 2'", *extra,
    ])  # fmt: skip
    table = json.loads((out / "table.json").read_text()) if code == 0 else None
    return code, out, table


def row(table, variant):
    return next(r for r in table["rows"] if r["variant"] == variant)


def test_mean_and_sample_std_over_seeds(exps):
    code, _, table = run_table(exps)
    assert code == 0
    cell = row(table, "hard_sharing")["cells"]["tts_ui_test.wer_nb"]
    assert cell["mean"] == pytest.approx(11.0)
    assert cell["std"] == pytest.approx(math.sqrt(2.0))  # n-1: values 10, 12
    assert (cell["min"], cell["max"], cell["n"]) == (10.0, 12.0, 2)
    assert cell["values"] == {"1": 10.0, "2": 12.0}
    chrf = row(table, "smoe_encdec")["cells"]["test.chrf_wb"]
    assert chrf["mean"] == pytest.approx(51.0) and chrf["std"] == pytest.approx(math.sqrt(2.0))
    assert table["spread"]["shown"] == "std"


def test_step_time_ratio_to_hard_sharing(exps):
    _, _, table = run_table(exps, variants="smoe_encdec hard_sharing")  # baseline not first
    assert table["baseline"] == "hard_sharing"
    hard, smoe = row(table, "hard_sharing"), row(table, "smoe_encdec")
    assert hard["step_time"]["mean"] == pytest.approx(0.55)
    assert smoe["step_time"]["values"] == {"1": pytest.approx(0.7), "2": pytest.approx(0.6)}
    assert smoe["step_time_ratio"] == pytest.approx(0.65 / 0.55)
    assert hard["step_time_ratio"] == pytest.approx(1.0)
    assert [r["variant"] for r in table["rows"]] == ["smoe_encdec", "hard_sharing"]
    assert smoe["epochs"] == {"1": 2, "2": 2} and smoe["iterations"] == {"1": 200, "2": 200}
    assert table["training_budget"] == [[2, 200]]


def test_best_dev_accuracy_over_epochs_then_mean_over_seeds(exps):
    _, out, table = run_table(exps)
    hard, smoe = row(table, "hard_sharing"), row(table, "smoe_encdec")
    assert hard["valid_acc"]["values"] == {"1": pytest.approx(40.0), "2": pytest.approx(35.0)}
    assert hard["valid_acc"]["mean"] == pytest.approx(37.5)
    assert smoe["valid_acc"]["mean"] == pytest.approx(46.0)
    assert smoe["valid_acc"]["std"] == pytest.approx(math.sqrt(2.0))
    md = (out / "table.md").read_text()
    assert "|dev acc (%)|" in md and "|37.50 ± 3.54|5.00M|5.00M|1.00x (0.550 s)|" in md


def test_every_column_present_in_json_and_markdown(exps):
    _, out, table = run_table(exps)
    keys = [c["key"] for c in table["columns"]]
    expected = [f"{g}.{m}_{bw}" for g in ("tts_ui_test", "test") for m in ("wer", "bleu", "chrf")
                for bw in ("nb", "wb")]  # fmt: skip
    assert keys == expected
    for r in table["rows"]:
        assert set(r["cells"]) == set(expected)
        assert r["total_params"] and r["active_params"]
    md = (out / "table.md").read_text()
    for label in ("ASR WER NB (%)", "ASR WER WB (%)", "ST BLEU NB", "ST BLEU WB", "ST chrF NB", "ST chrF WB",
                  "dev acc (%)", "total params", "active params", "step time vs hard sharing"):
        assert md.count(f"|{label}|") == 2, label  # one table per test-set group
    assert "### tts_ui test (held-out voices)" in md and "### Asterisk test (real speech)" in md
    assert "|hard sharing|11.00 ± 1.41|21.00 ± 1.41|" in md
    assert "|S-MoE enc+dec|" in md and "|46.00 ± 1.41|7.00M|5.00M|1.18x (0.650 s)|" in md
    assert md.count("|rel. WER vs hard sharing|") == 2 and md.count("|1.00x (0.550 s)|baseline|") == 2
    assert "|5.00M|5.00M|1.00x (0.550 s)|" in md
    assert "sample standard deviation" in md
    assert "tts_ui_test_nb: 7 utts" in md


def test_png_written(exps):
    _, out, _ = run_table(exps)
    png = (out / "table.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "![" in (out / "table.md").read_text() and "(table.png)" in (out / "table.md").read_text()


def test_header_has_command_machine_and_revision(exps):
    _, out, table = run_table(exps)
    head = table["header"]
    assert head["command"] == "local/run_table.sh --seeds '1 2'"
    assert head["machine"]["cpu"] and "cores" in head["machine"]["cpu"]
    assert head["machine"]["gpu"]
    assert head["git_revision"]
    assert head["runs_scored_on"][0]["cpu"] == "Test CPU (2 cores)"
    md = (out / "table.md").read_text()
    assert "- command: `local/run_table.sh --seeds '1 2'`" in md
    assert f"- machine: `{head['machine']['cpu']}`; GPU: `{head['machine']['gpu']}`" in md
    assert f"- git revision: `{head['git_revision']}`" in md
    assert "scored on `Test CPU (2 cores)`" in md  # the runs' machine differs from this one
    assert head["note"] is None and "- note:" not in md


def test_note_in_header(exps):
    _, out, table = run_table(exps, "--note", "CPU-sized: 1 seed, 4 epochs")
    assert table["header"]["note"] == "CPU-sized: 1 seed, 4 epochs"
    assert "- note: CPU-sized: 1 seed, 4 epochs\n" in (out / "table.md").read_text()


def test_missing_values_are_dashes_and_warnings(tmp_path):
    write_run(tmp_path / "exp/tts_ui_hard_sharing_seed1", "hard_sharing", "1")
    write_run(tmp_path / "exp/tts_ui_hard_sharing_seed2", "hard_sharing", "2", results=False)
    write_run(tmp_path / "exp/tts_ui_smoe_encdec_seed1", "smoe_encdec", "1", model_info=False, checkpoint=False)
    # smoe_encdec seed 2 never ran: no folder at all
    code, out, table = run_table(tmp_path)
    assert code == 0
    hard, smoe = row(table, "hard_sharing"), row(table, "smoe_encdec")
    cell = hard["cells"]["test.bleu_nb"]
    assert cell["n"] == 1 and cell["std"] is None and cell["mean"] == pytest.approx(10.0)
    assert cell["values"] == {"1": 10.0, "2": None}
    assert hard["runs_with_results"] == 1 and smoe["runs_with_results"] == 1
    assert hard["step_time"]["mean"] == pytest.approx(0.55)  # seed 2 trained, was not scored
    assert smoe["total_params"] is None and smoe["step_time"]["mean"] is None
    assert smoe["step_time_ratio"] is None
    md = (out / "table.md").read_text()
    assert "|hard sharing|15.00|" in md  # one seed: no spread
    assert "|-|-|-|" in md  # smoe: params and step time missing
    assert "(2 of 4 runs scored)" in md
    warnings = "\n".join(table["warnings"])
    assert "tts_ui_hard_sharing_seed2: no results.json" in warnings
    assert "tts_ui_smoe_encdec_seed1: no model_info.json, checkpoint.pth reporter" in warnings
    assert "tts_ui_smoe_encdec_seed2: not trained (no such folder)" in warnings


def test_no_results_at_all_still_writes_a_table(tmp_path):
    code, out, table = run_table(tmp_path)
    assert code == 0 and table["columns"] == []
    assert "No scored results found." in (out / "table.md").read_text()
    assert (out / "table.png").is_file()


def test_range_spread(exps):
    _, out, _ = run_table(exps, "--spread", "range")
    md = (out / "table.md").read_text()
    assert "|hard sharing|11.00 (10.00-12.00)|21.00 (20.00-22.00)|" in md
    assert "mean (min-max) over seeds" in md


def test_different_training_budgets_are_flagged(exps):
    write_checkpoint(exps / "exp/tts_ui_smoe_encdec_seed2", [(0.5, 0.47, 100), (0.7, 0.40, 200), (0.9, 0.5, 300)])
    _, _, table = run_table(exps)
    assert any("different numbers of epochs" in w for w in table["warnings"])
    assert row(table, "smoe_encdec")["step_time"]["values"]["2"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_test_set_filter_and_order(exps):
    _, _, table = run_table(exps, "--test_sets", "test_wb test_nb")
    assert [c["key"] for c in table["columns"]][:2] == ["test.wer_nb", "test.wer_wb"]
    assert {c["group"] for c in table["columns"]} == {"test"}


def test_publish_replaces_the_marked_section(exps, tmp_path):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# RESULTS\n\nmain run numbers\n")
    publish = ["--publish_md", str(results_md), "--publish_json", str(tmp_path / "results/table_t.json"),
               "--publish_png", str(tmp_path / "results/table_t.png"), "--section", "table_t"]
    assert run_table(exps, *publish)[0] == 0
    first = results_md.read_text()
    assert first.startswith("# RESULTS\n\nmain run numbers\n\n<!-- table:table_t begin -->\n## ")
    assert first.rstrip().endswith("<!-- table:table_t end -->")
    assert "(results/table_t.png)" in first
    assert json.loads((tmp_path / "results/table_t.json").read_text())["rows"]
    assert (tmp_path / "results/table_t.png").read_bytes()[:4] == b"\x89PNG"
    results_md.write_text(first + "\n## later section\n")
    assert run_table(exps, *publish, "--spread", "range")[0] == 0
    second = results_md.read_text()
    assert second.count("<!-- table:table_t begin -->") == 1
    assert "11.00 (10.00-12.00)" in second and "11.00 ± 1.41" not in second
    assert second.startswith("# RESULTS\n\nmain run numbers\n") and second.endswith("## later section\n")


def test_replace_section_without_end_marker_fails():
    with pytest.raises(make_table.TableError):
        make_table.replace_section("<!-- table:x begin -->\nold\n", "x", "new")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--baseline", "gated_moe"], "not among --variants"),
        (["--names", "only one"], "--names for 2 --variants"),
        (["--metrics", "bleu", "meteor"], "unknown metric"),
    ],
)
def test_bad_options(exps, capsys, extra, message):
    code, _, _ = run_table(exps, *extra)
    assert code == 1 and message in capsys.readouterr().err


def test_template_needs_both_fields(tmp_path, capsys):
    code = make_table.main(["--exp_template", "exp/{variant}", "--variants", "a", "--seeds", "1",
                            "--out_dir", str(tmp_path / "o")])  # fmt: skip
    assert code == 1 and "{seed}" in capsys.readouterr().err


def test_malformed_results_json(exps, capsys):
    (exps / "exp/tts_ui_smoe_encdec_seed1/results.json").write_text("{not json")
    code, _, _ = run_table(exps)
    assert code == 1 and "invalid JSON" in capsys.readouterr().err


def test_relative_wer_change_per_test_set_group(exps):
    _, _, table = run_table(exps)
    smoe = row(table, "smoe_encdec")
    # tts_ui_test: NB 8.5 vs 11 (-22.7 %), WB 17.5 vs 21 (-16.7 %); test: +5 on both sides
    assert smoe["rel_wer_change"]["tts_ui_test"] == pytest.approx((-2.5 / 11 - 3.5 / 21) * 50)
    assert smoe["rel_wer_change"]["test"] == pytest.approx((-2.5 / 16 - 3.5 / 26) * 50)
    assert row(table, "hard_sharing")["rel_wer_change"]["test"] == pytest.approx(0.0)


def test_single_runs_from_exp_dirs(exps):
    """The single-run case (one folder per variant, no seeds): what local/compare.py did."""
    out = exps / "exp/compare"
    dirs = [str(exps / f"exp/tts_ui_{v}_seed1") for v in ("smoe_encdec", "hard_sharing")]
    assert make_table.main(["--exp_dirs", *dirs, "--names", "S-MoE", "dense", "--out_dir", str(out)]) == 0
    table = json.loads((out / "table.json").read_text())
    assert table["seeds"] == ["1"] and table["baseline"] == dirs[0]  # the first folder
    smoe, dense = table["rows"]
    assert (smoe["name"], dense["name"]) == ("S-MoE", "dense")
    assert smoe["cells"]["test.wer_wb"] == {"mean": 23.0, "std": None, "min": 23.0, "max": 23.0, "n": 1,
                                            "values": {"1": 23.0}}
    assert dense["rel_wer_change"]["test"] == pytest.approx((2 / 13 + 2 / 23) * 50)
    md = (out / "table.md").read_text()
    assert "|S-MoE|13.00|23.00|" in md and "|dense|15.00|25.00|" in md and "|+12.0%|" in md
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    # default names: the folder names (run.sh's tags)
    assert make_table.main(["--exp_dirs", *dirs, "--out_dir", str(out)]) == 0
    assert [r["name"] for r in json.loads((out / "table.json").read_text())["rows"]] == [
        "tts_ui_smoe_encdec_seed1", "tts_ui_hard_sharing_seed1"]


def test_exp_dirs_take_no_seeds(exps, capsys):
    code = make_table.main(["--exp_dirs", str(exps / "exp/tts_ui_smoe_encdec_seed1"), "--seeds", "1",
                            "--out_dir", str(exps / "o")])  # fmt: skip
    assert code == 1 and "--variants and --seeds go with --exp_template" in capsys.readouterr().err


def test_paired_bootstrap_against_the_baseline(tmp_path):
    refs = {f"u{i}": f"the cat sat on mat number {i}" for i in range(12)}
    (tmp_path / "ref.asr").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    hyps = {"hard_sharing": {k: "the dog sat" for k in refs}, "smoe_encdec": dict(refs)}
    for variant, hyp in hyps.items():
        exp_dir = tmp_path / "exp" / f"tts_ui_{variant}_seed1"
        exp_dir.mkdir(parents=True)
        (exp_dir / "hyp").write_text("".join(f"{k} {v}\n" for k, v in hyp.items()))
        wer = 0.0 if variant == "smoe_encdec" else 100 * 5 / 7
        entry = {"test_set": "tts_ui_test_wb", "bandwidth": "wb", "task": "asr", "num_utts": 12, "wer": wer,
                 "cer": 0.0, "ref": str(tmp_path / "ref.asr"), "hyp": str(exp_dir / "hyp")}
        (exp_dir / "results.json").write_text(json.dumps({"results": [entry]}))
    code, out, table = run_table(tmp_path, "--bootstrap", "50", seeds="1")
    assert code == 0
    (c,) = table["significance"]
    assert (c["variant"], c["test_set"], c["metric"]) == ("smoe_encdec", "tts_ui_test_wb", "wer")
    assert c["baseline"] == pytest.approx(100 * 5 / 7) and c["system"] == 0.0
    assert c["ci_high"] < 0 and c["p_value"] < 0.05 and c["seeds"] == [1, 1]
    assert "### Paired bootstrap against hard sharing" in (out / "table.md").read_text()


def test_per_task_dev_loss_curves_averaged_over_seeds(exps):
    """The model's loss_att_<task> dev values per epoch: mean over the seeds that logged them."""
    write_checkpoint(exps / "exp/tts_ui_hard_sharing_seed1", [(0.5, 0.3, 100), (0.7, 0.4, 200)],
                     {1: {"loss_att_asr": 10.0, "loss_att_st_fra": 30.0}, 2: {"loss_att_asr": 8.0}})
    write_checkpoint(exps / "exp/tts_ui_hard_sharing_seed2", [(0.4, 0.35, 100), (0.6, 0.3, 200)],
                     {1: {"loss_att_asr": 12.0, "loss_att_st_fra": float("nan")}, 2: {"loss_att_asr": 6.0}})
    _, out, table = run_table(exps)
    curves = row(table, "hard_sharing")["dev_task_loss"]
    assert curves == {"asr": {"1": pytest.approx(11.0), "2": pytest.approx(7.0)}, "st_fra": {"1": 30.0}}
    assert row(table, "smoe_encdec")["dev_task_loss"] == {}  # these runs logged none
    from PIL import Image

    with_curves = Image.open(out / "table.png").size
    for seed in ("1", "2"):
        write_checkpoint(exps / f"exp/tts_ui_hard_sharing_seed{seed}", [(0.5, 0.3, 100), (0.7, 0.4, 200)])
    _, out, _ = run_table(exps)
    assert with_curves[1] > Image.open(out / "table.png").size[1]  # one more row of panels


def test_also_against_matches_a_table_made_with_that_baseline(tmp_path):
    """--also_against V gives every variant's relative WER and bootstrap against V exactly as --baseline V does,
    while the main columns stay against the main baseline."""
    refs = {f"u{i}": f"the cat sat on mat number {i}" for i in range(12)}
    (tmp_path / "ref.asr").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    hyps = {"hard_sharing": {k: "the dog sat" for k in refs}, "smoe_encdec": dict(refs),
            "dense_wide": {k: (v if k < "u5" else "the cat") for k, v in refs.items()}}
    wers = {"hard_sharing": 100 * 5 / 7, "smoe_encdec": 0.0, "dense_wide": 30.0}
    for variant, hyp in hyps.items():
        exp_dir = tmp_path / "exp" / f"tts_ui_{variant}_seed1"
        exp_dir.mkdir(parents=True)
        (exp_dir / "hyp").write_text("".join(f"{k} {v}\n" for k, v in hyp.items()))
        entries = [{"test_set": f"tts_ui_test_{bw}", "bandwidth": bw, "task": "asr", "num_utts": 12,
                    "wer": wers[variant] + (10.0 if bw == "wb" else 0.0), "cer": 0.0,
                    "ref": str(tmp_path / "ref.asr"), "hyp": str(exp_dir / "hyp")} for bw in ("nb", "wb")]
        (exp_dir / "results.json").write_text(json.dumps({"results": entries}))
    variants = "hard_sharing smoe_encdec dense_wide"
    code, out, table = run_table(tmp_path, "--bootstrap", "50", "--also_against", "dense_wide", seeds="1",
                                 variants=variants)
    assert code == 0 and table["baseline"] == "hard_sharing"
    (other,) = table["also_against"]
    assert other["baseline"] == "dense_wide" and other["name"] == "dense, param.-matched"
    md = (out / "table.md").read_text()
    assert "### Against dense, param.-matched" in md and "|S-MoE enc+dec|-87.5%|" in md
    assert "### Paired bootstrap against dense, param.-matched" in md
    assert "### Paired bootstrap against hard sharing" in md  # the main baseline's section stays
    code, _, reference = run_table(tmp_path, "--bootstrap", "50", "--baseline", "dense_wide", seeds="1",
                                   variants=variants)
    assert code == 0
    for r in reference["rows"]:
        assert other["rel_wer_change"][r["variant"]] == pytest.approx(r["rel_wer_change"])
    # smoe_encdec against dense: NB 0 vs 30 (-100 %), WB 10 vs 40 (-75 %)
    assert other["rel_wer_change"]["smoe_encdec"]["tts_ui_test"] == pytest.approx(-87.5)
    assert other["significance"] == reference["significance"]  # the bootstrap is seeded
    assert {(c["variant"], c["baseline_variant"]) for c in other["significance"]} == {
        ("hard_sharing", "dense_wide"), ("smoe_encdec", "dense_wide")}


@pytest.mark.parametrize("other", ["gated_moe", "hard_sharing"])
def test_also_against_must_be_another_variant(exps, capsys, other):
    code, _, _ = run_table(exps, "--also_against", other)
    assert code == 1 and f"--also_against {other}" in capsys.readouterr().err
