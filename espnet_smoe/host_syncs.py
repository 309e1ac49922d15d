"""Count the operations that make the host wait for the device.

On a GPU, every operation whose result the host must read (a scalar, a list,
or a shape that depends on the data) waits until the device has run all the
work queued before it; the host then queues the next kernels while the device
idles. :class:`HostSyncCounter` counts such operations on any device, CPU
included, so that a test on a machine without a GPU can tell how many a
training step would make on one:

* ``_local_scalar_dense``: ``.item()``, ``int(t)``, ``bool(t)``, ``float(t)``,
  ``t in tensor``, a tensor used as a slice bound;
* ``tolist``;
* ``nonzero``, ``masked_select``, ``unique``, ``bincount``,
  ``repeat_interleave`` without ``output_size``: outputs whose size depends
  on the data;
* ``bool_index``: indexing (read or write) with a boolean mask.

Not counted (they cannot be told apart on the CPU): blocking copies between
host and device memory, e.g. ``tensor.to("cuda")`` of pageable host memory.
"""

import collections
from typing import Dict

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_DATA_DEPENDENT = {
    "aten::_local_scalar_dense": "_local_scalar_dense",
    "aten::nonzero": "nonzero",
    "aten::masked_select": "masked_select",
    "aten::bincount": "bincount",
    "aten::_unique": "unique",
    "aten::_unique2": "unique",
    "aten::unique_dim": "unique",
    "aten::unique_consecutive": "unique",
}
_INDEXING = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}


def _has_bool_index(indices) -> bool:
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in indices
        if i is not None
    )


class _DispatchCounter(TorchDispatchMode):
    def __init__(self, counts: Dict[str, int]):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name in _DATA_DEPENDENT:
            self.counts[_DATA_DEPENDENT[name]] += 1
        elif name in _INDEXING and _has_bool_index(args[1] if len(args) > 1 else kwargs.get("indices", ())):
            self.counts["bool_index"] += 1
        elif name == "aten::repeat_interleave" and kwargs.get("output_size") is None:
            self.counts["repeat_interleave"] += 1
        return func(*args, **kwargs)


class _FunctionCounter(TorchFunctionMode):
    def __init__(self, counts: Dict[str, int]):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.tolist:
            self.counts["tolist"] += 1
        return func(*args, **(kwargs or {}))


class HostSyncCounter:
    """Context manager: count host-synchronising operations run inside it.

    The backward pass counts too (autograd carries the mode to its threads).

    Example:
        >>> with HostSyncCounter() as syncs:
        ...     model(**batch)[0].backward()
        >>> syncs.total, syncs.counts
    """

    def __init__(self):
        self.counts: Dict[str, int] = collections.Counter()
        self._modes = (_FunctionCounter(self.counts), _DispatchCounter(self.counts))

    def __enter__(self) -> "HostSyncCounter":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
