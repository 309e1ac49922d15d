#!/usr/bin/env python3
"""The comparison table on one GPU machine with no network, in one prepared command.

A GPU machine lent for minutes, with PyTorch but without ESPnet and without a network, can
still build the tts_ui corpus, train hard sharing and S-MoE on it in bf16 with the GPU
configs, decode, score and tabulate, if everything it cannot fetch travels with the repo.
With ``--corpus asterisk`` (both subcommands) it runs the default corpus instead: the
Asterisk .debs of stage 1 travel, and run.sh's own stages 1-10 build the data there.

    # here (Debian caches of stage 4 and PyPI reachable): wheels, TTS binaries, text, tests
    python -m maint.gpu_table bundle --bundle_dir ../../../gpu_bundle --num_train 10000
    # there, from egs2/smoe_asr_st/s2t1 (the bundle travels inside the repo):
    python3 -m maint.gpu_table run --bundle_dir ../../../gpu_bundle --out_dir "$OUT" --budget_s 500

``run`` installs the wheels into ``<work>/site``, gives ``path.sh`` a venv that points at that
interpreter, unpacks flite/espeak-ng and the tts_ui text, makes the audio with all cores, and
then runs the recipe's own stages: tokens and stats (run.sh stages 5 and 10), one training per
variant and seed side by side on the GPU (stage 11), decoding, scoring and packing (12-14) and
the table (local/make_table.py). Training is budgeted in seconds, not epochs: short epochs, and at
the deadline every training still running is stopped; each run is decoded with the
checkpoint of its best dev accuracy so far (``valid.acc.best.pth``). Everything small that
the runs wrote (results, logs, hypotheses, the table) is packed into ``<out_dir>`` even when a
phase fails or runs out of time.

This module uses the standard library only: on the GPU machine it runs before the wheels are
installed, and it starts every step as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1]
REPO = RECIPE.parents[2]

# What the GPU image lacks for this recipe (it has torch, torchaudio, numpy, scipy,
# sentencepiece, sacrebleu, matplotlib, pyyaml): the distributions of the modules that training,
# decoding, scoring and the tts_ui plan/speech/channel/data stages import (the bundle's
# imports.txt lists them), pinned to the versions of the project venv when it is there.
WHEELS = (
    "espnet", "espnet-tts-frontend", "typeguard", "configargparse", "humanfriendly", "torch-complex",
    "editdistance", "kaldiio", "soundfile", "jiwer", "rapidfuzz", "librosa", "audioread", "soxr", "pooch",
    "decorator", "lazy-loader", "pyroomacoustics", "platformdirs", "cffi", "pycparser", "polib", "omniio",
    "g722",
)
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                 "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
# espeak-ng dictionaries other than English are not spoken by any tts_ui voice
KEEP_DICTS = ("en_dict",)
# shared libraries the unpacked flite/espeak-ng need besides glibc, copied from this machine
GLIBC = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux", "linux-vdso")


# ----------------------------------------------------------------------------- helpers
def sh(cmd: list[str] | str, log: Path | None = None, env: dict | None = None, cwd: Path = RECIPE,
       timeout: float | None = None) -> int:
    """Run a command (a list, or a string for bash) in its own process group; kill the group at timeout.

    Returns the exit code, or -9 when the timeout stopped it. Output goes to ``log`` (appended).
    """
    args = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
    logging.info("$ %s%s", cmd if isinstance(cmd, str) else shlex.join(args),
                 f"  > {log}" if log else "")
    out = open(log, "a") if log else None
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        return wait_group([proc], time.time() + timeout if timeout else None)[0]
    finally:
        if out:
            out.close()


def wait_group(procs: list[subprocess.Popen], deadline: float | None) -> list[int]:
    """Wait for processes started with ``start_new_session``; at the deadline stop their groups.

    SIGTERM first (ESPnet's data-loader workers go with the group), SIGKILL 10 s later. Returns
    each exit code, -9 for a process stopped at the deadline.
    """
    codes: dict[int, int] = {}
    while len(codes) < len(procs):
        for i, p in enumerate(procs):
            if i not in codes and p.poll() is not None:
                codes[i] = p.returncode
        if len(codes) == len(procs):
            break
        if deadline is not None and time.time() > deadline:
            for i, p in enumerate(procs):
                if i not in codes:
                    logging.warning("deadline: stopping pid %d (%s)", p.pid, shlex.join(map(str, p.args))[:120])
                    _signal_group(p, signal.SIGTERM)
            for i, p in enumerate(procs):
                if i not in codes:
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        _signal_group(p, signal.SIGKILL)
                        p.wait()
                    codes[i] = -9
            break
        time.sleep(1)
    return [codes[i] for i in range(len(procs))]


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def add_tar(tar_path: Path, root: Path, members: list[str]) -> None:
    """``tar -cJf``: the given paths relative to ``root``."""
    with tarfile.open(tar_path, "w:xz") as tar:
        for m in members:
            tar.add(root / m, arcname=m)


def sizes_args(a: argparse.Namespace) -> list[str]:
    return ["--num_train", str(a.num_train), "--num_dev", str(a.num_dev), "--num_test", str(a.num_test),
            "--num_ddtp_test", "0", "--seed", str(a.seed)]


# ----------------------------------------------------------------------------- bundle
def bundle(a: argparse.Namespace) -> None:
    """Make the bundle here: wheels, TTS prefix, tts_ui text of the chosen sizes, Asterisk tests."""
    out = a.bundle_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # 1. wheels for CPython 3.12 x86-64, pinned to this venv's versions
    from importlib import metadata
    wheel_dir = out / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    specs = []
    for name in WHEELS:
        try:
            specs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            specs.append(name)
    plat = [x for p in PIP_PLATFORMS for x in ("--platform", p)]
    pip = [a.pip_python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *plat, "-d", str(wheel_dir)]
    for spec in specs:  # pure-Python packages without a wheel for any platform: sdists are refused
        if sh([*pip, spec]) != 0:
            raise SystemExit(f"gpu_table bundle: no wheel for {spec} (see the pip output above)")
    # 2. flite + espeak-ng: the unpacked prefix of stage 4, English dictionaries only, plus
    #    the non-glibc libraries they load from this machine (the GPU image may lack them)
    prefix = RECIPE / "downloads/tts_ui/prefix"
    if not (prefix / ".unpacked").exists():
        raise SystemExit(f"gpu_table bundle: no TTS prefix at {prefix}: run stage 4 (tts_ui) once first")
    stage_dir = out / "_prefix"
    shutil.rmtree(stage_dir, ignore_errors=True)
    shutil.copytree(prefix, stage_dir, symlinks=True)
    libdir = stage_dir / "usr/lib/x86_64-linux-gnu"
    for d in (libdir / "espeak-ng-data").glob("*_dict"):
        if d.name not in KEEP_DICTS:
            d.unlink()
    env = dict(os.environ, LD_LIBRARY_PATH=f"{libdir}:{libdir}/pulseaudio")
    needed = set()
    for f in [stage_dir / "usr/bin/flite", stage_dir / "usr/bin/espeak-ng", *libdir.glob("*.so*")]:
        ldd = subprocess.run(["ldd", str(f)], env=env, capture_output=True, text=True).stdout
        for line in ldd.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/") and str(stage_dir) not in parts[2]:
                if not parts[0].startswith(GLIBC):
                    needed.add(parts[2])
    for lib in sorted(needed):
        shutil.copy2(lib, libdir / Path(lib).name)
    logging.info("TTS prefix: %d system libraries added: %s", len(needed), " ".join(sorted(needed)))
    add_tar(out / "tts_prefix.tar.xz", stage_dir, sorted(p.name for p in stage_dir.iterdir()))
    shutil.rmtree(stage_dir)
    # 3. tts_ui text of exactly these sizes (the text stage needs the .debs of the cache)
    work = out / "_text"
    code = sh([sys.executable, "-m", "local.tts_ui.prepare", "--out_data", str(work / "data"), "--audio_dir",
               str(work / "audio"), "--work_dir", str(work / "tts_ui"), "--stage", "text", "--stop_stage", "text",
               "--offline", "--nj", "2", *sizes_args(a)])
    if code != 0:
        raise SystemExit("gpu_table bundle: the tts_ui text stage failed (see above)")
    add_tar(out / "tts_ui_text.tar.xz", work / "tts_ui",
            [f"text/{n}" for n in ("train.tsv", "dev.tsv", "test.tsv", "counts.json", ".done")
             if (work / "tts_ui/text" / n).exists()])
    shutil.rmtree(work)
    # 4. the Asterisk corpus: the .debs stage 1 downloaded (run.sh's data stages run there), or for
    #    the tts_ui table only the real test sets (data dirs and the audio their wav.scp names)
    if a.corpus == "asterisk":
        debs = sorted((RECIPE / "downloads").glob("asterisk-core-sounds-*.deb"))
        if len(debs) != 4:
            raise SystemExit(f"gpu_table bundle: expected the 4 Asterisk .debs in {RECIPE / 'downloads'}, found "
                             f"{[d.name for d in debs]}: run stage 1 once first")
        (out / "asterisk_debs").mkdir(exist_ok=True)
        for d in debs:
            shutil.copy2(d, out / "asterisk_debs" / d.name)
        a.asterisk_tests = []
    members = []
    for t in a.asterisk_tests:
        d = RECIPE / "data" / t
        if not (d / "wav.scp").exists():
            raise SystemExit(f"gpu_table bundle: no {d}/wav.scp: run stages 1-3 once first")
        members += [f"data/{t}/{f.name}" for f in sorted(d.iterdir()) if f.is_file()]
        for line in (d / "wav.scp").read_text().splitlines():
            path = line.split(maxsplit=1)[1]
            if Path(path).is_absolute():
                raise SystemExit(f"gpu_table bundle: {d}/wav.scp names an absolute path ({path}); expected "
                                 "paths relative to the recipe dir")
            members.append(path)
    if members:
        add_tar(out / "asterisk_tests.tar.xz", RECIPE, members)
    (out / "bundle.json").write_text(json.dumps({"corpus": a.corpus, "sizes": sizes_args(a), "wheels": specs,
                                                 "asterisk_tests": a.asterisk_tests}, indent=1) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    logging.info("bundle %s: %.1f MiB", out, total / 2**20)


# ----------------------------------------------------------------------------- run
def run(a: argparse.Namespace) -> int:
    t0 = time.time()
    deadline = t0 + a.budget_s
    b = a.bundle_dir.resolve()
    out = a.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = RECIPE / "exp/gpu_table_logs"
    logs.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    status: dict[str, object] = {"budget_s": a.budget_s}
    runs = [(f"{a.corpus}_{v}_seed{s}", v, s) for s in a.seeds for v in a.variants]
    table_dir = f"exp/table_{a.corpus}_gpu"
    tags = [r[0] for r in runs]

    def phase(name: str, start: float) -> None:
        times[name] = round(time.time() - start, 1)
        logging.info("phase %s: %.0f s (total %.0f s)", name, times[name], time.time() - t0)

    try:
        env = prepare_env(a, b, logs)
        if "corpus" in a.phases:
            corpus(a, b, logs, env, phase)
        run_sh = run_sh_args(a, b)
        if "train" in a.phases:  # every run side by side until the training deadline
            t = time.time()
            status["train_exit"] = run_side_by_side(
                {tag: train_command(a, run_sh, tag, v, s) for tag, v, s in runs}, logs, "train", env,
                deadline - a.decode_reserve_s)
            phase("train", t)
        if "decode" in a.phases:  # each run's best checkpoint so far, side by side
            t = time.time()
            status["decode_exit"] = run_side_by_side(
                {tag: decode_command(a, run_sh, tag, v)
                 for tag, v, s in runs if (RECIPE / "exp" / tag / "valid.acc.best.pth").exists()},
                logs, "decode", env, deadline - a.table_reserve_s)
            phase("decode", t)
        t = time.time()
        # Pack once before the table: on the GPU machine loading each checkpoint for its reporter takes
        # ~25 s, and a command killed at its limit inside this phase would bring nothing back.
        pack_results(out, tags, table_dir)
        # per-epoch times and losses of each run (its checkpoint does not travel back), side by side:
        # one after another they take ~25 s each there
        run_side_by_side({tag: [a.python, "-m", "espnet_smoe.reporter_stats", f"exp/{tag}", "--out",
                                f"exp/{tag}/reporter_stats.json"]
                          for tag in tags if (RECIPE / "exp" / tag / "checkpoint.pth").exists()},
                         logs, "reporter", env, time.time() + max(10.0, min(60.0, deadline - time.time())))
        sh([a.python, "-m", "local.make_table", "--exp_template", f"exp/{a.corpus}_{{variant}}_seed{{seed}}",
            "--variants", " ".join(a.variants), "--seeds", " ".join(map(str, a.seeds)), "--out_dir", table_dir,
            "--title", f"S-MoE vs hard sharing: {a.corpus}, {a.config_template}, time-budgeted training",
            "--command", shlex.join(sys.argv), "--note", a.note], logs / "table.log", env,
           timeout=max(30.0, deadline + 30 - time.time()))
        phase("table", t)
        return 0
    except Exception as e:  # pack what there is, then fail
        logging.exception("gpu_table run failed")
        status["error"] = repr(e)
        return 1
    finally:
        status["seconds"] = times
        status["total_s"] = round(time.time() - t0, 1)
        (RECIPE / "exp/gpu_table_status.json").write_text(json.dumps(status, indent=1) + "\n")
        pack_results(out, tags, table_dir)


def chosen_test_sets(a: argparse.Namespace) -> list[str]:
    """--test_sets; by default the tts_ui table's held-out voices and real Asterisk prompts, and for
    --corpus asterisk none (run.sh's own, the real Asterisk prompts)."""
    if a.test_sets is not None:
        return a.test_sets
    return ["tts_ui_test_nb", "tts_ui_test_wb", "test_nb", "test_wb"] if a.corpus == "tts_ui" else []


def run_sh_args(a: argparse.Namespace, b: Path) -> list[str]:
    """run.sh and the options every call shares: the corpus, its sizes, all cores, the test sets."""
    made = json.loads((b / "bundle.json").read_text())
    if made.get("corpus", "tts_ui") != a.corpus:
        raise SystemExit(f"gpu_table run: {b} was bundled for --corpus {made.get('corpus', 'tts_ui')}, "
                         f"not {a.corpus}: run `gpu_table bundle --corpus {a.corpus}` here first")
    sizes = made["sizes"]
    tests = ["--test_sets", " ".join(chosen_test_sets(a))] if chosen_test_sets(a) else []  # else run.sh's own
    # --init scratch: the table compares trainings from random weights (and the GPU configs are not the base's)
    return ["./run.sh", "--corpus", a.corpus, "--init", "scratch", "--tts_ui_sizes", " ".join(sizes[1:6:2]),
            "--nj", str(os.cpu_count() or 2), *tests]


def train_command(a: argparse.Namespace, run_sh: list[str], tag: str, variant: str, seed: int) -> list[str]:
    """run.sh's training stage for one variant and seed."""
    return [*run_sh, "--stage", "11", "--stop_stage", "11", "--ngpu", str(a.ngpu), "--s2t_config",
            a.config_template.format(variant=variant), "--tag", tag, "--s2t_args", f"{a.s2t_args} --seed {seed}"]


def decode_command(a: argparse.Namespace, run_sh: list[str], tag: str, variant: str) -> list[str]:
    """run.sh's decoding, scoring and packing of one run, with its best checkpoint so far."""
    return [*run_sh, "--inference_nj", "2", "--stage", "12", "--stop_stage", "14", "--s2t_config",
            a.config_template.format(variant=variant), "--tag", tag, "--inference_s2t_model", "valid.acc.best.pth",
            "--gpu_inference", "true" if a.ngpu else "false", "--inference_args", a.inference_args]


def run_side_by_side(cmds: dict[str, list[str]], logs: Path, what: str, env: dict, deadline: float) -> dict:
    """Start every command at once (logs/<tag>.<what>.log); stop those still running at the deadline."""
    procs = []
    for tag, cmd in cmds.items():
        log = logs / f"{tag}.{what}.log"
        logging.info("$ %s  > %s", shlex.join(cmd), log)
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, cwd=RECIPE, env=env, start_new_session=True, stdout=f,
                                          stderr=subprocess.STDOUT))
    return dict(zip(cmds, wait_group(procs, deadline)))


def corpus(a: argparse.Namespace, b: Path, logs: Path, env: dict, phase) -> None:
    """Unpack the bundle, make the tts_ui audio and data dirs, tokens and feature stats."""
    run_sh = run_sh_args(a, b)
    nj = str(os.cpu_count() or 2)
    sizes = json.loads((b / "bundle.json").read_text())["sizes"]
    t = time.time()
    tars = [("tts_prefix.tar.xz", RECIPE / "downloads/tts_ui/prefix"),
            ("tts_ui_text.tar.xz", RECIPE / "data/local/tts_ui")]
    if a.corpus == "tts_ui":  # the asterisk corpus makes its tests from the .debs
        tars.append(("asterisk_tests.tar.xz", RECIPE))
    for tar, dest in tars:
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(b / tar) as f:
            f.extractall(dest, filter="tar")
    phase("unpack", t)
    if a.corpus == "asterisk":  # run.sh's own stages: the .debs as db.sh's ASTERISK, tts_ui text already there
        t = time.time()
        code = sh([*run_sh, "--stage", "1", "--stop_stage", "10", "--s2t_config",
                   a.config_template.format(variant=a.variants[0])], logs / "data.log",
                  dict(env, ASTERISK=str(b / "asterisk_debs")))
        phase("data_tokens_stats", t)
        if code:
            raise RuntimeError(f"run.sh stages 1-10 failed ({logs / 'data.log'})")
        return

    t = time.time()
    code = sh([a.python, "-m", "local.tts_ui.prepare", "--out_data", "data", "--audio_dir",
               "downloads/tts_ui/audio", "--stage", "plan", "--stop_stage", "data", "--offline", "--nj", nj,
               *sizes], logs / "tts_ui.log", env)
    phase("tts_ui", t)
    if code:
        raise RuntimeError(f"tts_ui corpus failed ({logs / 'tts_ui.log'})")

    t = time.time()
    # run.sh stage 4's mix dirs for --corpus tts_ui (the Asterisk tests came ready, stages 1-3 are not needed)
    tests_dirs = [f"data/{x}" for x in chosen_test_sets(a)]
    code = sh([a.python, "-m", "local.combine_data", "--out", "data/tts_ui_train_mix", "--sets",
               "data/tts_ui_train", "--exclude", "data/tts_ui_dev", *tests_dirs], logs / "data.log", env)
    code = code or sh([a.python, "-m", "local.combine_data", "--out", "data/tts_ui_dev_mix", "--sets",
                       "data/tts_ui_dev", "--exclude", *tests_dirs], logs / "data.log", env)
    code = code or sh([*run_sh, "--stage", "5", "--stop_stage", "10", "--s2t_config",
                       a.config_template.format(variant=a.variants[0])], logs / "data.log", env)
    phase("data_tokens_stats", t)
    if code:
        raise RuntimeError(f"combine/tokens/stats failed ({logs / 'data.log'})")


def prepare_env(a: argparse.Namespace, b: Path, logs: Path) -> dict:
    """Wheels into a private site dir, and a venv for path.sh that is only this interpreter.

    A real project venv (made by tools/setup_venv.sh) is used as it is.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    venv = REPO / ".venv/bin"
    shim_mark = "# made by maint/gpu_table.py"
    if (venv / "python").exists() and shim_mark not in (venv / "activate").read_text():
        return env
    site = Path(a.work_dir).resolve() / "site"
    if not (site / ".installed").exists():
        wheels = sorted(str(w) for w in (b / "wheels").glob("*.whl"))
        code = sh([a.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                   "--no-cache-dir", "--upgrade", "--target", str(site), *wheels], logs / "pip.log")
        if code:
            raise RuntimeError(f"pip install of the bundle's wheels failed ({logs / 'pip.log'})")
        # Bytecode once, on all cores (pip compiles on one): else every process of the run compiles the
        # ~3 800 modules ESPnet imports from source, about 15 s each (RESULTS.md, "Speed").
        sh([a.python, "-m", "compileall", "-q", "-j", "0", str(site)], logs / "pip.log")
        (site / ".installed").touch()
    venv.mkdir(parents=True, exist_ok=True)
    # a script, not a symlink: an interpreter of a venv finds its packages only when started by its own path
    (venv / "python").unlink(missing_ok=True)
    (venv / "python").write_text(f"#!/bin/sh\nexec {shutil.which(a.python) or a.python} \"$@\"\n")
    (venv / "python").chmod(0o755)
    (venv / "activate").write_text(
        f"{shim_mark}: the machine's interpreter with the bundle's wheels\n"
        f"export PATH={venv}:$PATH\nexport PYTHONPATH={site}:{REPO}${{PYTHONPATH:+:$PYTHONPATH}}\n")
    env["PYTHONPATH"] = f"{site}:{REPO}" + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
    return env


def pack_results(out: Path, tags: list[str], table_dir: str) -> None:
    """Small outputs only (no audio, no checkpoints) into <out>/results.tar.gz, and the table beside it."""
    members = []
    for p in ["exp/gpu_table_status.json", "exp/gpu_table_logs", table_dir,
              "data/local/tts_ui/report.json"]:
        if (RECIPE / p).exists():
            members.append(p)
    for tag in tags:
        d = RECIPE / "exp" / tag
        for name in ("results.json", "RESULTS.md", "config.yaml", "train.log", "model_info.json",
                     "reporter_stats.json"):
            if (d / name).exists():
                members.append(f"exp/{tag}/{name}")
        for f in sorted(d.glob("decode_*/*/1best_recog/text*")):  # hypotheses, as local/score.py reads them
            members.append(str(f.relative_to(RECIPE)))
    for f in sorted((RECIPE / "data").glob("*test*/text.*")) + sorted((RECIPE / "data").glob("*test*/utt2bw")):
        members.append(str(f.relative_to(RECIPE)))  # references, for a paired bootstrap later
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for m in members:
            tar.add(RECIPE / m, arcname=m)
    for name in ("table.md", "table.json", "table.png"):
        f = RECIPE / table_dir / name
        if f.exists():
            shutil.copy2(f, out / name)
    if (RECIPE / "exp/gpu_table_status.json").exists():  # written at the end: not there at the first packing
        shutil.copy2(RECIPE / "exp/gpu_table_status.json", out / "status.json")


# ----------------------------------------------------------------------------- CLI
def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pb = sub.add_parser("bundle", help="make the bundle here")
    pr = sub.add_parser("run", help="run the table on the GPU machine")
    for q in (pb, pr):
        q.add_argument("--bundle_dir", type=Path, default=REPO / "gpu_bundle")
        q.add_argument("--corpus", choices=["tts_ui", "asterisk"], default="tts_ui",
                       help="asterisk: the default run's corpus (Asterisk train + a tts_ui slice, real tests)")
    pb.add_argument("--num_train", type=int, default=10000)
    pb.add_argument("--num_dev", type=int, default=300)
    pb.add_argument("--num_test", type=int, default=300)
    pb.add_argument("--seed", type=int, default=1, help="corpus seed")
    pb.add_argument("--asterisk_tests", nargs="+", default=["test_nb", "test_wb"])
    pb.add_argument("--pip_python", default="python3", help="an interpreter with pip, for `pip download`")
    pr.add_argument("--out_dir", type=Path, required=True)
    pr.add_argument("--work_dir", type=Path, default=Path("/tmp/gpu_table"))
    pr.add_argument("--python", default=sys.executable)
    pr.add_argument("--budget_s", type=float, default=500, help="wall-clock budget of the whole run")
    pr.add_argument("--decode_reserve_s", type=float, default=130, help="kept for decoding, scoring, table")
    pr.add_argument("--table_reserve_s", type=float, default=90,
                    help="kept for the reporters (~25 s per run on the GPU machine), the table and packing")
    pr.add_argument("--phases", nargs="*", default=["corpus", "train", "decode"],
                    choices=["corpus", "train", "decode"],
                    help="the table is always made (a rerun can skip phases; none: only the table)")
    pr.add_argument("--ngpu", type=int, default=1, help="0: a CPU rehearsal (with the tiny configs)")
    pr.add_argument("--config_template", default="conf/train_{variant}.yaml",
                    help="conf/tuning/train_{variant}_tiny.yaml for a CPU rehearsal")
    pr.add_argument("--variants", nargs="+", default=["hard_sharing", "smoe_encdec"])
    pr.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    pr.add_argument("--test_sets", nargs="*", default=None,
                    help="default: tts_ui and Asterisk tests for --corpus tts_ui, the corpus's own for asterisk")
    pr.add_argument("--s2t_args", default="--max_epoch 1000 --num_iters_per_epoch 200 --batch_bins 4000000 "
                    "--scheduler_conf warmup_steps=600 --optim_conf lr=0.0015 --use_amp true --num_workers 3")
    pr.add_argument("--inference_args", default="--batch_size 32")
    pr.add_argument("--note", default="")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (gpu_table) %(message)s")
    a = get_parser().parse_args(argv)
    if a.command == "bundle":
        bundle(a)
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
