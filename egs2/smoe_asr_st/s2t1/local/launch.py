#!/usr/bin/env python3
"""Job launcher behind ``${train_cmd}`` / ``${cuda_cmd}`` / ``${decode_cmd}`` (see cmd.sh).

Kaldi-style usage, as in ESPnet recipes::

    python -m local.launch [--backend local|slurm] [--config conf/slurm.conf]
        [--max_jobs_run N] [--gpu N] [--num_nodes N] [--mem X] [--time T]
        [JOB=a:b] LOG COMMAND [ARG ...]

With ``JOB=a:b`` the command runs once per index ``a..b``; the word ``JOB`` in LOG and
in every argument becomes the index (``keys.JOB.scp`` -> ``keys.3.scp``; ``SLURM_JOB_ID``
is left alone). Each job writes its output to its own log, between a header (command,
host) and a footer (exit code, elapsed time). An argument that is exactly a shell
operator (``\\|``, ``\\>`` ... escaped in run.sh) acts as one inside the job, as in
Kaldi's run.pl; every other argument reaches the program verbatim.

Backends:
  local: the jobs run here, at most ``--max_jobs_run`` at a time (default: all). When
    several run at once and ``OMP_NUM_THREADS`` is not set, each job gets an equal share of
    this machine's cores as ``OMP_NUM_THREADS`` (at least 1): PyTorch otherwise starts one
    thread per core in every job, and on 2 cores two decoding jobs of two threads each took
    3.7x as long as with one thread each (spinning threads wait for each other).
  slurm: submitit submits them (a job array for ``JOB=a:b``) with the options of
    conf/slurm.conf and waits. ``--num_nodes N`` (N > 1) runs one task per node under
    srun, as ESPnet's ``--dist_launcher slurm --multiprocessing_distributed true``
    expects (it starts one worker per GPU on each node); task r > 0 logs to
    ``<log stem>.rank<r>.log``. submitit's own files go to ``<log dir>/submitit/``.

The exit status is 0 only if every job succeeded; otherwise each failed job is named on
stderr with its exit code (or the Slurm state that ended it) and its log.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

JOB = re.compile(r"(?<![A-Za-z0-9_])JOB(?![A-Za-z0-9_])")  # whole word: not SLURM_JOB_ID
SHELL_OPERATORS = {"|", "||", "&&", ";", "<", ">", ">>", "2>", "2>>", "&>", "2>&1", "|&"}
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "slurm.conf"


class LaunchError(Exception):
    """A usage or configuration error, reported without a traceback."""


def job_log(log: str, index: int | None, rank: int = 0) -> Path:
    """Log path of one job (and of task ``rank`` > 0 of a multi-node job)."""
    path = Path(log if index is None else JOB.sub(str(index), log))
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}") if rank else path


def run_job(command: list[str], log: str, index: int | None, cwd: str, threads: int | None = None) -> int:
    """Runs one job with ``bash -o pipefail`` in cwd and writes its log; here or inside Slurm.

    ``threads``: the job's ``OMP_NUM_THREADS`` (None: inherited).

    Returns:
        The exit code (negative: killed by that signal).
    """
    sub = (lambda a: a) if index is None else functools.partial(JOB.sub, str(index))
    cmd = " ".join(a if a in SHELL_OPERATORS else shlex.quote(sub(a)) for a in command)
    rank, ntasks = os.environ.get("SLURM_PROCID", "0"), os.environ.get("SLURM_NTASKS", "1")
    where = socket.gethostname()
    if "SLURM_JOB_ID" in os.environ:
        env = os.environ
        array = "SLURM_ARRAY_JOB_ID" in env
        jid = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if array else env["SLURM_JOB_ID"]
        where += f" ({env.get('SLURMD_NODENAME', '?')}, slurm job {jid}, task {rank} of {ntasks})"
    path = Path(cwd, job_log(log, index, int(rank) if ntasks != "1" else 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fd:
        fd.write(f"# {cmd}\n# Started at {time.ctime()} on {where}\n")
        fd.flush()
        start = time.monotonic()
        env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
        threads_used = os.environ.get("OMP_NUM_THREADS", "default") if threads is None else threads
        code = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=fd, stderr=subprocess.STDOUT, env=env).returncode
        took = round(time.monotonic() - start)
        fd.write(f"# Accounting: time={took} threads={threads_used}\n"
                 f"# Ended (code {code}) at {time.ctime()}, elapsed time {took} seconds\n")
    return code


def run_local(args: argparse.Namespace, indices: list) -> dict:
    """Runs the jobs in threads. Not submitit's LocalExecutor: it has no limit on
    parallel jobs (--max_jobs_run), kills jobs after a default 2 min timeout and
    rewrites CUDA_VISIBLE_DEVICES; a thread pool around run_job is all that is needed."""
    if args.num_nodes > 1:
        raise LaunchError(f"--num_nodes {args.num_nodes} needs the slurm backend (cmd_backend=slurm in cmd.sh)")
    parallel = min(args.max_jobs_run or len(indices), len(indices))
    threads = None
    if parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // parallel)
    with ThreadPoolExecutor(parallel) as pool:
        codes = pool.map(lambda i: run_job(args.command, args.log, i, os.getcwd(), threads), indices)
        return dict(zip(indices, codes))


def minutes(limit: str) -> int:
    """Slurm time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in whole
    minutes: submitit computes with minutes when Slurm warns a job of its end."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", limit.strip())
    if not match:
        raise LaunchError(f"bad time limit {limit!r}; expected M, M:S, H:M:S, D-H, D-H:M or D-H:M:S")
    days, a, b, c = (int(x) if x else 0 for x in match.groups())
    if match[1] or match[4]:  # D-H[:M[:S]] or H:M:S
        return days * 1440 + a * 60 + b + (c > 0)
    return a + (b > 0)  # M[:S]


def slurm_parameters(args: argparse.Namespace) -> dict:
    """submitit SlurmExecutor parameters from conf/slurm.conf (``key = value`` lines,
    keys named as submitit names them, plus gpu_partition and a gres template) and
    the launcher options, which win over the file."""
    if not args.config.is_file():
        raise LaunchError(f"slurm config {args.config} not found (pass --config)")
    conf = {}
    for lineno, raw in enumerate(args.config.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        key, eq, value = (p.strip() for p in line.partition("="))
        if line and not (eq and key):
            raise LaunchError(f"{args.config}:{lineno}: expected 'key = value', got {raw!r}")
        if line and value:
            conf[key] = value
    gpu_partition, gres = conf.pop("gpu_partition", None), conf.pop("gres", "gpu:{gpu}")
    if args.gpu > 0:
        conf.update(gres=gres.format(gpu=args.gpu), **({"partition": gpu_partition} if gpu_partition else {}))
    name = JOB.sub("", Path(args.log).name).removesuffix(".log").strip(".").replace("..", ".")
    conf.update(job_name=name or "job", nodes=args.num_nodes, ntasks_per_node=1, stderr_to_stdout=True,
                # without a time, submitit would ask for its default of 5 minutes
                mem=args.mem or conf.get("mem"), time=minutes(args.time or conf.get("time", "1-00:00:00")))
    if args.max_jobs_run:
        conf["array_parallelism"] = args.max_jobs_run
    return {k: v for k, v in conf.items() if v is not None}


@functools.cache
def _has_accounting() -> bool:
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return "accounting_storage/none" not in config


def run_slurm(args: argparse.Namespace, indices: list) -> dict:
    """Submits the jobs with submitit and waits for them.

    Returns:
        Exit code per job index, or the Slurm state for a job that Slurm ended
        (time limit, scancel, node failure) before it could report one.
    """
    import cloudpickle
    import submitit
    from submitit.slurm.slurm import SlurmInfoWatcher

    class Watcher(SlurmInfoWatcher):
        """submitit reads job states with sacct; a cluster without accounting has
        none, so there squeue, which keeps finished jobs for MinJobAge (5 min by
        default; polled at least every minute here), gives the same columns."""

        def _make_command(self):
            command = super()._make_command()
            if command is None or _has_accounting():
                return command
            return ["squeue", "--states=all", "-o", "%i|%T|%N", "-j", ",".join(command[5::2])]

        def read_info(self, string):
            lines = (string.decode() if isinstance(string, bytes) else string).splitlines()
            return super().read_info("\n".join(["JobID|State|NodeList", *lines[1:]]))

    submitit.SlurmJob.watcher = Watcher(delay_s=60)
    # By value: the job's Python need not find this module (run as __main__ or local.launch).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    parameters = slurm_parameters(args)
    try:
        executor = submitit.SlurmExecutor(folder=Path(args.log).absolute().parent / "submitit" / "%j")
        executor.update_parameters(**parameters)
    except RuntimeError as err:  # no srun here
        raise LaunchError(f"{err} (use cmd_backend=local in cmd.sh)") from None
    except ValueError as err:  # submitit lists the parameters it knows
        raise LaunchError(f"{args.config}: {err}") from None
    run = functools.partial(run_job, args.command, str(Path(args.log).absolute()), cwd=os.getcwd())
    try:
        jobs = executor.map_array(run, indices)
    except submitit.core.utils.FailedJobError as err:  # sbatch said no: its message says why
        raise LaunchError(f"sbatch rejected the job: {err}") from None
    codes = {}
    try:
        for index, job in zip(indices, jobs):
            try:
                # one code per srun task; a failed task r > 0 is named with its own log
                rank, code = next(((r, c) for r, c in enumerate(job.results()) if c != 0), (0, 0))
                codes[index] = f"task {rank} exit code {code} ({job_log(args.log, index, rank)})" if rank else code
            except submitit.core.utils.FailedJobError:  # run_job itself raised (log dir not writable...)
                codes[index] = f"the launcher failed in the job (submitit log {job.paths.stdout})"
            except submitit.core.utils.UncompletedJobError:  # no result: Slurm ended the job
                codes[index] = f"ended by Slurm (state {job.watcher.get_state(job.job_id, 'force')})"
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    return codes


def report(log: str, codes: dict) -> int:
    """Names the failed jobs on stderr; returns the launcher's exit status."""
    failed = {i: c for i, c in codes.items() if c != 0}
    if failed:
        print(f"launch.py: {len(failed)} of {len(codes)} job(s) failed:", file=sys.stderr)
    for index, code in failed.items():
        what = code if isinstance(code, str) else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        print(f"  job{'' if index is None else f' {index}'}: {what}, see {job_log(log, index)}", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list]:
    """Parses ``[options] [JOB=a:b] LOG COMMAND...``; returns the options and the job indices."""
    parser = argparse.ArgumentParser(prog="launch.py", allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    for name in ("--max_jobs_run", "--gpu", "--num_nodes"):
        parser.add_argument(name, type=int, default=1 if name == "--num_nodes" else 0)
    parser.add_argument("--mem")
    parser.add_argument("--time")
    parser.add_argument("words", nargs=argparse.REMAINDER, help="[JOB=a:b] LOG COMMAND [ARG ...]")
    args = parser.parse_args(argv)
    if min(args.max_jobs_run, args.gpu, args.num_nodes - 1) < 0:
        parser.error("--max_jobs_run and --gpu must be >= 0, --num_nodes >= 1")
    words, indices = args.words, [None]
    if words and words[0].startswith("JOB="):
        match = re.fullmatch(r"JOB=(\d+)(?::(\d+))?", words[0])
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
        if last < first:
            parser.error(f"bad job range {words[0]!r}; expected JOB=a:b with a <= b")
        indices, words = list(range(first, last + 1)), words[1:]
    if len(words) < 2:
        parser.error("expected [JOB=a:b] LOG COMMAND [ARG ...]")
    args.log, args.command = words[0], words[1:]
    if indices != [None] and not JOB.search(args.log):  # every job would write the same log
        parser.error(f"a job array needs JOB in the log path, got {args.log!r} (e.g. log/decode.JOB.log)")
    return args, indices


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args, indices = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        codes = (run_local if args.backend == "local" else run_slurm)(args, indices)
    except LaunchError as err:
        print(f"launch.py: error: {err}", file=sys.stderr)
        return 2
    return report(args.log, codes)


if __name__ == "__main__":
    sys.exit(main())
