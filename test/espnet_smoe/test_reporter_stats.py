"""Tests for espnet_smoe/reporter_stats.py: per-epoch statistics from ESPnet's saved reporter."""

import pytest
import torch

from espnet_smoe.reporter_stats import read_reporter_stats


def test_epochs_in_order_with_durations_in_seconds(tmp_path):
    stats = {
        2: {"train": {"train_time": 0.7, "total_count": 200, "time": {"__timedelta_seconds__": 61.5}},
            "valid": {"acc": 0.4, "time": {"__timedelta_seconds__": 2.0}}},
        1: {"train": {"train_time": 0.5, "total_count": 100, "time": {"__timedelta_seconds__": 60.0}},
            "valid": {"acc": 0.3, "time": {"__timedelta_seconds__": 2.5}}},
    }  # fmt: skip
    torch.save({"model": {}, "reporter": {"stats": stats, "epoch": 2}}, tmp_path / "checkpoint.pth")
    got = read_reporter_stats(tmp_path)
    assert list(got) == [1, 2]
    assert got[1] == {"train": {"train_time": 0.5, "total_count": 100.0, "time": 60.0},
                      "valid": {"acc": 0.3, "time": 2.5}}
    assert got[2]["train"]["time"] == 61.5


def test_missing_checkpoint_and_reporter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint.pth: no checkpoint \(has .* finished an epoch\?\)"):
        read_reporter_stats(tmp_path)
    torch.save({"model": {}}, tmp_path / "checkpoint.pth")
    with pytest.raises(KeyError, match="no 'reporter' state; expected an ESPnet trainer checkpoint"):
        read_reporter_stats(tmp_path)
