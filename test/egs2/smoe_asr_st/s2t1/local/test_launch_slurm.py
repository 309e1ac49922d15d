"""local/launch.py --backend slurm against a real Slurm cluster.

slurm_cluster.sh (next to this file) installs Debian's slurm-wlm and munge if needed
and starts slurmctld and two slurmd nodes (smoe1, smoe2) on this machine, once per
machine; the session fixture below calls it. Everything here goes through sbatch,
srun and squeue of that cluster: job arrays, exit codes, one log per JOB index, a
failing and a killed job named in the report, and a tiny ESPnet S-MoE training on
two nodes (gloo DDP through ESPnet's --dist_launcher slurm) whose model a 2-job
decode array then decodes, as run.sh's stages 6 and 7 do.
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from local import launch

LAUNCH = Path(launch.__file__)
RECIPE = LAUNCH.parents[1]
CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
TEST_CONF = "partition = debug\ncpus_per_task = 1\ntime = 15\n"


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
    assert "#SBATCH --job-name=decode" in script and "#SBATCH --time=15" in script
    assert not (work / "exp/log/decode.JOB.log").exists()


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


def test_espnet_ddp_training_on_two_nodes_then_decode_array(work):
    """run.sh's stage 6 with --num_nodes 2 and stage 7 with --nj 2, on the tiny AN4 model."""
    an4 = _an4_helpers()
    start = time.monotonic()
    data = an4.make_dataset(work)
    conf = yaml.safe_load(an4.tiny_config(work).read_text())
    conf.update(max_epoch=1, num_iters_per_epoch=4, batch_size=2)
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(conf))
    common = an4._common_args(work, data)
    py = sys.executable

    # no stats stage (a Python process less: importing ESPnet is most of each job's time): no feature
    # normalisation, and the shape file that batch_type "sorted" needs written here (samples per utterance)
    shapes = "".join(f"{utt} {sf.info(wav).frames}\n" for utt, wav in
                     (line.split() for line in (data / "train/wav.scp").read_text().splitlines()))
    (work / "speech_shape").write_text(shapes)

    # training: one task per node, ESPnet reads its rank and world size from srun (run.sh's num_nodes > 1 path;
    # --ngpu 0 and gloo for CPU)
    exp = work / "exp"
    proc = slurm(work, "--num_nodes", "2", "exp/train.log", py, "-m", "espnet_smoe.bin.s2t_train",
                 "--config", str(config), *common, "--normalize", "none",
                 "--train_shape_file", "speech_shape", "--valid_shape_file", "speech_shape",
                 "--multiprocessing_distributed", "true", "--dist_launcher", "slurm", "--dist_backend", "gloo",
                 "--dist_init_method", f"file://{exp}/.dist_init", "--output_dir", "exp", timeout=600)
    rank0 = (exp / "train.log").read_text()
    assert proc.returncode == 0, proc.stderr + rank0[-3000:]
    # rank 0 logs as [host:0/2]: a world of two (gloo's init returns only when both joined)
    assert re.search(r"^\[[^\]:]+:0/2\] .*INFO: 1epoch results", rank0, re.M), rank0[-2000:]
    rank1 = (exp / "train.rank1.log").read_text()
    assert "task 1 of 2)" in rank1.splitlines()[1] and "# Ended (code 0)" in rank1
    nodes = {re.search(r"\((smoe[12]), slurm job", text)[1] for text in (rank0, rank1)}
    assert nodes == {"smoe1", "smoe2"}
    state = torch.load(exp / "1epoch.pth", map_location="cpu")
    assert state["decoder.decoders.0.feed_forward.w_1"].shape[0] == 2  # S-MoE experts were trained
    assert (exp / "valid.acc.best.pth").exists()
    print(f"data and DDP training: {time.monotonic() - start:.0f} s")

    # decoding: run.sh's split -> JOB array -> merge
    split = subprocess.run([py, "-m", "local.split_keys", "--scp", str(data / "test/wav.scp"), "--extra",
                            str(data / "test/utt2bw"), "--nj", "2", "--out_dir", "dec"], cwd=work,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(RECIPE)})
    assert split.stdout == "2\n", split.stderr
    proc = slurm(work, "JOB=1:2", "dec/logs/decode.JOB.log", py, "-m", "espnet_smoe.bin.s2t_inference",
                 "--s2t_train_config", "exp/config.yaml", "--s2t_model_file", "exp/valid.acc.best.pth",
                 "--data_path_and_name_and_type", "dec/keys.JOB.scp,speech,sound",
                 "--data_path_and_name_and_type", "dec/utt2bw.JOB,bandwidth,text", "--task_sym", "asr", "st_fra",
                 "--lang_sym", "eng", "--ngpu", "0", "--beam_size", "2", "--maxlenratio", "0.3",
                 "--output_dir", "dec/output.JOB")
    assert proc.returncode == 0, proc.stderr + (work / "dec/logs/decode.1.log").read_text()[-3000:]
    all_keys = set()
    for job in (1, 2):
        keys = {line.split()[0] for line in (work / f"dec/keys.{job}.scp").read_text().splitlines()}
        all_keys |= keys
        assert "slurm job" in header(work / f"dec/logs/decode.{job}.log")
        for task in ("asr", "st_fra"):
            hyps = (work / f"dec/output.{job}/{task}/1best_recog/text").read_text().splitlines()
            assert {line.split()[0] for line in hyps} == keys, (job, task)
    test_keys = {line.split()[0] for line in (data / "test/wav.scp").read_text().splitlines()}
    assert all_keys == test_keys and len(test_keys) >= 2
    # run.sh's merge: every test utterance once, in both tasks
    for task in ("asr", "st_fra"):
        proc = subprocess.run([py, "-m", "local.merge_decode", "--nj", "2", "--dir", "dec", "--task", task,
                               "--out_dir", f"merged_{task}"], cwd=work, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(RECIPE)})
        assert proc.returncode == 0, proc.stderr
        merged = [line.split()[0] for line in (work / f"merged_{task}/1best_recog/text").read_text().splitlines()]
        assert merged == sorted(test_keys)
