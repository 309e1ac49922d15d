"""A training run killed with SIGKILL restarts, with the same command, where it stopped."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml


def _train_cmd(experiment, common_args, config, out):
    root, data = experiment["root"], experiment["data"]
    return [sys.executable, "-m", "espnet_smoe.bin.s2t_train", "--config", str(config), *common_args(root, data),
            "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
            "--train_shape_file", str(root / "stats/train/speech_shape"),
            "--valid_shape_file", str(root / "stats/valid/speech_shape"),
            "--resume", "true", "--output_dir", str(out)]


def test_sigkill_mid_run_then_same_command_finishes_every_epoch(experiment, common_args):
    root = experiment["root"]
    conf = yaml.safe_load(experiment["config"].read_text())
    conf.update(max_epoch=4, num_iters_per_epoch=40)
    config = root / "train_resume.yaml"
    config.write_text(yaml.safe_dump(conf))
    out = root / "exp_resume"
    cmd = _train_cmd(experiment, common_args, config, out)

    log1 = open(root / "resume_first.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log1, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while not (out / "1epoch.pth").exists():  # ESPnet writes checkpoint.pth, then Nepoch.pth
        assert proc.poll() is None, (root / "resume_first.log").read_text()[-3000:]
        assert time.time() < deadline, "no epoch finished in 10 minutes"
        time.sleep(0.1)
    time.sleep(1.0)  # into the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log1.close()
    finished = max(int(p.name.split("epoch")[0]) for p in out.glob("*epoch.pth"))
    assert finished < 4, "the run ended before it could be killed"
    done_before = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["epoch"]

    second = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    text = second.stderr
    assert f"The training was resumed using {out / 'checkpoint.pth'}" in text
    started = [int(m) for m in re.findall(r"(\d+)/4epoch started", text)]
    assert started == list(range(done_before + 1, 5)), (done_before, started)
    state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["reporter"]["epoch"] == 4
    assert sorted(state["reporter"]["stats"]) == [1, 2, 3, 4]  # every epoch reported once
    assert (out / "4epoch.pth").exists()
    # the final model loads into the architecture the config builds
    from espnet_smoe.inference import SMoESpeech2Text

    s2t = SMoESpeech2Text(out / "config.yaml", out / "4epoch.pth", beam_size=1, maxlenratio=0.2, lang_sym="<eng>")
    assert s2t.s2t_model.training is False


def test_truncated_checkpoint_is_named(experiment, common_args, tmp_path):
    out = tmp_path / "exp_truncated"
    out.mkdir()
    good = experiment["exp"] / "checkpoint.pth"
    (out / "checkpoint.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    proc = subprocess.run(_train_cmd(experiment, common_args, experiment["config"], out),
                          cwd=experiment["root"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert re.search(rf"{re.escape(str(out / 'checkpoint.pth'))}: cannot be read \(.*\); it is probably truncated",
                     proc.stderr), proc.stderr[-2000:]
    assert not (out / "1epoch.pth").exists()


@pytest.mark.parametrize("argv", [["--output_dir", "x"], ["--resume", "false", "--output_dir", "x"]])
def test_checkpoint_check_only_runs_when_resuming(tmp_path, argv):
    from espnet_smoe.bin.s2t_train import check_resume_checkpoint

    (tmp_path / "x").mkdir()
    (tmp_path / "x/checkpoint.pth").write_bytes(b"garbage")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        check_resume_checkpoint(argv)  # nothing to check: no error
        with pytest.raises(RuntimeError, match="x/checkpoint.pth: cannot be read"):
            check_resume_checkpoint(argv[-2:] + ["--resume", "true"])
    finally:
        os.chdir(cwd)


def test_an_import_time_warning_does_not_silence_espnet_info_logs():
    """espnet2 warns at import when hydra is missing; the launcher must still log at --log_level INFO."""
    code = (
        "import logging, sys\n"
        "logging.warning('an optional package is missing')  # what an espnet2 import does\n"
        "from espnet_smoe.bin import reset_root_logging\n"
        "reset_root_logging()\n"
        "logging.basicConfig(level='INFO', format='%(levelname)s %(message)s')  # what ESPnet's main does\n"
        "logging.info('epoch results')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "INFO epoch results" in out.stderr, out.stderr
