"""maint/gpu_table.py: the deadline stops whole process groups; finished jobs keep their codes;
run.sh gets the bundle's corpus and sizes, through options and stages run.sh has."""

import json
import os
import re
import subprocess
import time

import pytest

from maint.gpu_table import (
    RECIPE,
    decode_command,
    get_parser,
    run_sh_args,
    run_side_by_side,
    train_command,
    wait_group,
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited: /proc/<pid>/stat state Z
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_deadline_stops_the_job_and_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    # a job that starts a grandchild (as run.sh starts the launcher, which starts python)
    slow = subprocess.Popen(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], start_new_session=True)
    quick = subprocess.Popen(["bash", "-c", "exit 3"], start_new_session=True)
    t = time.time()
    codes = wait_group([slow, quick], time.time() + 2)
    assert codes == [-9, 3], codes
    assert time.time() - t < 20
    grandchild = int(pidfile.read_text())
    time.sleep(0.5)
    assert not _alive(grandchild), f"grandchild {grandchild} survived the deadline"


def test_side_by_side_logs_each_job(tmp_path):
    codes = run_side_by_side({"a": ["bash", "-c", "echo one"], "b": ["bash", "-c", "echo two >&2; exit 1"]},
                             tmp_path, "train", dict(os.environ), time.time() + 60)
    assert codes == {"a": 0, "b": 1}
    assert (tmp_path / "a.train.log").read_text() == "one\n"
    assert (tmp_path / "b.train.log").read_text() == "two\n"


def _bundle(tmp_path, corpus):
    sizes = ["--num_train", "3000", "--num_dev", "0", "--num_test", "0", "--num_ddtp_test", "0", "--seed", "1"]
    (tmp_path / "bundle.json").write_text(json.dumps({"corpus": corpus, "sizes": sizes}))
    return tmp_path


def test_asterisk_runs_use_the_corpus_and_its_own_test_sets(tmp_path):
    a = get_parser().parse_args(["run", "--out_dir", str(tmp_path), "--corpus", "asterisk"])
    args = run_sh_args(a, _bundle(tmp_path, "asterisk"))
    assert args[:7] == ["./run.sh", "--corpus", "asterisk", "--init", "scratch", "--tts_ui_sizes", "3000 0 0"], args
    assert "--test_sets" not in args, args  # run.sh's own: the real Asterisk test_nb / test_wb


def test_tts_ui_runs_keep_the_asterisk_tests_beside_their_own(tmp_path):
    a = get_parser().parse_args(["run", "--out_dir", str(tmp_path)])
    args = run_sh_args(a, _bundle(tmp_path, "tts_ui"))
    assert args[args.index("--corpus") + 1] == "tts_ui"
    assert args[args.index("--test_sets") + 1] == "tts_ui_test_nb tts_ui_test_wb test_nb test_wb"


def test_a_bundle_of_the_other_corpus_is_refused(tmp_path):
    a = get_parser().parse_args(["run", "--out_dir", str(tmp_path), "--corpus", "asterisk"])
    with pytest.raises(SystemExit, match="bundled for --corpus tts_ui, not asterisk"):
        run_sh_args(a, _bundle(tmp_path, "tts_ui"))


def test_run_sh_calls_use_its_options_and_stages(tmp_path):
    """Every option the driver gives run.sh is one of run.sh's; training is stage 11, the rest 12-14."""
    head = (RECIPE / "run.sh").read_text().split(". local/parse_options.sh", 1)[0]
    run_sh_options = set(re.findall(r"^(\w+)=", head, re.M))
    a = get_parser().parse_args(["run", "--out_dir", str(tmp_path), "--ngpu", "1"])
    run_sh = run_sh_args(a, _bundle(tmp_path, "tts_ui"))
    train = train_command(a, run_sh, "tts_ui_smoe_encdec_seed2", "smoe_encdec", 2)
    decode = decode_command(a, run_sh, "tts_ui_smoe_encdec_seed2", "smoe_encdec")
    for command in (train, decode):
        names = {word[2:] for word in command[1:] if word.startswith("--") and " " not in word}
        assert names <= run_sh_options, names - run_sh_options
    flags = dict(zip(train[1::2], train[2::2]))
    assert (flags["--stage"], flags["--stop_stage"], flags["--tag"]) == ("11", "11", "tts_ui_smoe_encdec_seed2")
    assert flags["--s2t_config"] == "conf/train_smoe_encdec.yaml" and flags["--s2t_args"].endswith(" --seed 2")
    flags = dict(zip(decode[1::2], decode[2::2]))
    assert (flags["--stage"], flags["--stop_stage"], flags["--gpu_inference"]) == ("12", "14", "true")
    assert flags["--inference_s2t_model"] == "valid.acc.best.pth"
