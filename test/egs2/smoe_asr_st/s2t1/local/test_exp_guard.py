"""Tests for local/exp_guard.py: an experiment folder is resumed only with the options it was trained with."""

import json

import pytest

from local import exp_guard

FOLDERS = {"train_data": "data/train_mix", "valid_data": "data/dev_mix", "token_dir": "data/token_list/bpe600",
           "stats_dir": "exp/stats"}
CONFIG = "# tiny\nmax_epoch: 4\nencoder: conformer\nencoder_conf:\n    output_size: 144\n"


def options(tmp_path, config=CONFIG, args="--max_epoch 2 --seed 1", **folders):
    path = tmp_path / "conf.yaml"
    path.write_text(config)
    return exp_guard.train_options(path, args, **{**FOLDERS, **folders})


def test_first_call_records_then_same_options_pass(tmp_path):
    exp = tmp_path / "exp/run"
    assert exp_guard.check(exp, options(tmp_path)) is True
    record = json.loads((exp / "train_options.json").read_text())
    assert record["s2t_args"] == ["--max_epoch", "2", "--seed", "1"]
    assert record["s2t_config_settings"] == {"max_epoch": 4, "encoder": "conformer",
                                             "encoder_conf": {"output_size": 144}}
    (exp / "checkpoint.pth").write_bytes(b"state")
    # the same options, spaced otherwise and with other comments in the config: resumed
    again = options(tmp_path, config="# other words\n" + CONFIG, args=" --max_epoch 2  --seed 1 ")
    assert exp_guard.check(exp, again) is False


def test_other_s2t_args_stop_with_both_values(tmp_path):
    exp = tmp_path / "exp/run"
    exp_guard.check(exp, options(tmp_path))
    with pytest.raises(exp_guard.GuardError) as err:
        exp_guard.check(exp, options(tmp_path, args="--max_epoch 3 --seed 1"))
    message = str(err.value)
    assert f"{exp} was trained with other options" in message
    assert "--s2t_args: '--max_epoch 2 --seed 1' there, '--max_epoch 3 --seed 1' here" in message
    assert "another --tag" in message and f"remove {exp}" in message


def test_other_config_settings_and_folders_are_named(tmp_path):
    exp = tmp_path / "exp/run"
    exp_guard.check(exp, options(tmp_path))
    edited = CONFIG.replace("output_size: 144", "output_size: 256").replace("max_epoch: 4", "max_epoch: 4\nseed: 3")
    with pytest.raises(exp_guard.GuardError) as err:
        exp_guard.check(exp, options(tmp_path, config=edited, stats_dir="exp/stats_other"))
    lines = str(err.value).splitlines()
    assert lines[1] == f"  --s2t_config: {tmp_path / 'conf.yaml'} there, {tmp_path / 'conf.yaml'} here, " \
                       "with other settings (encoder_conf, seed)"
    assert lines[2] == "  stats_dir: exp/stats there, exp/stats_other here"
    assert len(lines) == 4  # the two differences between the headline and the advice


def test_trained_folder_without_record_is_not_resumed(tmp_path):
    exp = tmp_path / "exp/old"
    exp.mkdir(parents=True)
    (exp / "3epoch.pth").write_bytes(b"weights")
    with pytest.raises(exp_guard.GuardError, match=r"holds a training \(checkpoint\) but no train_options.json"):
        exp_guard.check(exp, options(tmp_path))
    assert not (exp / "train_options.json").exists()
    # a folder with results but nothing to resume (a run restored from results/runs/) is taken
    restored = tmp_path / "exp/restored"
    restored.mkdir()
    (restored / "results.json").write_text("{}")
    assert exp_guard.check(restored, options(tmp_path)) is True


def test_command_line_reports_and_fails(tmp_path, capsys):
    (tmp_path / "conf.yaml").write_text(CONFIG)
    argv = ["--exp_dir", str(tmp_path / "exp/run"), "--s2t_config", str(tmp_path / "conf.yaml"),
            *[a for name, value in FOLDERS.items() for a in (f"--{name}", value)]]
    assert exp_guard.main([*argv, "--s2t_args", "--max_epoch 2"]) == 0
    assert exp_guard.main([*argv, "--s2t_args", "--max_epoch 2"]) == 0
    assert exp_guard.main([*argv, "--s2t_args", "--max_epoch 5"]) == 1
    assert "exp_guard: " in capsys.readouterr().err
    assert exp_guard.main([*argv, "--s2t_args", "--max_epoch 'open"]) == 1
    assert "--s2t_args \"--max_epoch 'open\": No closing quotation" in capsys.readouterr().err
    missing = [a if a != str(tmp_path / "conf.yaml") else str(tmp_path / "none.yaml") for a in argv]
    assert exp_guard.main(missing) == 1
    assert "none.yaml: cannot read it (No such file or directory)" in capsys.readouterr().err
