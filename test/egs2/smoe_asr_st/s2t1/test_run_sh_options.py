"""run.sh's options, stage selection and experiment folders, checked without training anything.

The options and stage numbers follow ESPnet's egs2/TEMPLATE/s2t1/s2t.sh; an experiment folder
is resumed only with the config and training arguments it was trained with.
"""

import json
import os
import re
import subprocess
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[4] / "egs2/smoe_asr_st/s2t1"
# run.sh's options named as s2t.sh names them, for the same meaning
S2T_SH_OPTIONS = {"stage", "stop_stage", "skip_stages", "skip_data_prep", "skip_train", "skip_eval", "ngpu",
                  "num_nodes", "nj", "inference_nj", "gpu_inference", "dumpdir", "expdir", "s2t_config", "s2t_args",
                  "s2t_stats_dir", "s2t_exp", "inference_config", "inference_args", "inference_s2t_model",
                  "inference_tag", "test_sets"}


def run_sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("cmd_backend", "slurm_conf")}  # the local backend
    return subprocess.run(["./run.sh", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_help_lists_every_option_with_its_comment():
    proc = run_sh(RECIPE, "--help")
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  --(\w+)=(?:\"[^\"]*\"|\S*)\s+# \S", proc.stderr, re.M)  # each with a comment
    head, body = (RECIPE / "run.sh").read_text().split(". local/parse_options.sh", 1)
    # every variable set before parse_options.sh is an option, listed, and the script reads each one
    assert listed == re.findall(r"^(\w+)=", head, re.M) and len(listed) >= 30
    assert S2T_SH_OPTIONS <= set(listed), S2T_SH_OPTIONS - set(listed)
    assert [name for name in listed if not re.search(rf"\${{{name}}}|\${name}\b|\${{!?{name}[:%#/]", body)] == []
    # the stage map comes first, with s2t.sh's numbers for statistics, training, decoding, scoring, packing
    stages = dict(re.findall(r"^ +(\d+)  (\w+)", proc.stderr.split("Options", 1)[0], re.M))
    assert list(stages) == ["1", "2", "3", "4", "5", "10", "11", "12", "13", "14"]
    assert [stages[n] for n in ("5", "10", "11", "12", "13", "14")] == [
        "sentencepiece", "feature", "training", "decoding", "scoring", "packing"]


def test_each_stage_is_announced_under_its_number():
    text = (RECIPE / "run.sh").read_text()
    announced = re.findall(r'^ +log "Stage (\d+): (\S+)', text, re.M)
    assert [n for n, _ in announced] == ["1", "2", "3", "3", "4", "4", "4", "4", "5", "5", "10", "11", "12",
                                              "13", "14"]
    assert dict(announced)["11"] == "train" and dict(announced)["12"] == "decode"


def test_bad_options_fail_naming_them():
    for args, message in ((["--stages", "3"], "unknown option --stages"),
                          (["--train_config", "conf/x.yaml"], "unknown option --train_config"),
                          (["--skip_train", "maybe"], "--skip_train must be true or false, got 'maybe'"),
                          (["--inference_nj", "two"], "--inference_nj must be a whole number, got 'two'"),
                          (["--skip_stages", "2,3"], "--skip_stages must list stage numbers, got '2,3'"),
                          (["--stage", "7", "--stop_stage", "9"],
                           "--stage 7 --stop_stage 9 selects no stage to run (stages: 1-5, 10-14; skipped: none)")):
        proc = run_sh(RECIPE, *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)


def test_skip_switches_skip_s2t_sh_s_stages():
    for args, skipped in ((["--skip_data_prep", "true", "--stop_stage", "5"], "1 2 3 4 5"),
                          (["--skip_train", "true", "--stage", "10", "--stop_stage", "11"], "5 10 11"),
                          (["--skip_eval", "true", "--skip_packing", "true", "--stage", "12"], "12 13 14"),
                          (["--skip_stages", "14 12", "--skip_eval", "true", "--stage", "12"], "12 13 14")):
        proc = run_sh(RECIPE, *args)
        assert proc.returncode == 1 and f"selects no stage to run (stages: 1-5, 10-14; skipped: {skipped})" \
            in proc.stderr, (args, proc.stderr)


def test_db_sh_keeps_a_corpus_path_set_in_the_environment():
    env = {k: v for k, v in os.environ.items() if k not in ("ASTERISK", "MUSTC")}
    out = subprocess.run(["bash", "-c", f". {RECIPE / 'db.sh'}; echo \"[$ASTERISK] [$MUSTC]\""],
                         env=dict(env, ASTERISK="/x/debs"), capture_output=True, text=True, check=True).stdout
    assert out == "[/x/debs] []\n", out


def train_stage(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    """Stage 11 up to the launcher: --num_nodes 2 makes the local launcher refuse the job before ESPnet
    starts (it needs Slurm), so what runs is run.sh's folder choice and its check of the folder."""
    return run_sh(recipe, "--stage", "11", "--stop_stage", "11", "--num_nodes", "2", "--init", "scratch", *args)


def recorded_args(exp: Path) -> list:
    return json.loads((exp / "train_options.json").read_text())["s2t_args"]


def test_other_s2t_args_under_one_tag_stop_and_the_default_tag_keeps_them_apart(tmp_path, scratch_recipe):
    recipe = scratch_recipe(tmp_path)
    first = train_stage(recipe, "--tag", "mine", "--s2t_args", "--max_epoch 2")
    assert "Stage 11: train exp/mine" in first.stdout and "needs the slurm backend" in first.stderr, first.stderr
    assert recorded_args(recipe / "exp/mine") == ["--max_epoch", "2"]
    # the same tag with other training arguments: stopped before the launcher, naming the difference
    again = train_stage(recipe, "--tag", "mine", "--s2t_args", "--max_epoch 3")
    assert again.returncode == 1 and "needs the slurm backend" not in again.stderr, again.stderr
    assert "exp_guard: exp/mine was trained with other options" in again.stderr
    assert "--s2t_args: '--max_epoch 2' there, '--max_epoch 3' here" in again.stderr
    assert recorded_args(recipe / "exp/mine") == ["--max_epoch", "2"]
    # the same options pass the check (a stopped training resumes)
    assert "needs the slurm backend" in train_stage(recipe, "--tag", "mine", "--s2t_args", "--max_epoch 2").stderr
    # without --tag each set of training arguments has its own folder, named as s2t.sh names it
    for args, name in (("", "train_smoe_encdec_tiny"), ("--max_epoch 3 --optim_conf lr=0.002",
                                                        "train_smoe_encdec_tiny_max_epoch3_optim_conflr0.002")):
        proc = train_stage(recipe, "--s2t_args", args)
        assert f"Stage 11: train exp/{name} (" in proc.stdout and "needs the slurm backend" in proc.stderr, proc.stderr
        assert recorded_args(recipe / "exp" / name) == args.split()
    # another corpus and --expdir
    proc = train_stage(recipe, "--corpus", "tts_ui", "--expdir", "exp2")
    assert "Stage 11: train exp2/tts_ui_train_smoe_encdec_tiny (" in proc.stdout, proc.stderr
    record = json.loads((recipe / "exp2/tts_ui_train_smoe_encdec_tiny/train_options.json").read_text())
    assert record["stats_dir"] == "exp2/stats_tts_ui_bpe600" and record["train_data"] == "data/tts_ui_train_mix"
    # --init base (the default of --corpus asterisk): its own folder, the base's tokens and --init_param
    proc = train_stage(recipe, "--init", "base")
    assert "Stage 11: train exp/train_smoe_encdec_tiny_from_base (" in proc.stdout, proc.stderr
    record = json.loads((recipe / "exp/train_smoe_encdec_tiny_from_base/train_options.json").read_text())
    assert record["s2t_args"] == ["--init_param", "exp/pretrained/base_smoe_encdec_tiny/model.pth"]
    assert record["token_dir"] == "exp/pretrained/base_smoe_encdec_tiny"
    assert record["stats_dir"] == "exp/stats_asterisk_base_smoe_encdec_tiny"
