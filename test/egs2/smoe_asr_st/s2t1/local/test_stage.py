"""Tests for local/stage.py: stage markers."""

import json

from local.stage import mark_done, stage_done, start_stage


def test_marker_matches_options_and_outputs(tmp_path):
    marker, out = tmp_path / "s" / ".done", tmp_path / "s" / "out.tsv"
    config = {"nb_source": "real", "max_len_diff": 0.02}
    assert not stage_done(marker, config)
    start_stage(marker)
    out.write_text("x\n")
    mark_done(marker, config, {"ok": 3})
    record = json.loads(marker.read_text())
    assert record["config"] == config and record["summary"] == {"ok": 3} and len(record["digest"]) == 16
    assert stage_done(marker, {"max_len_diff": 0.02, "nb_source": "real"}, [out])  # key order does not matter
    assert not stage_done(marker, {**config, "nb_source": "simulated"}, [out])
    out.unlink()
    assert not stage_done(marker, config, [out])
    start_stage(marker)
    assert not marker.exists()


def test_unreadable_marker_is_not_done(tmp_path):
    marker = tmp_path / ".done"
    marker.write_text("not json")
    assert not stage_done(marker, {})
