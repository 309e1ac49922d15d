#!/usr/bin/env python3
"""Thin job launcher behind ``${train_cmd}`` / ``${decode_cmd}`` (see cmd.sh).

Kaldi-style usage::

    launch.py [--backend local|slurm] [--config conf/slurm.conf]
              [--max_jobs_run N] [--gpu N] [--num_nodes N] [--mem X] [--time T]
              [JOB=a:b] LOG COMMAND [ARG ...]

With ``JOB=a:b`` the command runs once per index ``a..b``; the token ``JOB`` in
LOG and in every command argument is replaced by the index (``keys.JOB.scp`` ->
``keys.3.scp``). ``JOB`` only matches as a whole word, so ``SLURM_JOB_ID`` is
left alone. Each job writes its stdout and stderr to its own log, framed by a
header (command, start time) and a footer (exit code, elapsed time).

The command is run by ``bash -o pipefail -c``. As in Kaldi's run.pl, an
argument that is exactly a shell operator (``\\|``, ``\\>``, ``\\&\\&`` ... escaped
in run.sh) acts as that operator inside the job; every other argument is
quoted, so it reaches the program verbatim.

Backends:
  local: jobs run in parallel on this machine (at most ``--max_jobs_run`` at a
    time, default all of them). ``--gpu``, ``--mem`` and ``--time`` are ignored
    there: the command itself picks its devices.
  slurm: one ``sbatch --wait`` submission (a job array for ``JOB=a:b``); the
    generated script is written next to the log. Options come from
    conf/slurm.conf. ``--num_nodes N`` with N > 1 asks for N nodes with one task
    per GPU and wraps the command in ``srun``, as ESPnet's
    ``--dist_launcher slurm`` expects.

The exit status is 0 only if every job succeeded; otherwise the failed jobs and
their logs are listed on stderr.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PROG = "launch.py"

# Whole-word JOB: must not touch SLURM_JOB_ID, JOBS, ... in the command.
JOB_TOKEN = re.compile(r"(?<![A-Za-z0-9_])JOB(?![A-Za-z0-9_])")
JOB_RANGE = re.compile(r"^JOB=(\d+)(?::(\d+))?$")

# Arguments passed through unquoted so that Kaldi-style `\|` pipes and
# redirections keep working inside a job.
SHELL_OPERATORS = frozenset(
    ["|", "||", "&&", ";", "<", ">", ">>", "2>", "2>>", "&>", "2>&1", "|&"]
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "slurm.conf"

# Keys understood in conf/slurm.conf, with their built-in defaults.
SLURM_CONF_DEFAULTS = {
    "partition": "",
    "gpu_partition": "",
    "cpus_per_task": "",
    "mem": "",
    "time": "",
    "gres": "gpu:{gpu}",
    "extra_options": "",
}

# Footer line written by every job; parsed back to name failed slurm tasks.
FOOTER = re.compile(r"^# Ended \(code (-?\d+)\)")


class LaunchError(Exception):
    """A usage or configuration error, reported without a traceback."""


@dataclass
class Request:
    """What the caller asked for, parsed from the command line."""

    backend: str = "local"
    config: Path = DEFAULT_CONFIG
    max_jobs_run: int | None = None
    gpu: int = 0
    num_nodes: int = 1
    mem: str | None = None
    time: str | None = None
    job_range: tuple[int, int] | None = None
    log: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def indices(self) -> list[int | None]:
        """Job indices to run; ``[None]`` for a single, non-array job."""
        if self.job_range is None:
            return [None]
        first, last = self.job_range
        return list(range(first, last + 1))


def _int_option(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise LaunchError(f"{name} expects an integer, got {value!r}") from None
    if number < minimum:
        raise LaunchError(f"{name} must be >= {minimum}, got {number}")
    return number


def parse_args(argv: list[str]) -> Request:
    """Parses ``[options] [JOB=a:b] LOG COMMAND...``.

    argparse is not used because everything after LOG belongs to the command,
    including arguments that look like options.

    Args:
        argv: Arguments without the program name.

    Returns:
        The parsed request.

    Raises:
        LaunchError: On an unknown option, a bad value, or a missing LOG or
            COMMAND.
    """
    req = Request()
    options = {
        "--backend",
        "--config",
        "--max_jobs_run",
        "--gpu",
        "--num_nodes",
        "--mem",
        "--time",
    }
    args = list(argv)
    while args and args[0].startswith("--"):
        name, has_eq, value = args.pop(0).partition("=")
        if name not in options:
            raise LaunchError(
                f"unknown option {name!r}; expected one of {sorted(options)} "
                "before [JOB=a:b] LOG COMMAND"
            )
        if not has_eq:
            if not args:
                raise LaunchError(f"option {name} needs a value")
            value = args.pop(0)
        if name == "--backend":
            if value not in ("local", "slurm"):
                raise LaunchError(f"--backend must be local or slurm, got {value!r}")
            req.backend = value
        elif name == "--config":
            req.config = Path(value)
        elif name == "--max_jobs_run":
            req.max_jobs_run = _int_option(name, value, 1)
        elif name == "--gpu":
            req.gpu = _int_option(name, value, 0)
        elif name == "--num_nodes":
            req.num_nodes = _int_option(name, value, 1)
        elif name == "--mem":
            req.mem = value
        elif name == "--time":
            req.time = value

    if args and args[0].startswith("JOB="):
        match = JOB_RANGE.match(args[0])
        if not match:
            raise LaunchError(f"bad job range {args[0]!r}; expected JOB=a:b or JOB=a")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise LaunchError(f"empty job range {args[0]!r}: {last} < {first}")
        req.job_range = (first, last)
        args.pop(0)

    if len(args) < 2:
        raise LaunchError(
            "usage: launch.py [options] [JOB=a:b] LOG COMMAND [ARG ...] "
            f"(got {shlex.join(argv)!r})"
        )
    req.log, req.command = args[0], args[1:]
    if req.job_range is not None and not JOB_TOKEN.search(req.log):
        # Every array task would overwrite the same log.
        raise LaunchError(
            f"a job array needs JOB in the log path, got {req.log!r} "
            "(e.g. log/decode.JOB.log)"
        )
    return req


def quote_arg(arg: str, job: str | None, job_expr: str | None = None) -> str:
    """Quotes one command argument for bash, substituting JOB.

    Args:
        arg: The argument as given to the launcher.
        job: The job index replacing JOB, or None to leave JOB alone.
        job_expr: Raw shell text put in place of JOB instead of ``job`` (e.g.
            ``"${JOB}"`` in a slurm script); it is not quoted.

    Returns:
        Shell text that expands to the argument.
    """
    if arg in SHELL_OPERATORS:
        return arg
    if job_expr is None:
        text = arg if job is None else JOB_TOKEN.sub(job, arg)
        return shlex.quote(text)
    pieces = JOB_TOKEN.split(arg)
    # Empty pieces would turn into '' and are harmless but noisy.
    return job_expr.join(shlex.quote(p) if p else "" for p in pieces) or "''"


def shell_command(
    command: list[str], job: str | None, job_expr: str | None = None
) -> str:
    """Joins the command arguments into one bash command line."""
    return " ".join(quote_arg(a, job, job_expr) for a in command)


def job_log(log: str, index: int | None) -> Path:
    """Returns the log path of one job."""
    return Path(log if index is None else JOB_TOKEN.sub(str(index), log))


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def run_local_job(command: list[str], log: str, index: int | None) -> int:
    """Runs one job on this machine, writing its output to its log.

    Args:
        command: Command arguments (JOB not yet substituted).
        log: Log path template.
        index: The job index, or None for a single job.

    Returns:
        The exit code of the job (negative: killed by that signal).
    """
    job = None if index is None else str(index)
    cmd = shell_command(command, job)
    log_path = job_log(log, index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as fd:
        fd.write(f"# {cmd}\n# Started at {_now()} on {socket.gethostname()}\n")
        fd.flush()
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", cmd],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
        elapsed = round(time.monotonic() - start)
        fd.write(
            f"# Accounting: time={elapsed} threads=1\n"
            f"# Ended (code {proc.returncode}) at {_now()}, "
            f"elapsed time {elapsed} seconds\n"
        )
    return proc.returncode


def run_local(req: Request) -> dict[int | None, int]:
    """Runs all jobs of the request in parallel on this machine.

    Returns:
        Exit code per job index.
    """
    if req.num_nodes > 1:
        raise LaunchError(
            f"--num_nodes {req.num_nodes} needs the slurm backend "
            "(set cmd_backend=slurm in cmd.sh)"
        )
    indices = req.indices
    workers = min(req.max_jobs_run or len(indices), len(indices))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = pool.map(lambda i: run_local_job(req.command, req.log, i), indices)
        return dict(zip(indices, codes))


def read_slurm_conf(path: Path) -> dict[str, str]:
    """Reads conf/slurm.conf: ``key = value`` lines, ``#`` comments.

    Args:
        path: The config file.

    Returns:
        Every known key with its value (defaults filled in).

    Raises:
        LaunchError: If the file is missing or a line is malformed.
    """
    if not path.is_file():
        raise LaunchError(f"slurm config {path} not found (pass --config)")
    conf = dict(SLURM_CONF_DEFAULTS)
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or key not in SLURM_CONF_DEFAULTS:
            raise LaunchError(
                f"{path}:{lineno}: expected 'key = value' with key in "
                f"{sorted(SLURM_CONF_DEFAULTS)}, got {raw!r}"
            )
        conf[key] = value.strip()
    return conf


def sbatch_options(req: Request, conf: dict[str, str], log: Path) -> list[str]:
    """Builds the ``#SBATCH`` options of the request.

    Args:
        req: The parsed request.
        conf: Values from conf/slurm.conf.
        log: Absolute log path template (still containing JOB for arrays).

    Returns:
        Options such as ``--partition=gpu``, in a stable order.
    """
    name = JOB_TOKEN.sub("", log.name).replace("..", ".")
    name = name.removesuffix(".log").strip(".") or "job"
    # Slurm expands %-patterns in --output: escape literal %, map JOB to %a.
    output = JOB_TOKEN.sub("%a", str(log).replace("%", "%%"))
    opts = [f"--job-name={name}", f"--output={output}"]
    if req.job_range is not None:
        first, last = req.job_range
        throttle = f"%{req.max_jobs_run}" if req.max_jobs_run else ""
        opts.append(f"--array={first}-{last}{throttle}")
    partition = conf["gpu_partition"] if req.gpu > 0 else ""
    partition = partition or conf["partition"]
    if partition:
        opts.append(f"--partition={partition}")
    if conf["cpus_per_task"]:
        opts.append(f"--cpus-per-task={conf['cpus_per_task']}")
    mem = req.mem or conf["mem"]
    if mem:
        opts.append(f"--mem={mem}")
    limit = req.time or conf["time"]
    if limit:
        opts.append(f"--time={limit}")
    if req.gpu > 0 and conf["gres"]:
        opts.append(f"--gres={conf['gres'].format(gpu=req.gpu)}")
    if req.num_nodes > 1:
        # One task per GPU on every node; ESPnet reads its rank from srun.
        opts.append(f"--nodes={req.num_nodes}")
        opts.append(f"--ntasks-per-node={max(req.gpu, 1)}")
    opts.extend(shlex.split(conf["extra_options"]))
    return opts


def _header_expr(command: list[str], is_array: bool) -> str:
    """Bash word printing the command as the local backend does, JOB expanded.

    Built from the local rendering with a placeholder index made of safe
    characters (quoted exactly like a number), then put in double quotes with
    ``${JOB}`` in place of the placeholder.
    """
    placeholder = "JobIndexPlaceholder"
    text = shell_command(command, placeholder if is_array else None)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return '"# ' + text.replace(placeholder, "${JOB}") + '"'


def sbatch_script(req: Request, conf: dict[str, str]) -> str:
    """Generates the batch script for the request.

    The script writes the same header and footer as the local backend; Slurm
    sends its stdout and stderr to the per-job log via ``--output``.

    Args:
        req: The parsed request.
        conf: Values from conf/slurm.conf.

    Returns:
        The script text.
    """
    log = Path(req.log).absolute()
    is_array = req.job_range is not None
    # Array tasks expand ${JOB} at run time; a single job keeps JOB verbatim,
    # as in the local backend.
    cmd = shell_command(req.command, None, job_expr='"${JOB}"' if is_array else None)
    # srun starts nodes x gpus tasks; each reads its rank from SLURM_PROCID.
    runner = "srun " if req.num_nodes > 1 else ""
    lines = ["#!/usr/bin/env bash", f"# Generated by {PROG} at {_now()}"]
    lines += [f"#SBATCH {opt}" for opt in sbatch_options(req, conf, log)]
    lines.append(f"cd {shlex.quote(os.getcwd())} || exit 1")
    if is_array:
        lines.append('export JOB="${SLURM_ARRAY_TASK_ID}"')
    lines += [
        f"printf '%s\\n' {_header_expr(req.command, is_array)}",
        'echo "# Started at $(date) on $(hostname), slurm job ${SLURM_JOB_ID:-?}"',
        "start=$(date +%s)",
        f"{runner}bash -o pipefail -c {shlex.quote(cmd)}",
        "ret=$?",
        "elapsed=$(( $(date +%s) - start ))",
        'echo "# Accounting: time=${elapsed} threads=1"',
        'echo "# Ended (code ${ret}) at $(date), elapsed time ${elapsed} seconds"',
        'exit "${ret}"',
    ]
    return "\n".join(lines) + "\n"


def script_path(log: str) -> Path:
    """Where the sbatch script of a log template is written (next to it)."""
    path = Path(log)
    stem = path.name.removesuffix(".log")
    return path.with_name(stem + ".sbatch.sh")


def run_slurm(req: Request) -> dict[int | None, int]:
    """Submits the request with ``sbatch --wait`` and waits for it.

    Returns:
        Exit code per job index, read back from the footers of the job logs
        (a job without a footer was killed, e.g. by the time limit).
    """
    if shutil.which("sbatch") is None:
        raise LaunchError("sbatch not found on PATH (use cmd_backend=local in cmd.sh)")
    conf = read_slurm_conf(req.config)
    for index in req.indices:
        # Slurm does not create the directory of --output.
        job_log(req.log, index).parent.mkdir(parents=True, exist_ok=True)
    script = script_path(req.log)
    script.write_text(sbatch_script(req, conf), encoding="utf-8")
    proc = subprocess.run(["sbatch", "--wait", str(script)], stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        # With --wait, sbatch exits with the highest exit code of all tasks.
        return {index: 0 for index in req.indices}
    codes = {index: _logged_exit_code(job_log(req.log, index)) for index in req.indices}
    if all(code == 0 for code in codes.values()):
        # No task reports a failure: sbatch itself failed (rejected options...).
        print(
            f"{PROG}: sbatch {script} failed with code {proc.returncode}",
            file=sys.stderr,
        )
        return {index: proc.returncode for index in req.indices}
    return codes


def _logged_exit_code(log: Path) -> int:
    """Exit code from a job log footer; 1 when the log or footer is missing."""
    if not log.is_file():
        return 1
    code = 1
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = FOOTER.match(line)
        if match:
            code = int(match.group(1))
    return code


def report(req: Request, codes: dict[int | None, int]) -> int:
    """Prints the failed jobs and returns the launcher's exit status."""
    failed = [(i, c) for i, c in codes.items() if c != 0]
    if not failed:
        return 0
    print(f"{PROG}: {len(failed)} of {len(codes)} job(s) failed:", file=sys.stderr)
    for index, code in failed:
        what = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        label = "job" if index is None else f"job {index}"
        print(f"  {label}: {what}, see {job_log(req.log, index)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    try:
        req = parse_args(sys.argv[1:] if argv is None else argv)
        codes = run_local(req) if req.backend == "local" else run_slurm(req)
    except LaunchError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return report(req, codes)


if __name__ == "__main__":
    sys.exit(main())
