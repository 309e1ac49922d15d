"""run.sh --corpus mustc / europarl_st on fixture corpora in the real layouts.

The fixtures (local/st_corpus_fake.py) are written to tmp and named in the scratch recipe's
own db.sh. Both corpora run the data stages (3: prep, 4: no tts_ui and the mix dirs, 5: tokens,
10: feature statistics); Europarl-ST's .m4a are decoded with ffmpeg. The MuST-C run then goes on with two
training steps, decoding and scoring (marked slow: three more ESPnet start-ups, about a minute on
an idle 2-core machine, many on a loaded one; the tiny model learns nothing, what is checked is
that each stage gets its input from the one before).
"""

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from local.data_dir import validate_data_dir
from local.file_io import read_kaldi

_spec = importlib.util.spec_from_file_location(
    "st_corpus_fake", Path(__file__).parent / "local" / "st_corpus_fake.py")
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)


def run_recipe(root: Path, scratch_recipe, db_line: str, *args: str) -> tuple[Path, str]:
    recipe = scratch_recipe(root)
    # this copy's own db.sh: the checkout's, with the fixture corpus named in it
    db = recipe / "db.sh"
    text = db.read_text()
    db.unlink()
    name = db_line.split("=", 1)[0]
    db.write_text(re.sub(rf"^{name}=.*$", db_line, text, flags=re.M))
    log = root / "run.log"
    with open(log, "w") as f:
        proc = subprocess.run(["./run.sh", *args], cwd=recipe, stdout=f, stderr=subprocess.STDOUT)
    out = log.read_text()
    assert proc.returncode == 0, out[-6000:]
    return recipe, out


@pytest.fixture(scope="module")
def mustc_run(tmp_path_factory, scratch_recipe):
    root = tmp_path_factory.mktemp("mustc_recipe")
    db = fake.build_mustc(root / "corpora" / "MUSTC_v1.0")
    return run_recipe(root, scratch_recipe, f"MUSTC={db}", "--corpus", "mustc", "--nj", "1", "--stop_stage", "10")


def test_mustc_run_skips_the_asterisk_stages(mustc_run):
    recipe, out = mustc_run
    assert "Stage 1:" not in out and "Stage 2:" not in out and "split_data" not in out
    for stage in (3, 4, 5, 10):
        assert f"Stage {stage}:" in out
    assert not (recipe / "data" / "local" / "asterisk").exists()


def test_mustc_run_data_dirs(mustc_run):
    recipe, _ = mustc_run
    data = recipe / "data"
    summary = json.loads((data / "local" / "mustc" / "summary.json").read_text())
    # max_dur came from the training config's speech_length (8 s): the 2.5 s segment is kept
    assert summary["max_dur"] == 8.0 and summary["sets"]["mustc_train"]["skipped"].get("too_long") is None
    for name in ("mustc_train", "mustc_dev", "mustc_tst_common_nb", "mustc_tst_common_wb", "mustc_tst_he_nb",
                 "mustc_tst_he_wb", "mustc_train_mix", "mustc_dev_mix"):
        assert validate_data_dir(data / name) > 0, name
    # the mix dir is the train set (no dev/test sentence in it), ASR targets in the scored form
    mix = read_kaldi(data / "mustc_train_mix" / "text")
    assert set(mix) == set(read_kaldi(data / "mustc_train" / "text"))
    assert mix["ted_00001_0000500_0001750_asr"] == "<eng><asr><notimestamps> so i went to the café in zürich"
    assert mix["ted_00001_0000500_0001750_st_fra"] == "<eng><st_fra><notimestamps> Alors je suis allé au café à Zurich."


def test_mustc_run_tokens_and_stats(mustc_run):
    recipe, _ = mustc_run
    tokens = (recipe / "data" / "token_list" / "mustc_bpe_unigram600" / "tokens.txt").read_text().split("\n")
    assert {"<nb>", "<wb>", "<asr>", "<st_fra>"} <= set(tokens)
    stats = recipe / "exp" / "stats_mustc_bpe600"
    shapes = read_kaldi(stats / "train" / "speech_shape")
    assert set(shapes) == set(read_kaldi(recipe / "data" / "mustc_train_mix" / "wav.scp"))
    assert (stats / "train" / "feats_stats.npz").is_file()


@pytest.mark.slow
def test_mustc_run_trains_decodes_and_scores(mustc_run):
    recipe, _ = mustc_run
    log = recipe.parent / "run_11_13.log"
    with open(log, "w") as f:
        proc = subprocess.run(["./run.sh", "--corpus", "mustc", "--inference_nj", "1", "--stage", "11",
                               "--stop_stage", "13", "--test_sets", "mustc_tst_common_nb mustc_tst_common_wb",
                               "--s2t_args", "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4",
                               "--inference_args", "--beam_size 1 --maxlenratio 0.2"],
                              cwd=recipe, stdout=f, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, log.read_text()[-6000:]
    exp = recipe / "exp" / "mustc_train_smoe_encdec_tiny_max_epoch1_num_iters_per_epoch2_batch_size4"
    results = json.loads((exp / "results.json").read_text())["results"]
    got = {(r["task"], r["bandwidth"]): r["num_utts"] for r in results}
    assert got == {(t, bw): 2 for t in ("asr", "st_fra") for bw in ("nb", "wb")}


def test_europarl_st_run_data_stages(tmp_path_factory, scratch_recipe):
    root = tmp_path_factory.mktemp("europarl_recipe")
    db = fake.build_europarl_st(root / "corpora" / "europarl_st")
    recipe, out = run_recipe(root, scratch_recipe, f"EUROPARL_ST={db}", "--corpus", "europarl_st",
                             "--nj", "2", "--stop_stage", "10")
    assert "Stage 1:" not in out and "Stage 11:" not in out
    data = recipe / "data"
    summary = json.loads((data / "local" / "europarl_st" / "summary.json").read_text())
    assert summary["sets"]["europarl_st_train"]["skipped"] == {"empty_text": 1, "unreadable_audio": 1,
                                                              "missing_audio": 1}
    for bw in ("nb", "wb"):
        assert list(read_kaldi(data / f"europarl_st_test_{bw}" / "wav.scp")) == fake.EUROPARL_KEPT["europarl_st_test"]
    assert validate_data_dir(data / "europarl_st_train_mix") == 2 * 4
    tokens = (data / "token_list" / "europarl_st_bpe_unigram600" / "tokens.txt").read_text().split("\n")
    assert "<st_fra>" in tokens
    shapes = read_kaldi(recipe / "exp" / "stats_europarl_st_bpe600" / "valid" / "speech_shape")
    assert set(shapes) == set(read_kaldi(data / "europarl_st_dev_mix" / "wav.scp"))
