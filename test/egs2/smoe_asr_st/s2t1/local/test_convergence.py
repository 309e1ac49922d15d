"""local/convergence.py: the dev-loss convergence step and the test scores along a run."""

import json

import pytest

from local import convergence


def write_run(root, losses, till_epochs=(), final=True):
    """A kept-run folder: reporter_stats.json with 100 steps per epoch, scored checkpoints."""
    stats = {
        str(e + 1): {"train": {"total_count": 100 * (e + 1), "time": 60.0},
                     "valid": {"loss": loss, "acc": 0.1 * e, "cer_ctc": 1.0 / (e + 1), "time": 2.0}}
        for e, loss in enumerate(losses)
    }
    root.mkdir(parents=True)
    (root / "reporter_stats.json").write_text(json.dumps(stats))

    def results(path, wer):
        path.mkdir(parents=True, exist_ok=True)
        entries = [{"test_set": "t_nb", "bandwidth": "nb", "task": "asr", "wer": wer, "cer": wer / 2},
                   {"test_set": "t_nb", "bandwidth": "nb", "task": "st_fra", "bleu": 1.0, "chrf": 100 - wer}]
        (path / "results.json").write_text(json.dumps({"results": entries}))

    for epoch in till_epochs:
        results(root / f"decode_decode_valid.acc.ave.till{epoch}epoch", wer=90 - epoch)
    if final:
        results(root, wer=50.0)
    return root


def test_converged_at_is_the_first_epoch_within_tolerance_of_the_minimum():
    # minimum 50 at step 500; 50 * 1.02 = 51 -> 50.9 at step 300 is the first within 2 %
    got = convergence.converged_at([100, 200, 300, 400, 500, 600], [80, 60, 50.9, 52, 50, 55], 0.02)
    assert got == {"best_loss": 50, "best_step": 500, "within_tolerance_step": 300,
                   "within_tolerance_loss": 50.9, "last_step": 600}
    # a stricter tolerance moves it to the minimum itself
    assert convergence.converged_at([100, 200, 300, 400, 500], [80, 60, 50.9, 52, 50], 0.001)[
        "within_tolerance_step"] == 500


def test_converged_at_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one dev loss per epoch"):
        convergence.converged_at([100, 200], [1.0], 0.02)


def test_summary_reads_dev_curve_and_scored_checkpoints_in_step_order(tmp_path):
    run = write_run(tmp_path / "hs", [80, 60, 55, 54, 56, 57], till_epochs=(6, 3))
    summary = convergence.summarise({"hs": run}, 0.02)["hs"]
    assert summary["dev"]["steps"] == [100, 200, 300, 400, 500, 600]
    assert summary["dev"]["cer_ctc"][1] == pytest.approx(0.5)
    assert summary["converged"]["best_step"] == 400 and summary["converged"]["within_tolerance_step"] == 300
    assert [(p["checkpoint"], p["steps"]) for p in summary["test"]] == [
        ("decode_decode_valid.acc.ave.till3epoch", 300), ("decode_decode_valid.acc.ave.till6epoch", 600),
        ("final", 600)]
    first = {s["task"]: s for s in summary["test"][0]["scores"]}
    assert first["asr"]["wer"] == 87 and first["st_fra"]["chrf"] == 13


def test_a_checkpoint_past_the_reporter_is_an_error_naming_it(tmp_path):
    run = write_run(tmp_path / "hs", [80, 60], till_epochs=(9,))
    with pytest.raises(ValueError, match=r"till9epoch/results.json: epoch 9 is not in the run's reporter"):
        convergence.summarise({"hs": run}, 0.02)


def test_a_reporter_without_dev_loss_is_an_error_naming_the_epoch(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "reporter_stats.json").write_text(json.dumps(
        {"1": {"train": {"total_count": 10}, "valid": {"acc": 0.1, "cer_ctc": 0.9}}}))
    with pytest.raises(KeyError, match=r"epoch 1 has no valid \['loss'\]"):
        convergence.dev_curve(run)


def test_main_writes_json_and_png(tmp_path, capsys):
    a = write_run(tmp_path / "a", [80, 60, 55], till_epochs=(3,))
    b = write_run(tmp_path / "b", [85, 62, 58], final=False)
    convergence.main(["--run", f"hard sharing={a}", "--run", f"S-MoE={b}", "--out", str(tmp_path / "out/conv")])
    data = json.loads((tmp_path / "out/conv.json").read_text())
    assert list(data) == ["hard sharing", "S-MoE"] and data["S-MoE"]["test"] == []
    assert (tmp_path / "out/conv.png").stat().st_size > 10_000
    assert "hard sharing: dev loss best 55.00 at step 300" in capsys.readouterr().out
