#!/usr/bin/env python3
"""Write ``utt2bw`` for a data dir that has none, from the audio itself.

    python -m espnet_smoe.bin.detect_bandwidth --data_dir data/mycorpus
    python -m espnet_smoe.bin.detect_bandwidth --data_dir data/test_nb \
        --out /tmp/utt2bw --reference data/test_nb/utt2bw --report exp/bw_test_nb.json

Reads ``<data_dir>/wav.scp`` with ESPnet's ``SoundScpReader`` and decides each
recording once (the ASR and ST rows of one recording share it). Silence and
clipped audio get ``--fallback`` and are listed, with the reason, in the log
and the report. With ``--reference`` the report holds the accuracy and the
confusion counts against that ``utt2bw``.
"""

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

from espnet2.fileio.sound_scp import SoundScpReader

from espnet_smoe.bandwidth import NARROWBAND, WIDEBAND, BandwidthConfig, BandwidthDecision, detect_bandwidth


def read_utt2bw(path: Path) -> Dict[str, str]:
    """``<utt-id> <nb>`` lines to {utt: 'nb'}; a malformed line is an error naming it."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            token = parts[1].strip("<>") if len(parts) == 2 else None
            if token not in (NARROWBAND, WIDEBAND):
                raise ValueError(f"{path}:{lineno}: expected '<utt-id> <nb>' or '<utt-id> <wb>', got {line.rstrip()!r}")
            table[parts[0]] = token
    return table


def detect_data_dir(data_dir: Path, fallback: str, config: BandwidthConfig) -> Dict[str, BandwidthDecision]:
    """One decision per utterance of ``<data_dir>/wav.scp`` (each recording decoded once)."""
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp}: no such file (a Kaldi-style data dir needs wav.scp)")
    reader = SoundScpReader(str(wav_scp), dtype="float32")
    by_source: Dict[str, BandwidthDecision] = {}
    decisions = {}
    for utt in reader.keys():
        source = reader.data[utt]
        if source not in by_source:
            try:
                rate, wave = reader[utt]
            except Exception as exc:
                raise RuntimeError(f"{wav_scp}: utterance {utt}: cannot read {source!r}: {exc}") from exc
            by_source[source] = detect_bandwidth(wave, rate, fallback=fallback, config=config)
        decisions[utt] = by_source[source]
    logging.info("%s: %d utterances, %d distinct recordings", wav_scp, len(decisions), len(by_source))
    return decisions


def summarize(decisions: Dict[str, BandwidthDecision], reference: Optional[Dict[str, str]] = None) -> dict:
    """Counts, fallbacks and, against a reference, accuracy and confusion."""
    fallbacks: List[dict] = [
        {"utt": u, "reason": d.reason, "token": d.token} for u, d in sorted(decisions.items()) if d.reason
    ]
    report = {
        "utterances": len(decisions),
        "detected": dict(Counter(d.token for d in decisions.values())),
        "fallbacks": fallbacks,
    }
    if reference is not None:
        missing = sorted(set(decisions) - set(reference))
        if missing:
            raise ValueError(f"reference has no entry for {len(missing)} utterances, e.g. {missing[:3]}")
        confusion = Counter(f"{reference[u]}->{d.token}" for u, d in decisions.items())
        correct = sum(reference[u] == d.token for u, d in decisions.items())
        report["accuracy"] = correct / len(decisions) if decisions else None
        report["confusion"] = dict(sorted(confusion.items()))
        report["errors"] = [
            {"utt": u, "reference": reference[u], "detected": d.token, "cutoff_hz": d.cutoff_hz, "reason": d.reason}
            for u, d in sorted(decisions.items()) if reference[u] != d.token
        ]
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi-style dir with wav.scp")
    parser.add_argument("--out", type=Path, default=None, help="utt2bw to write (default: <data_dir>/utt2bw)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--fallback", choices=(NARROWBAND, WIDEBAND), default=WIDEBAND,
                        help="token for silence and clipped audio")
    parser.add_argument("--reference", type=Path, default=None, help="utt2bw to score the detection against")
    parser.add_argument("--report", type=Path, default=None, help="JSON report (counts, fallbacks, accuracy)")
    defaults = BandwidthConfig()
    parser.add_argument("--floor_db", type=float, default=defaults.floor_db)
    parser.add_argument("--nb_max_cutoff_hz", type=float, default=defaults.nb_max_cutoff_hz)
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    out = args.out or args.data_dir / "utt2bw"
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --out elsewhere")
    reference = read_utt2bw(args.reference) if args.reference else None
    config = BandwidthConfig(floor_db=args.floor_db, nb_max_cutoff_hz=args.nb_max_cutoff_hz)
    decisions = detect_data_dir(args.data_dir, args.fallback, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for utt in sorted(decisions):
            f.write(f"{utt} <{decisions[utt].token}>\n")
    report = summarize(decisions, reference)
    for item in report["fallbacks"]:
        logging.warning("%s: %s audio, bandwidth unknown: wrote the fallback <%s>", item["utt"], item["reason"],
                        item["token"])
    logging.info("wrote %s: %s; %d fallbacks%s", out, report["detected"], len(report["fallbacks"]),
                 f"; accuracy {report['accuracy']:.4f} against {args.reference}" if reference else "")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
