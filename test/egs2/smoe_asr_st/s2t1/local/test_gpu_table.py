"""local/gpu_table.py: the deadline stops whole process groups; finished jobs keep their codes."""

import os
import subprocess
import time

from local.gpu_table import run_side_by_side, wait_group


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
