"""Tests for maint/keep_run.py: a kept run restores to what the table read from the original,
without its checkpoint or reference texts, and refuses test sets other than its own."""

import dataclasses
import json

import pytest
import torch
import yaml

from local import make_table
from local.make_table import load_run
from maint import keep_run

TEST_SETS = ("tts_ui_test_nb", "test_wb")
TASKS = ("asr", "st_fra")


def finished_run(root, tag="tts_ui_smoe_encdec_seed2"):
    """A run as run.sh leaves it: references in data/, hypotheses, scores, parameters, checkpoint."""
    exp = root / "exp" / tag
    entries = []
    for n, test_set in enumerate(TEST_SETS):
        for task in TASKS:
            ref = root / "data" / test_set / f"text.{task}"
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(f"u1 the {task} reference of {test_set}\nu2 a second one\n")
            hyp = exp / "decode_inference_valid.acc.ave" / f"{test_set}_{task}" / "1best_recog" / "text_nospecial"
            hyp.parent.mkdir(parents=True)
            hyp.write_text(f"u1 hypothesis {n} {task}\nu2 a second one\n")
            entries.append({"test_set": test_set, "bandwidth": test_set[-2:], "task": task, "num_utts": 2,
                            "wer": 50.0 + n, "ref": str(ref.relative_to(root)), "hyp": str(hyp.relative_to(root))})
    (exp / "results.json").write_text(json.dumps({"tag": tag, "environment": {"cpu": "x"}, "results": entries}))
    for name, text in (("train/text", "u9 a training sentence\n"), ("train/wav.scp", "u9 /elsewhere/u9.wav\n"),
                       ("stats/speech_shape", "u9 16000\n"), ("token_list/bpe.model", "model")):
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text(text)
    config = {"train_data_path_and_name_and_type": [["data/train/wav.scp", "speech", "sound"],
                                                    ["data/train/text", "text", "text"]],
              "train_shape_file": ["data/stats/speech_shape"], "bpemodel": "data/token_list/bpe.model", "seed": 2}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    (exp / "model_info.json").write_text(json.dumps({"total_params": 7, "active_params": 5}))
    stats = {epoch: {"train": {"train_time": 0.4 + epoch / 100, "total_count": 300 * epoch,
                               "time": {"__timedelta_seconds__": 120.5}},
                     "valid": {"acc": 0.1 * epoch, "loss_att_asr": 90.0 / epoch, "loss_att_st_fra": 95.0 / epoch}}
             for epoch in (1, 2, 3)}  # fmt: skip
    torch.save({"model": {"w": torch.zeros(3)}, "reporter": {"stats": stats}}, exp / "checkpoint.pth")
    return exp


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results.json paths are relative to the recipe folder
    return tmp_path


def test_restored_run_reads_as_the_original(recipe):
    original = finished_run(recipe)
    keep_run.save(original.relative_to(recipe), recipe / "kept/run")
    kept = sorted(p.relative_to(recipe / "kept/run").as_posix() for p in (recipe / "kept/run").rglob("*")
                  if p.is_file())
    hyps = [f"decode_inference_valid.acc.ave/{t}_{k}/1best_recog/text_nospecial" for t in TEST_SETS for k in TASKS]
    assert kept == sorted([*hyps, "config.yaml", "inputs.json", "model_info.json", "reporter_stats.json",
                           "results.json"])
    inputs = json.loads((recipe / "kept/run/inputs.json").read_text())  # audio paths are machine-specific
    assert sorted(inputs) == sorted([*(f"data/{t}/text.{k}" for t in TEST_SETS for k in TASKS), "data/train/text",
                                     "data/stats/speech_shape", "data/token_list/bpe.model"])

    restored = recipe / "exp/again"
    keep_run.restore(recipe / "kept/run", restored)
    before, after = load_run("v", "2", original), load_run("v", "2", restored)
    assert dataclasses.replace(after, exp_dir=original) == before
    assert after.step_times == pytest.approx({1: 0.41, 2: 0.42, 3: 0.43}) and after.iterations == 900
    assert after.task_losses["st_fra"][3] == pytest.approx(95.0 / 3)
    for entry in after.results:  # the hypotheses the bootstrap reads are there, byte for byte
        assert (recipe / entry["hyp"]).read_bytes() == (restored / entry["hyp"].split("/", 2)[2]).read_bytes()


def test_table_of_kept_runs_equals_table_of_originals(recipe):
    for variant in ("hard_sharing", "smoe_encdec"):
        exp = finished_run(recipe, f"tts_ui_{variant}_seed1")
        keep_run.save(exp.relative_to(recipe), recipe / "kept" / exp.name)

    def table(template):
        args = ["--exp_template", template, "--variants", "hard_sharing smoe_encdec", "--seeds", "1",
                "--out_dir", str(recipe / "table"), "--command", "c", "--bootstrap", "200"]
        assert make_table.main(args) == 0
        return json.loads((recipe / "table/table.json").read_text())

    original = table("exp/tts_ui_{variant}_seed{seed}")
    for variant in ("hard_sharing", "smoe_encdec"):  # a new machine: data rebuilt, exp/ empty
        (recipe / "exp" / f"tts_ui_{variant}_seed1").rename(recipe / f"gone_{variant}")
        keep_run.restore(recipe / "kept" / f"tts_ui_{variant}_seed1", recipe / "exp" / f"tts_ui_{variant}_seed1")
    again = table("exp/tts_ui_{variant}_seed{seed}")
    assert again["rows"] == original["rows"] and again["significance"] == original["significance"]
    assert original["significance"] and original["rows"][0]["step_time"]["mean"] == pytest.approx(0.42)


@pytest.mark.parametrize("changed", ["data/test_wb/text.asr", "data/train/text", "data/stats/speech_shape"])
def test_restore_refuses_another_corpus(recipe, changed):
    """Other test references, or training data other than the run's: the kept scores do not apply."""
    exp = finished_run(recipe)
    keep_run.save(exp.relative_to(recipe), recipe / "kept/run")
    (recipe / changed).write_text("u1 another sentence\n")
    with pytest.raises(keep_run.KeepError, match=rf"{changed}: differs .*another corpus.*remove .*kept/run\)"):
        keep_run.restore(recipe / "kept/run", recipe / "exp/again")
    (recipe / changed).unlink()
    with pytest.raises(keep_run.KeepError, match=rf"input {changed} is missing"):
        keep_run.restore(recipe / "kept/run", recipe / "exp/again")
    assert not (recipe / "exp/again").exists()


def test_restore_refuses_shapes_in_another_order_and_names_the_cause(recipe):
    """Statistics collected with another number of loader workers list the same utterances in another
    order, which can change ESPnet's batches."""
    exp = finished_run(recipe)
    shape = recipe / "data/stats/speech_shape"
    shape.write_text("u8 8000\nu9 16000\n")
    keep_run.save(exp.relative_to(recipe), recipe / "kept/run")
    shape.write_text("u9 16000\nu8 8000\n")
    with pytest.raises(keep_run.KeepError, match=r"data/stats/speech_shape: differs .*another order "
                                                 r"\(the order follows its number of loader workers\)"):
        keep_run.restore(recipe / "kept/run", recipe / "exp/again")


def test_save_refuses_unscored_run_and_foreign_hypothesis(recipe):
    exp = finished_run(recipe)
    report = json.loads((exp / "results.json").read_text())
    report["results"][0]["hyp"] = "exp/other_run/text_nospecial"
    (exp / "results.json").write_text(json.dumps(report))
    with pytest.raises(keep_run.KeepError, match="exp/other_run/text_nospecial is not a relative path inside"):
        keep_run.save(exp.relative_to(recipe), recipe / "kept/run")
    assert not (recipe / "kept/run").exists()
    (exp / "results.json").unlink()
    with pytest.raises(keep_run.KeepError, match="results.json: missing"):
        keep_run.save(exp.relative_to(recipe), recipe / "kept/run")


def test_save_replaces_an_older_copy(recipe):
    exp = finished_run(recipe)
    (recipe / "kept/run/stale").mkdir(parents=True)
    keep_run.save(exp.relative_to(recipe), recipe / "kept/run")
    assert not (recipe / "kept/run/stale").exists() and not (recipe / "kept/run.partial").exists()
