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
    thread per core in every job, and on 2 cores two decoding jobs of two threads each take
    3.7x as long as with one thread each (spinning threads wait for each other).
  slurm: submitit submits them (a job array for ``JOB=a:b``) and waits. Their sbatch options
    come from conf/slurm.conf in ESPnet's (Kaldi's slurm.pl) format, for every job and for
    the launcher's ``--gpu``, ``--mem``, ``--time`` and ``--num_nodes`` (``SlurmConf``), and
    are handed to submitit: those it has a parameter for (partition, time, mem, gres,
    cpus-per-task, account, qos, ...) as that parameter, other long options as they are, but
    ``--export``: every job runs in the environment the launcher was started in. A short
    option it cannot map or one the launcher sets itself (output, array, ...) is an error
    naming the line. ``--num_nodes N`` (N > 1) runs one task per node under
    srun, as ESPnet's ``--dist_launcher slurm --multiprocessing_distributed true``
    expects (it starts one worker per GPU on each node); task r > 0 logs to
    ``<log stem>.rank<r>.log``. submitit's own files go to ``<log dir>/submitit/``.

The exit status is 0 only if every job succeeded; otherwise each failed job is named on
stderr with its exit code (or the Slurm state that ended it) and its log.
"""

from __future__ import annotations

import argparse
import dataclasses
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


# sbatch options that submitit takes as parameters of its own (long name -> parameter)
SUBMITIT_PARAMETERS = {
    "partition", "time", "mem", "mem-per-cpu", "mem-per-gpu", "cpus-per-task", "cpus-per-gpu", "gpus-per-node",
    "gpus-per-task", "gres", "account", "qos", "constraint", "exclude", "nodelist", "job-name", "nodes",
    "ntasks-per-node", "comment", "mail-type", "mail-user", "dependency", "exclusive", "wckey",
}
# short sbatch options and their long names
SHORT_OPTIONS = {"p": "partition", "t": "time", "c": "cpus-per-task", "A": "account", "q": "qos", "C": "constraint",
                 "x": "exclude", "w": "nodelist", "J": "job-name", "N": "nodes", "d": "dependency", "G": "gpus",
                 "n": "ntasks", "o": "output", "e": "error", "a": "array", "W": "wait", "D": "chdir"}
# sbatch options the launcher sets itself: the job's log is LOG, the array is JOB=a:b, one task per node
LAUNCHER_OWNED = {"output", "error", "array", "open-mode", "wrap", "wait", "parsable", "ntasks"}
# sbatch options left out: --export (ESPnet's files have --export=PATH). A job runs in the environment
# the launcher was started in (run.sh's, made by path.sh, as Kaldi's slurm.pl sources path.sh in each
# job); srun inherits --export from sbatch, and submitit's start of the job needs its own variables.
LEFT_OUT = {"export"}
DEFAULT_TIME = "1-00:00:00"  # submitit always asks for a time limit; without one from the file, this one


@dataclasses.dataclass
class SlurmConf:
    """An ESPnet/Kaldi ``conf/slurm.conf`` (the format of utils/slurm.pl):

    - ``command sbatch ARGS``: sbatch options of every job;
    - ``option NAME=* ARGS``: when the launcher gets ``--NAME V``, ARGS with ``$0`` replaced by V;
    - ``option NAME=V [ARGS]``: when it gets ``--NAME V`` exactly (wins over ``NAME=*``);
    - ``default NAME=V``: ``--NAME V`` when the launcher is not given ``--NAME``.

    ``#`` starts a comment. Every ARGS keeps its line number for error messages.
    """

    path: Path
    command: tuple[str, int]
    options: dict  # name -> {value or "*": (args, line)}
    defaults: dict  # name -> value


def read_slurm_conf(path: Path) -> SlurmConf:
    """Parses the file; a line of another form is an error naming the file and line."""
    if not path.is_file():
        raise LaunchError(f"slurm config {path} not found (pass --config, or slurm_conf=... for cmd.sh)")
    command, options, defaults = None, {}, {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if match := re.fullmatch(r"command\s+(\S+)\s*(.*)", line):
            if Path(match[1]).name != "sbatch":
                raise LaunchError(f"{path}:{lineno}: the command must be sbatch (submitit submits with it), "
                                  f"got {match[1]!r}")
            command = (match[2], lineno)
        elif match := re.fullmatch(r"option\s+(\w+)=(\S+)\s*(.*)", line):
            options.setdefault(match[1], {})[match[2]] = (match[3], lineno)
        elif match := re.fullmatch(r"default\s+(\w+)=(\S+)", line):
            defaults[match[1]] = match[2]
        else:
            raise LaunchError(f"{path}:{lineno}: cannot read {raw.strip()!r}; expected 'command sbatch ARGS', "
                              "'option NAME=* ARGS', 'option NAME=VALUE [ARGS]' or 'default NAME=VALUE' "
                              "(ESPnet's slurm.conf format)")
    if command is None:
        raise LaunchError(f"{path}: no 'command sbatch ...' line")
    return SlurmConf(path, command, options, defaults)


def sbatch_words(conf: SlurmConf, given: dict) -> list[tuple[list[str], int]]:
    """The sbatch words of every job and of the launcher's options, each group with its line.

    ``given``: launcher option -> value (None: not given, the file's default applies). A value
    that no ``option`` line describes is an error, as in slurm.pl; a --gpu 0 and the number of
    nodes, which the launcher handles itself, need none.
    """
    values = {**conf.defaults, **{k: str(v) for k, v in given.items() if v is not None}}
    groups = [(conf.command[0], conf.command[1])]
    for name, value in values.items():
        lines = conf.options.get(name, {})
        if value in lines:
            groups.append(lines[value])
        elif "*" in lines:
            args, lineno = lines["*"]
            groups.append((args.replace("$0", value), lineno))
        elif name == "num_nodes" or (name == "gpu" and value == "0"):
            continue
        else:
            raise LaunchError(f"{conf.path}: no line for --{name} {value}: add 'option {name}=* ...' (with $0 for "
                              f"the value) or 'option {name}={value} ...'")
    try:
        return sorted(((shlex.split(args), lineno) for args, lineno in groups), key=lambda g: g[1])
    except ValueError as err:  # an unclosed quote
        raise LaunchError(f"{conf.path}: {err} in one of the lines {sorted(g[1] for g in groups)}") from None


def submitit_options(words: list[str], where: str) -> dict:
    """sbatch options (``--name=value``, ``--name value``, ``--flag``, ``-p value``, ``-pvalue``) as
    submitit parameters; long options that submitit has no parameter for go to its
    ``additional_parameters`` (written as ``#SBATCH --name=value``)."""
    params, extra, i = {}, {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            if not eq:  # --name value, or a flag when no value follows
                value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else True
                i += value is not True
        elif re.fullmatch(r"-[A-Za-z].*", word):
            if word[1] not in SHORT_OPTIONS:
                raise LaunchError(f"{where}: cannot map the sbatch option {word[:2]} to submitit; write it in its "
                                  "long form (--name=value)")
            name, value = SHORT_OPTIONS[word[1]], word[2:]
            if not value:
                if i + 1 == len(words):
                    raise LaunchError(f"{where}: the sbatch option {word} needs a value")
                value, i = words[i + 1], i + 1
        else:
            raise LaunchError(f"{where}: expected sbatch options, got {word!r}")
        i += 1
        if name in LEFT_OUT:
            continue
        if name in LAUNCHER_OWNED:
            raise LaunchError(f"{where}: the launcher sets sbatch's --{name} itself (the job writes its log to "
                              "LOG, JOB=a:b makes the array, one task per node): remove it")
        if name == "time":
            try:
                value = minutes(value)
            except LaunchError as err:
                raise LaunchError(f"{where}: {err}") from None
        if name in SUBMITIT_PARAMETERS:
            params[name.replace("-", "_")] = value
        else:
            extra[name] = value
    return {**params, **({"additional_parameters": extra} if extra else {})}


def slurm_parameters(args: argparse.Namespace) -> dict:
    """submitit SlurmExecutor parameters of the jobs: the launcher's own (job name from the log,
    nodes, one task per node, the array's parallelism) and the sbatch options that conf/slurm.conf
    gives for every job and for the launcher's --gpu, --mem, --time and --num_nodes; a later line
    wins over an earlier one. Without a time limit from the file, 1-00:00:00."""
    conf = read_slurm_conf(args.config)
    name = JOB.sub("", Path(args.log).name).removesuffix(".log").strip(".").replace("..", ".")
    params = {"job_name": name or "job", "nodes": args.num_nodes, "ntasks_per_node": 1, "stderr_to_stdout": True}
    given = {"gpu": args.gpu, "mem": args.mem, "time": args.time, "num_nodes": args.num_nodes}
    for words, lineno in sbatch_words(conf, given):
        where = f"{conf.path}:{lineno}"
        options = submitit_options(words, where)
        for key, fixed in (("nodes", args.num_nodes), ("ntasks_per_node", 1)):
            if key in options and str(options[key]) != str(fixed):
                raise LaunchError(f"{where}: --{key.replace('_', '-')} {options[key]} here, but the job needs "
                                  f"{fixed} (the launcher's --num_nodes {args.num_nodes}, one task per node)")
            options.pop(key, None)
        extra = {**params.get("additional_parameters", {}), **options.pop("additional_parameters", {})}
        params.update(options, **({"additional_parameters": extra} if extra else {}))
    params.setdefault("time", minutes(DEFAULT_TIME))
    if args.max_jobs_run:
        params["array_parallelism"] = args.max_jobs_run
    return params


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
    parser.add_argument("--max_jobs_run", type=int, default=0, help="jobs of an array at a time (0: all)")
    parser.add_argument("--num_nodes", type=int, default=1)
    # --gpu, --mem, --time become sbatch options through conf/slurm.conf (the local backend ignores them)
    parser.add_argument("--gpu", type=int, default=None, help="GPUs per node (default: the file's 'default gpu=')")
    parser.add_argument("--mem")
    parser.add_argument("--time")
    parser.add_argument("words", nargs=argparse.REMAINDER, help="[JOB=a:b] LOG COMMAND [ARG ...]")
    args = parser.parse_args(argv)
    if min(args.max_jobs_run, args.gpu or 0, args.num_nodes - 1) < 0:
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
