#!/usr/bin/env python3
"""Stage 2: 16 kHz mono PCM16 audio of every prompt in both bandwidths.

* WB (wideband): the G.722 recording decoded in stage 1 (real 50-7000 Hz audio).
* NB (narrowband), ``--nb_source real`` (default): the real 8 kHz telephone
  recording of the same take, upsampled to 16 kHz with
  ``torchaudio.functional.resample``.
* NB, ``--nb_source simulated``: made from the WB audio with
  ``channel.simulate_narrowband`` (300-3400 Hz band-pass, 8 kHz, G.711 mu-law
  round trip) and upsampled back to 16 kHz.

The two versions of a prompt are made sample-exact in length (they are on the
real data); a pair whose lengths differ by more than ``--max_len_diff`` seconds
is not written and gets status ``length_mismatch``.

Outputs under ``--out_dir`` (default ``data/local/bandwidth``): ``nb/<name>.wav``,
``wb/<name>.wav`` (name with '/' -> '-'), and ``bandwidth.tsv`` with one row per
inventory prompt: ``name, nb_source, nb_wav, wb_wav, samples, duration, status,
detail``; status is ``ok`` or the reason nothing was written (``no_audio``,
``missing_source``, ``corrupt_audio``, ``length_mismatch``).  Stage 3 turns
these into counted skips.  A ``.done`` stage marker (``local.stage``) records the
options; a rerun with the same options does nothing (``--force`` redoes it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from local.asterisk_data import clean_field, flat_name
from local.channel import simulate_narrowband, upsample_to_16k
from local.file_io import display_path, read_tsv, write_tsv
from local.log import setup_logging
from local.stage import mark_done, stage_done, start_stage

COLUMNS = ["name", "nb_source", "nb_wav", "wb_wav", "samples", "duration", "status", "detail"]
TARGET_RATE = 16000


def read_audio(path: str, expected_rate: int) -> torch.Tensor:
    """Mono float32 tensor in [-1, 1]; raises on unreadable/empty/wrong-rate files."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != expected_rate:
        raise ValueError(f"{path}: sample rate {rate}, expected {expected_rate}")
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no samples")
    return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))


def write_pcm16(path: Path, wave: torch.Tensor) -> int:
    """Write 16 kHz PCM16 (clipping to the int16 range); returns clipped sample count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = wave.detach().cpu().numpy().astype(np.float64)
    clipped = int(np.count_nonzero(np.abs(x) > 32767 / 32768))
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    sf.write(str(path), pcm, TARGET_RATE, subtype="PCM_16")
    return clipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inventory", default="data/local/asterisk/prompts.tsv", type=Path)
    p.add_argument("--out_dir", default="data/local/bandwidth", type=Path)
    p.add_argument("--nb_source", default="real", choices=["real", "simulated"])
    p.add_argument("--max_len_diff", default=0.02, type=float, help="seconds")
    p.add_argument("--force", action="store_true")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    start = time.time()
    out_dir: Path = args.out_dir
    marker, table = out_dir / ".done", out_dir / "bandwidth.tsv"
    config = {"inventory": str(args.inventory), "nb_source": args.nb_source, "max_len_diff": args.max_len_diff}
    if not args.force and stage_done(marker, config, [table]):
        return 0
    start_stage(marker)
    if not args.inventory.exists():
        logging.error("inventory %s not found: run local/fetch_asterisk.py first", args.inventory)
        return 1
    rows = read_tsv(args.inventory)
    out_rows: list[dict[str, object]] = []
    status_counts: Counter = Counter()
    total_clipped, seconds = 0, 0.0
    for row in tqdm(rows, desc=f"NB({args.nb_source})/WB 16 kHz", unit="prompt"):
        name = row["name"]
        out = {**dict.fromkeys(COLUMNS, ""), "name": name, "nb_source": args.nb_source, "status": "ok"}
        needed = ["wav16k"] + (["wav8k"] if args.nb_source == "real" else [])
        if not row["wav8k"] and not row["g722"]:
            out["status"] = "no_audio"
        elif row["problem"]:
            out["status"], out["detail"] = "corrupt_audio", row["detail"] or row["problem"]
        elif any(not row[k] for k in needed):
            out["status"] = "missing_source"
            out["detail"] = "no " + ", ".join(k for k in needed if not row[k])
        else:
            try:
                wb = read_audio(row["wav16k"], 16000)
                real = args.nb_source == "real"
                nb = upsample_to_16k(read_audio(row["wav8k"], 8000) if real else simulate_narrowband(wb, 16000), 8000)
                diff = abs(nb.shape[-1] - wb.shape[-1]) / TARGET_RATE
                if diff > args.max_len_diff:
                    out["status"] = "length_mismatch"
                    out["detail"] = f"nb {nb.shape[-1]} vs wb {wb.shape[-1]} samples at 16 kHz"
                else:
                    n = min(nb.shape[-1], wb.shape[-1])
                    for bw, wave in (("nb", nb), ("wb", wb)):
                        path = out_dir / bw / f"{flat_name(name)}.wav"
                        total_clipped += write_pcm16(path, wave[..., :n])
                        out[f"{bw}_wav"] = display_path(path)
                    out.update(samples=n, duration=n / TARGET_RATE)
                    seconds += n / TARGET_RATE
            except Exception as exc:  # noqa: BLE001 - recorded as a status, never dropped
                out["status"], out["detail"] = "corrupt_audio", f"{type(exc).__name__}: {exc}"
        out["detail"] = clean_field(str(out["detail"]))
        if out["status"] not in ("ok", "no_audio"):
            logging.warning("%s: %s %s", name, out["status"], out["detail"])
        status_counts[out["status"]] += 1
        out_rows.append(out)
    write_tsv(table, COLUMNS, out_rows)
    logging.info("status counts: %s", dict(sorted(status_counts.items())))
    logging.info("pairs written: %d (%.1f min per bandwidth); clipped samples: %d",
                 status_counts["ok"], seconds / 60, total_clipped)
    logging.info("wrote %s in %.1f s", table, time.time() - start)
    mark_done(marker, config, dict(status_counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
