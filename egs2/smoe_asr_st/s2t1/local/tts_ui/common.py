"""Small helpers shared by the tts_ui stages: logging, TSV files, stage stamps, seeding, parallel map."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

SPLITS = ("train", "dev", "test", "ddtp_test")
CORPUS = "tts_ui"


def setup_logging(verbose: int = 1) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s", force=True
    )


def _escape(field) -> str:
    return str(field).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Write a TSV with a header line; tabs/newlines inside fields are escaped. Returns #rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(_escape(x) for x in row) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, map(_unescape, line.rstrip("\n").split("\t")))) for line in f if line.strip()]


def config_digest(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_done(stamp: Path, config: dict) -> bool:
    """True if ``stamp`` records a finished run with the same configuration."""
    stamp = Path(stamp)
    if not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("digest") == config_digest(config)
    except (OSError, ValueError):
        return False


def mark_done(stamp: Path, config: dict, summary: dict | None = None) -> None:
    stamp = Path(stamp)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(
        json.dumps({"digest": config_digest(config), "config": config, "summary": summary or {}},
                   indent=1, sort_keys=True, default=str) + "\n"
    )


def utt_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on process or order)."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


def _init_worker(initializer: Callable | None = None, initargs: tuple = ()) -> None:
    # one BLAS/torch thread per process: --nj processes share the cores
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if initializer is not None:
        initializer(*initargs)


def parallel_map(
    func: Callable, items: Sequence, nj: int, desc: str, unit: str = "it", chunksize: int = 4,
    initializer: Callable | None = None, initargs: tuple = (),
) -> Iterator:
    """Map ``func`` over ``items`` in ``nj`` processes (in order of completion), with a progress bar.

    ``initializer(*initargs)`` runs once in each worker (and in this process when nj <= 1).
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, mininterval=2.0, dynamic_ncols=True)
    try:
        if nj <= 1 or len(items) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for item in items:
                yield func(item)
                bar.update()
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(nj, len(items)), initializer=_init_worker,
                          initargs=(initializer, initargs)) as pool:
                for result in pool.imap_unordered(func, items, chunksize=chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()
