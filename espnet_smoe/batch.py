"""What the host knows of each row of a batch, recorded where the batch is built.

The S-MoE model routes each row by its guiding tokens and, in training,
encodes the rows of one recording once. Reading those facts back from device
tensors would make the host wait for the device in every step; the data
loader has them in host memory anyway. :class:`SMoECollateFn` (the S2T task's
collate plus this) adds them to the batch under :data:`HOST_ROWS`, as plain
Python lists, which ESPnet's ``to_device`` leaves on the host:

* ``audio``: for each row, the first row of the batch with identical audio
  (samples up to the row's length; exact comparison);
* ``bandwidth``: each row's bandwidth token id;
* ``text``, ``text_prev``: each row's token ids, without padding.

The model reads them back from the tensors itself when they are absent
(a batch built by other code): the same facts, at the cost of copies.
"""

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from espnet2.train.collate_fn import CommonCollateFn

HOST_ROWS = "host_rows"
NAMES = ("audio", "bandwidth", "text", "text_prev")


class SMoECollateFn(CommonCollateFn):
    """ESPnet's ``CommonCollateFn``, plus ``batch[HOST_ROWS]``."""

    def __call__(self, data):
        utt_ids, batch = super().__call__(data)
        batch[HOST_ROWS] = describe_rows(batch)
        return utt_ids, batch


def describe_rows(
    batch: Mapping[str, Optional[torch.Tensor]], names: Sequence[str] = NAMES
) -> Dict[str, list]:
    """The per-row facts of :data:`HOST_ROWS` from a collated batch.

    Args:
        batch: ``speech`` (Batch, Samples, ...), ``bandwidth`` (Batch, 1),
            ``text``/``text_prev`` (Batch, Length), each with its
            ``<name>_lengths`` (Batch,). Missing or None entries are skipped.
            Tensors on a device are copied to the host.
        names: The facts wanted, a subset of :data:`NAMES`.

    Returns:
        ``{"audio": [Batch ints], "bandwidth": [Batch ints],
        "text": [Batch lists], "text_prev": [Batch lists]}``, with the
        entries that ``batch`` holds.
    """
    out: Dict[str, list] = {}
    for name in names:
        source = "speech" if name == "audio" else name
        if batch.get(source) is None:
            continue
        values = batch[source].cpu()
        lengths = batch.get(f"{source}_lengths")
        lengths = lengths.tolist() if lengths is not None else [values.size(1)] * values.size(0)
        if name == "audio":
            out[name] = same_audio([values[i, :n].numpy() for i, n in enumerate(lengths)])
        elif name == "bandwidth":
            out[name] = values.reshape(values.size(0), -1)[:, 0].tolist()
        else:
            out[name] = [row[:n] for row, n in zip(values.tolist(), lengths)]
    return out


def same_audio(rows: Sequence[np.ndarray]) -> List[int]:
    """For each row, the first row holding exactly the same array (itself if none).

    Rows are bucketed by shape and a strided sample of their values, then
    compared in full within a bucket: exact, and about one pass of
    ``memcmp`` over the twins.

    Args:
        rows: Batch arrays, each (Samples, ...) without padding.
    """
    buckets: Dict[tuple, List[int]] = {}
    first: List[int] = []
    for row, audio in enumerate(rows):
        flat = audio.reshape(-1)
        key = (audio.shape, audio.dtype.str, flat[:: max(1, flat.size // 64)].tobytes())
        bucket = buckets.setdefault(key, [])
        twin = next((r for r in bucket if np.array_equal(rows[r], audio)), None)
        if twin is None:
            bucket.append(row)
            twin = row
        first.append(twin)
    return first
