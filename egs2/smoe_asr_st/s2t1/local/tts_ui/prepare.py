#!/usr/bin/env python3
"""Build the tts_ui corpus end to end: text -> plan -> speech -> channel -> data dirs.

The one entry point of the corpus: ``--stage``/``--stop_stage`` run a part of it.
Resumable: the text stage is skipped when finished with the same options, the plan is
deterministic, and the speech/channel stages skip every file already made from the same plan
entry. Example (from egs2/smoe_asr_st/s2t1):

    python -m local.tts_ui.prepare --out_data data --audio_dir downloads/tts_ui/audio \\
        --num_train 20000 --num_dev 1000 --num_test 1000 --nj 2 --seed 1

Data dirs: data/tts_ui_{train,dev,test_nb,test_wb} and data/ddtp_test_{nb,wb}.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from local import debian
from local.log import setup_logging
from local.tts_ui.data_dirs import run_data
from local.tts_ui.degrade import run_channel
from local.tts_ui.plan import add_plan_arguments, plan_config_from_args, write_plans
from local.tts_ui.synth import run_speech
from local.tts_ui.text_prep import GETTEXT_PACKAGES, LANG, build_text

STAGES = ("text", "plan", "speech", "channel", "data")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_data", type=Path, default=Path("data"), help="Kaldi data dirs go here")
    p.add_argument("--audio_dir", type=Path, required=True, help="FLAC files (clean/ and degraded)")
    p.add_argument("--work_dir", type=Path, default=None, help="default: <out_data>/local/tts_ui")
    p.add_argument("--cache_dir", type=Path, default=Path("downloads/tts_ui"),
                   help="private apt state, .debs, catalogs, TTS prefix (reused)")
    p.add_argument("--num_train", type=int, default=20000)
    p.add_argument("--num_dev", type=int, default=1000)
    p.add_argument("--num_test", type=int, default=1000)
    p.add_argument("--num_ddtp_test", type=int, default=None, help="default: --num_test; 0 = no DDTP set")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--stage", choices=STAGES, default="text", help="first stage to run")
    p.add_argument("--stop_stage", choices=STAGES, default="data", help="last stage to run")
    p.add_argument("--offline", action="store_true", help="never call apt for text: use the cache only")
    p.add_argument("--packages", nargs="*", default=list(GETTEXT_PACKAGES), help="gettext packages")
    p.add_argument("--deb_dir", type=Path, default=None, help=".debs (default: <cache_dir>/debs)")
    p.add_argument("--ddtp_lists", type=Path, nargs=2, default=None, metavar=("EN", "FR"),
                   help="Translation-en and Translation-fr files (default: a private apt-get update)")
    p.add_argument("--apt_mirror", default=debian.DEFAULT_MIRROR)
    p.add_argument("--apt_suite", default=None, help="default: this machine's Debian codename")
    p.add_argument("--force", action="store_true", help="redo the text stage even if finished with the same options")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    add_plan_arguments(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    work_dir = args.work_dir or args.out_data / "local" / "tts_ui"
    num_ddtp = args.num_test if args.num_ddtp_test is None else args.num_ddtp_test
    first, last = STAGES.index(args.stage), STAGES.index(args.stop_stage)
    run = {s: first <= i <= last for i, s in enumerate(STAGES)}
    apt = debian.PrivateApt(args.cache_dir / "apt", mirror=args.apt_mirror,
                            suite=args.apt_suite or debian.system_codename(), languages=("en", LANG))
    report, times = {}, {}

    t = time.time()
    if run["text"]:
        report["text"] = build_text(work_dir, args.cache_dir, args.num_train, args.num_dev, args.num_test,
                                    num_ddtp, seed=args.seed, nj=args.nj, packages=tuple(args.packages),
                                    ddtp=num_ddtp > 0, deb_dir=args.deb_dir,
                                    ddtp_lists=tuple(args.ddtp_lists) if args.ddtp_lists else None,
                                    offline=args.offline, apt=apt, force=args.force)
        times["text"] = time.time() - t
    if run["plan"]:
        plans = write_plans(work_dir / "text", work_dir / "plan", plan_config_from_args(args))
        logging.info("plan: %s", ", ".join(f"{k}={len(v)}" for k, v in plans.items()))
    if run["speech"]:
        t = time.time()
        report["speech"] = run_speech(work_dir, args.audio_dir, args.cache_dir, nj=args.nj,
                                      runtime=debian.resolve_tts(args.cache_dir, apt=apt))
        times["speech"] = time.time() - t
    if run["channel"]:
        t = time.time()
        report["channel"] = run_channel(work_dir, args.audio_dir, nj=args.nj)
        times["channel"] = time.time() - t
    if run["data"]:
        report["data"] = run_data(work_dir, args.audio_dir, args.out_data)
    report["seconds"] = {k: round(v, 1) for k, v in times.items()}
    (Path(work_dir) / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    logging.info("done: %s (report in %s)", ", ".join(f"{k} {v:.0f} s" for k, v in times.items()),
                 Path(work_dir) / "report.json")
    return report


if __name__ == "__main__":
    main()
