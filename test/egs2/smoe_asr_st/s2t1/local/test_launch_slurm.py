"""local/launch.py --backend slurm against a real Slurm cluster.

slurm_cluster.sh (next to this file) installs Debian's slurm-wlm and munge if needed
and starts slurmctld and two slurmd nodes (smoe1, smoe2) on this machine, once per
machine; the session fixture below calls it. Everything here goes through sbatch,
srun and squeue of that cluster: job arrays, exit codes, one log per JOB index, a
failing and a killed job named in the report, and cmd_backend=slurm ./run.sh
training a tiny S-MoE model on two nodes (gloo DDP through ESPnet's --dist_launcher
slurm) and decoding it with a 2-job array.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from local import launch

LAUNCH = Path(launch.__file__)
CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
# ESPnet's slurm.conf format, with ESPnet's --export=PATH (left out: the jobs run in the submitting environment)
TEST_CONF = """\
command sbatch --export=PATH -p debug --cpus-per-task 1
default time=15
option time=* --time $0
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
"""


@pytest.fixture(scope="session")
def slurm_cluster():
    """Starts (or finds) the local cluster; SLURM_CONF points the clients at it."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(CLUSTER_SCRIPT)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf = re.search(r"^SLURM_CONF=(.*)$", proc.stdout, re.M)[1]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True).stdout
    print(f"slurm cluster ready in {time.monotonic() - start:.1f} s: {nodes.split()}")
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture
def work(tmp_path, slurm_cluster):
    (tmp_path / "slurm.conf").write_text(TEST_CONF)
    return tmp_path


def slurm(work, *args, timeout=300):
    """Runs the launcher with the slurm backend as run.sh does (python -m local.launch)."""
    return subprocess.run(
        [sys.executable, str(LAUNCH), "--backend", "slurm", "--config", "slurm.conf", *args],
        cwd=work, capture_output=True, text=True, timeout=timeout,
    )


def header(log: Path) -> str:
    return log.read_text().splitlines()[1]


def test_array_one_log_per_job_index(work):
    proc = slurm(work, "JOB=1:2", "exp/log/decode.JOB.log", "bash", "-c",
                 'echo "keys.JOB.scp $SLURM_ARRAY_TASK_ID $SLURMD_NODENAME"', "|", "tr", "k", "K")
    assert proc.returncode == 0, proc.stderr
    ids = set()
    for job in (1, 2):
        log = work / f"exp/log/decode.{job}.log"
        lines = log.read_text().splitlines()
        # JOB replaced in the log path and in the command; a bare | is a pipe in the job
        assert lines[0] == f"# bash -c 'echo \"keys.{job}.scp $SLURM_ARRAY_TASK_ID $SLURMD_NODENAME\"' | tr k K"
        # run by Slurm: an array task of the cluster's nodes
        match = re.fullmatch(r"# Started at .* on \S+ \((smoe[12]), slurm job (\d+)_(\d+), task 0 of 1\)", lines[1])
        assert match, lines[1]
        node, array_id, task = match.groups()
        ids.add(array_id)
        assert lines[2] == f"Keys.{job}.scp {task} {node}"
        assert re.fullmatch(r"# Ended \(code 0\) at .*, elapsed time \d+ seconds", lines[-1])
    assert len(ids) == 1  # one submission: a job array
    script = next((work / "exp/log/submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --partition=debug" in script
    assert "--export" not in script
    assert "#SBATCH --job-name=decode" in script and "#SBATCH --time=15" in script
    assert not (work / "exp/log/decode.JOB.log").exists()


def test_job_gets_the_submitting_environment_despite_export_path(work, monkeypatch):
    """With sbatch --export=PATH (ESPnet's slurm.conf) a job would start with PATH and Slurm's variables
    only, and srun would pass that on to submitit's start of the job, which needs its own variables: the
    launcher leaves --export out, and the command sees the submitting shell's variables and Slurm's."""
    monkeypatch.setenv("SMOE_SUBMIT_MARK", "from the submitting shell")
    proc = slurm(work, "log/env.log", "bash", "-c", 'echo "[$SMOE_SUBMIT_MARK] [$SLURM_JOB_PARTITION]"')
    assert proc.returncode == 0, proc.stderr
    assert "\n[from the submitting shell] [debug]\n" in (work / "log/env.log").read_text()


def test_failed_array_job_is_named_with_its_log(work):
    proc = slurm(work, "JOB=1:3", "log/d.JOB.log", "bash", "-c", "echo job JOB; exit $(( JOB == 3 ? 5 : 0 ))")
    assert proc.returncode == 1
    assert "1 of 3 job(s) failed" in proc.stderr
    assert "job 3: exit code 5, see log/d.3.log" in proc.stderr
    assert "job 1:" not in proc.stderr and "job 2:" not in proc.stderr
    for job, code in ((1, 0), (2, 0), (3, 5)):
        text = (work / f"log/d.{job}.log").read_text()
        assert f"\njob {job}\n" in text and f"# Ended (code {code})" in text


def test_job_ended_by_slurm_is_named_with_its_state(work):
    # Job 2 kills the launcher's process in the job (no exit code reaches the launcher):
    # Slurm marks the job FAILED, the launcher reads that state and reports it.
    proc = slurm(work, "JOB=1:2", "log/k.JOB.log", "bash", "-c", "[ JOB = 2 ] && kill -9 $PPID; echo alive")
    assert proc.returncode == 1
    assert "job 2: ended by Slurm (state FAILED), see log/k.2.log" in proc.stderr
    assert "# Ended (code 0)" in (work / "log/k.1.log").read_text()
    assert "# Ended" not in (work / "log/k.2.log").read_text()


def test_max_jobs_run_throttles_the_array(work):
    body = "echo start JOB >> seq.txt; sleep 1; echo end JOB >> seq.txt"
    proc = slurm(work, "--max_jobs_run", "1", "JOB=1:3", "log/s.JOB.log", "bash", "-c", body)
    assert proc.returncode == 0, proc.stderr
    events = (work / "seq.txt").read_text().splitlines()
    # one job at a time: every start is followed by its own end
    assert [events[i].split()[1] == events[i + 1].split()[1] for i in range(0, 6, 2)] == [True] * 3
    assert sorted(events) == sorted(f"{e} {j}" for j in (1, 2, 3) for e in ("start", "end"))


def test_two_nodes_one_task_each_with_a_log_per_rank(work):
    proc = slurm(work, "--num_nodes", "2", "exp/train.log", "bash", "-c",
                 'echo "rank $SLURM_PROCID of $SLURM_NTASKS on $SLURMD_NODENAME, nodes $SLURM_STEP_NUM_NODES"')
    assert proc.returncode == 0, proc.stderr
    nodes = set()
    for rank, log in enumerate((work / "exp/train.log", work / "exp/train.rank1.log")):
        text = log.read_text()
        node = re.search(rf"rank {rank} of 2 on (smoe[12]), nodes 2\n", text)[1]
        assert f"({node}, slurm job " in header(log) and f"task {rank} of 2)" in header(log)
        assert "# Ended (code 0)" in text
        nodes.add(node)
    assert nodes == {"smoe1", "smoe2"}
    # a failing task r > 0 is named with its own log
    proc = slurm(work, "--num_nodes", "2", "exp/fail.log", "bash", "-c", "exit $(( SLURM_PROCID * 7 ))")
    assert proc.returncode == 1
    assert "job: task 1 exit code 7 (exp/fail.rank1.log), see exp/fail.log" in proc.stderr
    assert "# Ended (code 7)" in (work / "exp/fail.rank1.log").read_text()


def test_rejected_submission_is_an_error(work):
    # the cluster has no GPUs: sbatch refuses --gres=gpu:1 and says why
    proc = slurm(work, "--gpu", "1", "log/g.log", "true")
    assert proc.returncode == 2
    assert "launch.py: error: sbatch rejected the job" in proc.stderr
    assert "Invalid generic resource (gres) specification" in proc.stderr


def _an4_helpers():
    """The plugin tests' tiny AN4 experiment builders (test/espnet_smoe/bin/conftest.py)."""
    path = Path(__file__).parents[5] / "test/espnet_smoe/bin/conftest.py"
    spec = importlib.util.spec_from_file_location("an4_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(path: Path) -> list:
    return [line.split()[0] for line in path.read_text().splitlines()]


def test_run_sh_trains_on_two_nodes_and_decodes_a_job_array(work, scratch_recipe):
    """cmd_backend=slurm ./run.sh, stages 10 (statistics) -> 11 (training) -> 12 (decoding), on the tiny AN4 data.

    Training runs as run.sh runs it for --num_nodes 2: one srun task per node, ESPnet's
    --dist_launcher slurm reads the ranks (gloo on CPU: --ngpu 0). Stages 1-5 (corpus
    download, data prep, tokens) are replaced by a prepared data dir: they take minutes
    and have their own tests.
    """
    an4 = _an4_helpers()
    start = time.monotonic()
    recipe = scratch_recipe(work / "root")
    data = an4.make_dataset(work)
    for name, split in (("train_mix", "train"), ("dev_mix", "train"), ("an4_test", "test")):
        shutil.copytree(data / split, recipe / "data" / name)
    tokens = recipe / "data/token_list/asterisk_bpe_unigram600"
    tokens.mkdir(parents=True)
    for name in ("bpe.model", "tokens.txt"):
        shutil.copy(work / name, tokens / name)
    conf = yaml.safe_load(an4.tiny_config(work).read_text())
    conf.update(max_epoch=1, num_iters_per_epoch=4, batch_size=2)
    (recipe / "train_an4.yaml").write_text(yaml.safe_dump(conf))

    env = {**os.environ, "cmd_backend": "slurm", "slurm_conf": str(work / "slurm.conf")}
    proc = subprocess.run(
        ["./run.sh", "--stage", "10", "--stop_stage", "12", "--ngpu", "0", "--num_nodes", "2", "--init", "scratch",
         "--inference_nj", "2", "--s2t_config", "train_an4.yaml", "--tag", "an4", "--test_sets", "an4_test",
         "--s2t_args", "--dist_backend gloo", "--inference_args", "--beam_size 2 --maxlenratio 0.3"],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    exp = recipe / "exp/an4"
    rank0 = (exp / "train.log").read_text() if (exp / "train.log").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + rank0[-3000:]
    print(f"tiny AN4 through cmd_backend=slurm ./run.sh: {time.monotonic() - start:.0f} s")

    # statistics: a single job on the cluster
    assert "slurm job" in header(recipe / "exp/stats_asterisk_bpe600/logs/stats.log")
    # training: rank 0 logs as [host:0/2], a world of two (gloo's init returns only when both joined)
    assert re.search(r"^\[[^\]:]+:0/2\] .*INFO: 1epoch results", rank0, re.M), rank0[-2000:]
    rank1 = (exp / "train.rank1.log").read_text()
    assert "task 1 of 2)" in rank1.splitlines()[1] and "# Ended (code 0)" in rank1
    assert "--dist_launcher slurm" in rank1.splitlines()[0]
    assert {re.search(r"\((smoe[12]), slurm job", text)[1] for text in (rank0, rank1)} == {"smoe1", "smoe2"}
    state = torch.load(exp / "1epoch.pth", map_location="cpu")
    assert state["decoder.decoders.0.feed_forward.w_1"].shape[0] == 2  # the S-MoE model was trained

    # decoding: a 2-job array; each job decoded its keys in both tasks; the merge has every test utterance
    decode = next(exp.glob("decode_*"))
    arrays = set()
    for job in (1, 2):
        match = re.search(r"slurm job (\d+)_\d+, task 0 of 1", header(decode / f"jobs/logs/decode.{job}.log"))
        arrays.add(match[1])
        keys = _keys(decode / f"jobs/keys.{job}.scp")
        for task in ("asr", "st_fra"):
            assert sorted(_keys(decode / f"jobs/output.{job}/{task}/1best_recog/text")) == sorted(keys)
    assert len(arrays) == 1
    test_keys = sorted(_keys(data / "test/wav.scp"))
    assert len(test_keys) >= 2
    for task in ("asr", "st_fra"):
        assert _keys(decode / f"an4_test_{task}/1best_recog/text") == test_keys
