"""Tests for local/launch.py: options, the local backend, the Slurm parameters (the real-Slurm
tests are in test_launch_slurm.py) and the decoding helpers around a JOB array."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local import launch

LAUNCH = Path(launch.__file__)

def run_launcher(args, cwd):
    """Runs launch.py as run.sh would, returning the completed process."""
    return subprocess.run(
        [sys.executable, str(LAUNCH), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_local_array_substitutes_job_in_logs_and_command(tmp_path):
    proc = run_launcher(
        ["JOB=1:3", "exp/log/decode.JOB.log", "echo", "keys.JOB.scp", "output.JOB"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for job in (1, 2, 3):
        log = (tmp_path / f"exp/log/decode.{job}.log").read_text()
        lines = log.splitlines()
        assert lines[0] == f"# echo keys.{job}.scp output.{job}"
        assert lines[1].startswith("# Started at ")
        assert f"keys.{job}.scp output.{job}" in lines
        footer = r"^# Ended \(code 0\) at .*elapsed time \d+ seconds$"
        assert re.search(footer, log, re.M)
    assert not (tmp_path / "exp/log/decode.JOB.log").exists()


def test_local_jobs_share_the_cores(tmp_path, monkeypatch):
    """Parallel local jobs get cores // jobs threads each; a user's OMP_NUM_THREADS wins; one job inherits."""
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def threads_seen(args, name):
        """The OMP_NUM_THREADS that job 1 (or the single job) saw."""
        log = f"{name}.JOB.log" if any(a.startswith("JOB=") for a in args) else f"{name}.log"
        proc = run_launcher([*args, log, "bash", "-c", "echo threads=${OMP_NUM_THREADS:-unset}"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / log.replace("JOB", "1")).read_text()
        return [line for line in text.splitlines() if line.startswith("threads=")]

    share = max(1, cores // 2)
    assert threads_seen(["JOB=1:2"], "a") == [f"threads={share}"]
    assert "# Accounting: time=" in (tmp_path / "a.2.log").read_text()
    assert f" threads={share}\n" in (tmp_path / "a.2.log").read_text()  # the footer says it too
    assert threads_seen(["--max_jobs_run", "1", "JOB=1:3"], "b") == ["threads=unset"]
    assert threads_seen([], "c") == ["threads=unset"]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_seen(["JOB=1:2"], "d") == ["threads=3"]


def test_local_array_reports_failed_job_and_its_log(tmp_path):
    # Job 2 exits with 3, the others succeed.
    body = "echo hi; exit $(( JOB == 2 ? 3 : 0 ))"
    proc = run_launcher(["JOB=1:3", "log/x.JOB.log", "bash", "-c", body], tmp_path)
    assert proc.returncode != 0
    assert "1 of 3 job(s) failed" in proc.stderr
    assert "job 2: exit code 3, see log/x.2.log" in proc.stderr
    assert "job 1" not in proc.stderr and "job 3" not in proc.stderr
    assert "# Ended (code 3)" in (tmp_path / "log/x.2.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log/x.1.log").read_text()


def test_local_single_job_keeps_quoting_and_shell_operators(tmp_path):
    # A quoted argument stays one argument; a bare '|' and '>' act as in Kaldi.
    command = ["echo", "a  b", "SLURM_JOB_ID", "|", "tr", "a", "A", ">", "out.txt"]
    proc = run_launcher(["log/one.log", *command], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # JOB inside a longer word is not a job index: SLURM_JOB_ID is kept.
    assert (tmp_path / "out.txt").read_text() == "A  b SLURM_JOB_ID\n"
    header = (tmp_path / "log/one.log").read_text().splitlines()[0]
    assert header == "# echo 'a  b' SLURM_JOB_ID | tr a A > out.txt"


def test_local_jobs_run_in_parallel_by_default(tmp_path):
    # Each job waits until all three have started: only passes if concurrent.
    wait_all = (
        "touch started.JOB; for i in $(seq 100); do "
        "[ $(ls started.* | wc -l) -eq 3 ] && exit 0; sleep 0.05; done; exit 1"
    )
    proc = run_launcher(["JOB=1:3", "log/p.JOB.log", "bash", "-c", wait_all], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_local_max_jobs_run_serialises(tmp_path):
    body = "echo start JOB >> seq.txt; sleep 0.1; echo end JOB >> seq.txt"
    args = ["--max_jobs_run", "1", "JOB=1:3", "log/s.JOB.log", "bash", "-c", body]
    proc = run_launcher(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = (tmp_path / "seq.txt").read_text().split("\n")[:-1]
    # With one job at a time, every start is immediately followed by its end.
    pairs = [(events[i], events[i + 1]) for i in range(0, len(events), 2)]
    assert pairs == [(f"start {j}", f"end {j}") for j in (1, 2, 3)]


def test_array_needs_job_in_log_path(tmp_path):
    proc = run_launcher(["JOB=1:2", "log/same.log", "true"], tmp_path)
    assert proc.returncode == 2
    assert "needs JOB in the log path" in proc.stderr


def test_parse_args_options_and_ranges():
    args, indices = launch.parse_args(
        ["--gpu=2", "--mem", "8G", "--time", "1:00:00"] + ["JOB=4", "l.JOB.log", "cmd", "--x", "JOB=1:2"]
    )
    assert (args.gpu, args.mem, args.time, args.num_nodes) == (2, "8G", "1:00:00", 1)
    assert launch.parse_args(["l.log", "c"])[0].gpu is None  # not given: the slurm.conf's default applies
    assert indices == [4]
    # everything after LOG is the command, options and JOB= included
    assert (args.log, args.command) == ("l.JOB.log", ["cmd", "--x", "JOB=1:2"])
    assert launch.parse_args(["JOB=2:5", "l.JOB.log", "c"])[1] == [2, 3, 4, 5]
    assert launch.parse_args(["l.log", "c"])[1] == [None]


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "1", "log", "cmd"], "unrecognized arguments: --gpus"),
    (["--gp", "1", "log", "cmd"], "unrecognized arguments: --gp"),  # no abbreviations
    (["JOB=3:1", "l.JOB.log", "cmd"], "bad job range 'JOB=3:1'"),
    (["JOB=a:b", "l.JOB.log", "cmd"], "bad job range 'JOB=a:b'"),
    (["log.log"], "expected [JOB=a:b] LOG COMMAND"),
    (["--num_nodes", "0", "log", "cmd"], "--num_nodes >= 1"),
])
def test_parse_args_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("limit, mins", [
    ("90", 90), ("90:30", 91), ("1:00:00", 60), ("2:30:01", 151), ("2-00:00:00", 2880), ("1-2", 1560),
    ("1-0:30", 1470),
])
def test_minutes_reads_every_slurm_time_format(limit, mins):
    assert launch.minutes(limit) == mins


def test_minutes_rejects_other_text():
    with pytest.raises(launch.LaunchError, match="bad time limit 'UNLIMITED'"):
        launch.minutes("UNLIMITED")


def slurm_args(tmp_path, conf_text, *argv):
    (tmp_path / "slurm.conf").write_text(conf_text)
    args, _ = launch.parse_args(["--backend", "slurm", "--config", str(tmp_path / "slurm.conf"), *argv])
    return launch.slurm_parameters(args)


# A slurm.conf as ESPnet recipes ship it (egs2/*/conf/slurm.conf, read by Kaldi's utils/slurm.pl):
# memory per CPU, one CPU per GPU, options the launcher never gets (name, num_threads, the limits).
ESPNET_CONF = """\
# Default configuration
command sbatch --export=PATH
option name=* --job-name $0
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option num_nodes=* --nodes $0
default gpu=0
option gpu=0 -p cpu
option gpu=* -p gpu --gres=gpu:$0 -c $0  # at least one CPU per GPU
default gpu_limit=200
option gpu_limit=*
default cpu_limit=200
option cpu_limit=*
"""


def test_espnet_slurm_conf_gives_the_sbatch_options(tmp_path):
    params = slurm_args(tmp_path, ESPNET_CONF, "--gpu", "2", "--mem", "8G", "--time", "3:00:00",
                        "--max_jobs_run", "2", "JOB=1:3", "exp/log/decode.JOB.log", "echo")
    assert params == {
        "partition": "gpu", "gres": "gpu:2", "cpus_per_task": "2", "mem_per_cpu": "8G", "time": 180,
        "job_name": "decode", "nodes": 1, "ntasks_per_node": 1, "stderr_to_stdout": True, "array_parallelism": 2,
    }
    # no --gpu: the file's default gpu=0 line; no --time: the launcher's day; two nodes: its own
    params = slurm_args(tmp_path, ESPNET_CONF, "--num_nodes", "2", "exp/train.log", "echo")
    assert (params["partition"], params["time"], params["nodes"], params["ntasks_per_node"]) == ("cpu", 1440, 2, 1)
    assert "gres" not in params and "mem_per_cpu" not in params and "array_parallelism" not in params
    # --mem 0 is described by 'option mem=0' with nothing to add
    assert "mem_per_cpu" not in slurm_args(tmp_path, ESPNET_CONF, "--mem", "0", "log/x.log", "true")


def test_espnet_slurm_conf_makes_a_valid_sbatch_script(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_args(tmp_path, ESPNET_CONF, "--gpu", "4", "--num_nodes", "2", "exp/train.log", "c")
    script = _make_sbatch_string(command="true", folder=tmp_path, **params)
    for line in ("--partition=gpu", "--gres=gpu:4", "--cpus-per-task=4", "--nodes=2", "--ntasks-per-node=1",
                 "--time=1440", "--job-name=train"):
        assert f"#SBATCH {line}\n" in script, line
    # --export=PATH is left out: srun would pass it on, and the job runs in the launcher's environment
    assert "--export" not in script


def test_later_lines_win_and_every_spelling_is_read(tmp_path):
    conf = ("command sbatch -p short --time=10 -A proj --qos normal --exclusive -C avx512 --mem 4G\n"
            "option gpu=* -p gpu --gres=gpu:$0 --time 2-00:00:00 --hint=nomultithread\n")
    params = slurm_args(tmp_path, conf, "log/x.log", "true")
    assert (params["partition"], params["time"], params["account"], params["qos"]) == ("short", 10, "proj", "normal")
    assert (params["exclusive"], params["constraint"], params["mem"]) == (True, "avx512", "4G")
    params = slurm_args(tmp_path, conf, "--gpu", "1", "log/x.log", "true")
    assert (params["partition"], params["gres"], params["time"]) == ("gpu", "gpu:1", 2880)
    assert params["additional_parameters"] == {"hint": "nomultithread"}


@pytest.mark.parametrize("conf, argv, message", [
    ("partition = cpu\n", [], r"slurm.conf:1: cannot read 'partition = cpu'; expected 'command sbatch ARGS'"),
    ("# jobs\ncommand qsub -q all.q\n", [], r"slurm.conf:2: the command must be sbatch .*got 'qsub'"),
    ("option gpu=* -p gpu\n", [], r"slurm.conf: no 'command sbatch \.\.\.' line"),
    ("command sbatch\noption gpu=* -p gpu -Z 3\n", ["--gpu", "1"], r"slurm.conf:2: cannot map the sbatch option -Z"),
    ("command sbatch --output=x.log\n", [], r"slurm.conf:1: the launcher sets sbatch's --output itself"),
    ("command sbatch -o x.log\n", [], r"slurm.conf:1: the launcher sets sbatch's --output itself"),
    ("command sbatch\n", ["--mem", "8G"], r"slurm.conf: no line for --mem 8G: add 'option mem=\* \.\.\.'"),
    ("command sbatch\noption gpu=0\n", ["--gpu", "2"], r"slurm.conf: no line for --gpu 2"),
    ("command sbatch\ndefault foo=1\n", [], r"slurm.conf: no line for --foo 1"),
    ("command sbatch\noption num_nodes=* --nodes 3\n", ["--num_nodes", "2"],
     r"slurm.conf:2: --nodes 3 here, but the job needs 2"),
    ("command sbatch --ntasks-per-node=4\n", [], r"slurm.conf:1: --ntasks-per-node 4 here, but the job needs 1"),
    ("command sbatch --time=soon\n", [], r"slurm.conf:1: bad time limit 'soon'"),
    ("command sbatch -p\n", [], r"slurm.conf:1: the sbatch option -p needs a value"),
])
def test_slurm_conf_errors_name_the_file_and_line(tmp_path, conf, argv, message):
    with pytest.raises(launch.LaunchError, match=message):
        slurm_args(tmp_path, conf, *argv, "log/x.log", "true")


def test_a_gpu_free_job_needs_no_gpu_line(tmp_path):
    params = slurm_args(tmp_path, "command sbatch -p all\n", "--gpu", "0", "log/x.log", "true")
    assert params["partition"] == "all" and "gres" not in params


def test_repo_slurm_conf_is_valid_for_submitit(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    args, _ = launch.parse_args(["--backend", "slurm", "--gpu", "4", "--num_nodes", "2", "exp/train.log", "c"])
    params = launch.slurm_parameters(args)
    assert (params["partition"], params["gres"], params["time"]) == ("gpu", "gpu:4", 2880)
    # submitit accepts every key and writes the sbatch lines ESPnet users expect
    script = _make_sbatch_string(command="true", folder=tmp_path, **params)
    for line in ("--partition=gpu", "--gres=gpu:4", "--nodes=2", "--ntasks-per-node=1", "--mem=16G",
                 "--time=2880", "--cpus-per-task=4", "--job-name=train"):
        assert f"#SBATCH {line}\n" in script, line
    args, _ = launch.parse_args(["--backend", "slurm", "JOB=1:2", "exp/decode.JOB.log", "c"])
    assert launch.slurm_parameters(args)["partition"] == "cpu"


def test_local_rejects_multi_node(tmp_path):
    proc = run_launcher(["--num_nodes", "2", "log/t.log", "true"], tmp_path)
    assert proc.returncode == 2
    assert "needs the slurm backend" in proc.stderr


# Parallel decoding helpers: split_keys.py -> launch.py JOB array -> merge_decode.py.

RECIPE = LAUNCH.parent.parent
SPLIT_KEYS, MERGE_DECODE = "local.split_keys", "local.merge_decode"

# Stands in for s2t_inference: writes a 1-best line per key of its key file.
FAKE_DECODER = (
    "import sys, pathlib; keys, out = sys.argv[1], pathlib.Path(sys.argv[2]); "
    "d = out / '1best_recog'; d.mkdir(parents=True); "
    "ks = [l.split()[0] for l in open(keys)]; "
    "(d / 'text').write_text(''.join(f'{k} hyp of {k}\\n' for k in ks)); "
    "(d / 'score').write_text(''.join(f'{k} -1.5\\n' for k in ks))"
)


def write_scp(path, keys):
    path.write_text("".join(f"{k} /wav/{k}.wav\n" for k in keys))


def run_tool(module, args, cwd):
    """Runs a recipe module as run.sh does (``python -m local.<name>``), from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(RECIPE), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_split_keys_contiguous_and_complete(tmp_path):
    keys = [f"utt{i}" for i in range(7)]
    write_scp(tmp_path / "wav.scp", keys)
    args = ["--scp", "wav.scp", "--nj", "3", "--out_dir", "d"]
    proc = run_tool(SPLIT_KEYS, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "3\n"
    parts = [(tmp_path / f"d/keys.{j}.scp").read_text().splitlines() for j in (1, 2, 3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    # Contiguous: concatenating the parts gives back the scp, line for line.
    assert sum(parts, []) == (tmp_path / "wav.scp").read_text().splitlines()


def test_split_keys_deals_sorted_keys_to_jobs(tmp_path):
    import numpy as np
    import soundfile as sf

    seconds = {"a": 0.5, "b": 0.2, "c": 0.3, "d": 0.9, "e": 0.1}
    for key, sec in seconds.items():
        sf.write(tmp_path / f"{key}.wav", np.zeros(int(8000 * sec), dtype=np.float32), 8000)
    (tmp_path / "wav.scp").write_text("".join(f"{k} {tmp_path / k}.wav\n" for k in seconds))
    (tmp_path / "utt2bw").write_text("".join(f"{k} <{'nb' if k in 'ace' else 'wb'}>\n" for k in sorted(seconds)))
    proc = run_tool(SPLIT_KEYS, ["--scp", "wav.scp", "--nj", "2", "--out_dir", "d", "--sort_by_duration",
                                 "--extra", "utt2bw"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    parts = [[line.split()[0] for line in (tmp_path / f"d/keys.{j}.scp").read_text().splitlines()] for j in (1, 2)]
    # e b c a d from shortest to longest, dealt in turn: each job shortest first, similar audio per job
    assert parts == [["e", "c", "d"], ["b", "a"]]
    # the extra file follows each job's order, line for line (ESPnet streams its files in order)
    assert (tmp_path / "d/utt2bw.1").read_text() == "e <nb>\nc <nb>\nd <wb>\n"
    assert (tmp_path / "d/utt2bw.2").read_text() == "b <wb>\na <nb>\n"
    (tmp_path / "utt2bw").write_text("a <nb>\n")
    proc = run_tool(SPLIT_KEYS, ["--scp", "wav.scp", "--nj", "2", "--out_dir", "d", "--extra", "utt2bw"], tmp_path)
    assert proc.returncode == 1 and "no utt2bw line for b (--extra files: utt2bw)" in proc.stderr
    (tmp_path / "wav.scp").write_text("x /no/such.wav\n")
    proc = run_tool(SPLIT_KEYS, ["--scp", "wav.scp", "--nj", "1", "--out_dir", "d", "--sort_by_duration"], tmp_path)
    assert proc.returncode == 1 and "cannot read the audio of x (/no/such.wav)" in proc.stderr


def test_split_keys_splits_several_sets_as_one(tmp_path):
    for name, keys in (("nb", ["u1", "u2", "u3"]), ("wb", ["u1", "u2"])):  # tts_ui's NB and WB tests share keys
        (tmp_path / name).mkdir()
        write_scp(tmp_path / name / "wav.scp", keys)
        (tmp_path / name / "utt2bw").write_text("".join(f"{k} <{name}>\n" for k in keys))
    args = ["--nj", "2", "--out_dir", "d", "--scp", "nb/wav.scp", "--extra", "nb/utt2bw",
            "--scp", "wb/wav.scp", "--extra", "wb/utt2bw"]
    proc = run_tool(SPLIT_KEYS, args, tmp_path)
    assert proc.returncode == 0 and proc.stdout == "2\n", proc.stderr
    # keys become <set>/<key>, so a key of both sets is decoded once for each
    assert (tmp_path / "d/keys.1.scp").read_text() == "nb/u1 /wav/u1.wav\nnb/u2 /wav/u2.wav\nnb/u3 /wav/u3.wav\n"
    assert (tmp_path / "d/utt2bw.2").read_text() == "wb/u1 <wb>\nwb/u2 <wb>\n"
    # two sets in folders of one name could not be told apart: an error naming both files
    (tmp_path / "x/nb").mkdir(parents=True)
    write_scp(tmp_path / "x/nb/wav.scp", ["v1", "u2"])
    proc = run_tool(SPLIT_KEYS, ["--nj", "1", "--out_dir", "d", "--scp", "nb/wav.scp", "--scp", "x/nb/wav.scp"],
                    tmp_path)
    assert proc.returncode == 1 and "key u2 is in both nb/wav.scp and x/nb/wav.scp" in proc.stderr


def test_merge_decode_takes_back_each_set_of_a_several_set_split(tmp_path):
    for name in ("nb", "wb"):
        (tmp_path / name).mkdir()
        write_scp(tmp_path / name / "wav.scp", ["u2", "u1", f"only_{name}"])
    nj = int(run_tool(SPLIT_KEYS, ["--nj", "2", "--out_dir", "dec", "--scp", "nb/wav.scp", "--scp", "wb/wav.scp"],
                      tmp_path).stdout)
    proc = run_launcher([f"JOB=1:{nj}", "dec/log/decode.JOB.log", sys.executable, "-c", FAKE_DECODER]
                        + ["dec/keys.JOB.scp", "dec/output.JOB"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("nb", "wb"):
        proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec", "--keys", f"{name}/wav.scp",
                                       "--out_dir", f"{name}_out"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        # each set's own hypotheses (the fake decoder echoes the job key), under the set's keys
        assert (tmp_path / f"{name}_out/1best_recog/text").read_text() == "".join(
            f"{k} hyp of {name}/{k}\n" for k in sorted(["u1", "u2", f"only_{name}"]))


def test_split_keys_caps_nj_and_removes_stale_files(tmp_path):
    write_scp(tmp_path / "wav.scp", ["a", "b"])
    (tmp_path / "d").mkdir()
    (tmp_path / "d/keys.5.scp").write_text("old 1\n")
    (tmp_path / "d/utt2bw.3").write_text("old <nb>\n")
    (tmp_path / "utt2bw").write_text("a <nb>\nb <wb>\n")
    args = ["--scp", "wav.scp", "--nj", "8", "--out_dir", "d", "--extra", "utt2bw"]
    proc = run_tool(SPLIT_KEYS, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n"
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names == ["keys.1.scp", "keys.2.scp", "utt2bw.1", "utt2bw.2"]


def test_split_keys_rejects_duplicate_keys(tmp_path):
    (tmp_path / "wav.scp").write_text("a x\nb y\na z\n")
    args = ["--scp", "wav.scp", "--nj", "2", "--out_dir", "d"]
    proc = run_tool(SPLIT_KEYS, args, tmp_path)
    assert proc.returncode == 1
    assert "wav.scp:3: key a repeated" in proc.stderr


def decode_in_parallel(tmp_path, keys, nj):
    """Splits, runs the fake decoder as a JOB array and returns the dir."""
    write_scp(tmp_path / "wav.scp", keys)
    args = ["--scp", "wav.scp", "--nj", str(nj), "--out_dir", "dec"]
    nj = int(run_tool(SPLIT_KEYS, args, tmp_path).stdout)
    proc = run_launcher(
        [f"JOB=1:{nj}", "dec/log/decode.JOB.log", sys.executable, "-c", FAKE_DECODER]
        + ["dec/keys.JOB.scp", "dec/output.JOB"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "dec", nj


def test_merge_decode_sorted_union(tmp_path):
    keys = ["c2", "a1", "b3", "e9", "d0"]
    out, nj = decode_in_parallel(tmp_path, keys, 2)
    proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = (out / "1best_recog/text").read_text().splitlines()
    assert merged == [f"{k} hyp of {k}" for k in sorted(keys)]
    assert (out / "1best_recog/score").read_text().count("\n") == len(keys)
    # Files no job wrote (token, ...) are skipped, not invented.
    assert not (out / "1best_recog/token").exists()


def test_merge_decode_keys_of_one_set(tmp_path):
    out, nj = decode_in_parallel(tmp_path, ["nb_1", "wb_1", "nb_2", "wb_2", "nb_3"], 2)
    write_scp(tmp_path / "nb.scp", ["nb_3", "nb_1", "nb_2"])
    proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec", "--keys", "nb.scp", "--out_dir", "nb"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "nb/1best_recog/text").read_text() == "".join(f"nb_{i} hyp of nb_{i}\n" for i in (1, 2, 3))
    write_scp(tmp_path / "nb.scp", ["nb_1", "nb_4"])
    proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec", "--keys", "nb.scp", "--out_dir", "nb"], tmp_path)
    assert proc.returncode == 1 and "1 key(s) of nb.scp not in dec/keys.*.scp: nb_4" in proc.stderr


def test_merge_decode_names_missing_keys(tmp_path):
    out, nj = decode_in_parallel(tmp_path, ["u1", "u2", "u3", "u4"], 2)
    text = out / "output.2/1best_recog/text"
    text.write_text(text.read_text().splitlines()[0] + "\n")  # drop u4
    proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec"], tmp_path)
    assert proc.returncode == 1
    assert "1 key(s) not decoded: u4" in proc.stderr
    assert "1best_recog/text" in proc.stderr


def test_merge_decode_names_job_without_output(tmp_path):
    out, nj = decode_in_parallel(tmp_path, ["u1", "u2", "u3"], 3)
    (out / "output.2/1best_recog/score").unlink()
    proc = run_tool(MERGE_DECODE, ["--nj", str(nj), "--dir", "dec"], tmp_path)
    assert proc.returncode == 1
    assert "score is missing from 1 of 3 jobs" in proc.stderr
    assert "output.2/1best_recog/score" in proc.stderr
