"""Small helpers shared by the tts_ui stages: split names, seeding, parallel map."""

from __future__ import annotations

import multiprocessing as mp
import os
import zlib
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

SPLITS = ("train", "dev", "test", "ddtp_test")
CORPUS = "tts_ui"


def utt_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on process or order)."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


# what parallel_map's ``context`` gives every job: set once per process, not sent with every item
WORKER_CONTEXT: dict = {}


def _set_context(context: dict, worker: bool) -> None:
    if worker:
        # one BLAS/torch thread per process: --nj processes share the cores
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
    WORKER_CONTEXT.clear()
    WORKER_CONTEXT.update(context or {})


def parallel_map(func: Callable, items: Sequence, nj: int, desc: str, unit: str = "it", chunksize: int = 4,
                 context: dict | None = None) -> Iterator:
    """Map ``func`` over ``items`` in ``nj`` processes (in order of completion), with a progress bar.

    ``context`` is ``WORKER_CONTEXT`` in each worker (and in this process when nj <= 1).
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, mininterval=2.0, dynamic_ncols=True)
    try:
        if nj <= 1 or len(items) <= 1:
            _set_context(context, worker=False)
            for item in items:
                yield func(item)
                bar.update()
        else:
            with mp.get_context("spawn").Pool(min(nj, len(items)), _set_context, (context, True)) as pool:
                for result in pool.imap_unordered(func, items, chunksize=chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()
