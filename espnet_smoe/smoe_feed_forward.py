"""Supervised mixture-of-experts feed-forward block.

Every expert is one position-wise feed-forward network with the same shape as
ESPnet's ``PositionwiseFeedForward``; the weights of all experts are stacked in
one tensor per layer, ``(E, out, in)`` in ``torch.nn.Linear`` layout, so that:

* DDP sees the same parameters every step (no unused-parameter errors when a
  batch misses an expert: that expert's slice just gets a zero gradient);
* a dense checkpoint expands into experts by copying, see
  :func:`dense_to_smoe_state_dict`.

There is no gate. The caller says which expert each utterance uses (a guiding
token does, in the encoder and decoder of this package), and every frame or
token of that utterance goes to that expert. The rows of a batch are grouped
by expert, each group goes through its expert, and the outputs are put back in
order: the arithmetic is exactly one dense FFN's per row.

Optimiser note: with stacked weights, AdamW still moves an expert's slice in a
step where no row used it (momentum and weight decay act on the whole tensor).
Mixed batches, where every expert is used in nearly every step, make this moot.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)


class SMoEFeedForward(torch.nn.Module):
    """E position-wise feed-forward experts with per-utterance routing.

    Args:
        idim: Input and output dimension D.
        hidden_units: Hidden dimension H of every expert.
        num_experts: Number of experts E.
        dropout_rate: Dropout between the two projections, as in ESPnet.
        activation: Activation module, as in ``PositionwiseFeedForward``.
    """

    def __init__(
        self,
        idim: int,
        hidden_units: int,
        num_experts: int,
        dropout_rate: float,
        activation: torch.nn.Module = torch.nn.ReLU(),
    ):
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.idim = idim
        self.hidden_units = hidden_units
        self.num_experts = num_experts
        self.w_1 = torch.nn.Parameter(torch.empty(num_experts, hidden_units, idim))
        self.b_1 = torch.nn.Parameter(torch.empty(num_experts, hidden_units))
        self.w_2 = torch.nn.Parameter(torch.empty(num_experts, idim, hidden_units))
        self.b_2 = torch.nn.Parameter(torch.empty(num_experts, idim))
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.activation = activation
        # Set by the owning encoder/decoder before each forward (ExpertRows,
        # or a (Batch,) tensor). It is kept
        # after the forward on purpose: activation checkpointing recomputes
        # the layer during backward and must see the same routing.
        self.routed_expert: Optional[Union["ExpertRows", torch.Tensor]] = None
        self.reset_parameters()

    @classmethod
    def from_dense(
        cls, dense: PositionwiseFeedForward, num_experts: int
    ) -> "SMoEFeedForward":
        """Build a block whose experts are all copies of a dense FFN."""
        block = cls(
            idim=dense.w_1.in_features,
            hidden_units=dense.w_1.out_features,
            num_experts=num_experts,
            dropout_rate=dense.dropout.p,
            activation=dense.activation,
        )
        block.load_state_dict(
            dense_to_smoe_state_dict(dense.state_dict(), num_experts), strict=True
        )
        return block

    def reset_parameters(self, init: Optional[str] = None) -> None:
        """Initialise every expert as its own layer.

        ESPnet's ``--init`` treats any parameter with dim > 1 as one weight
        matrix, which gives a 3-D expert stack the wrong fan-in. This applies
        the scheme to each expert's 2-D slice instead.

        Args:
            init: None for ``torch.nn.Linear``'s default, or one of ESPnet's
                ``xavier_uniform``, ``xavier_normal``, ``kaiming_uniform``,
                ``kaiming_normal``, ``normal`` (biases then start at zero, as
                ESPnet's ``initialize`` does for dense layers).
        """
        with torch.no_grad():
            for weight, bias in ((self.w_1, self.b_1), (self.w_2, self.b_2)):
                for e in range(self.num_experts):
                    _init_linear_(weight[e], bias[e], init)

    def forward(
        self, x: torch.Tensor, expert: Optional[Union["ExpertRows", torch.Tensor]] = None
    ) -> torch.Tensor:
        """Apply each row's expert.

        Args:
            x: (Batch, Length, D) or (Batch, D).
            expert: The rows of each expert (:class:`ExpertRows`), or (Batch,)
                expert indices, which cost one host sync to group. Defaults to
                the routing set by the owner in ``routed_expert``.

        Returns:
            (Batch, Length, D) or (Batch, D), like ``x``.
        """
        if expert is None:
            expert = self.routed_expert
        if expert is None:
            raise RuntimeError(
                "SMoEFeedForward got no routing: pass expert=(Batch,) or let "
                "the owning S-MoE encoder/decoder set it before the forward"
            )
        if isinstance(expert, torch.Tensor) and (expert.dim() != 1 or expert.size(0) != x.size(0)):
            raise ValueError(
                f"expert must be (Batch,) = ({x.size(0)},), got {tuple(expert.shape)}"
            )
        if self.num_experts == 1:
            return self._expert_forward(x, 0)
        if isinstance(expert, torch.Tensor):
            expert = ExpertRows.from_tensor(expert, self.num_experts)
        if len(expert) != x.size(0):
            raise ValueError(f"routing for {len(expert)} rows, but the input has {x.size(0)}")
        if len(expert.groups) == 1:
            return self._expert_forward(x, expert.groups[0][0])  # a single-expert batch

        # Each expert gathers its rows and writes its output straight into
        # place: one copy in, one copy out, no re-ordering pass.
        out: Optional[torch.Tensor] = None
        for e, rows in expert.groups:
            y = self._expert_forward(x.index_select(0, rows), e)
            if out is None:
                # Allocated from the first expert's output, not from x: under
                # autocast the experts compute in bf16/fp16 while x may be fp32.
                out = y.new_empty(x.shape[:-1] + y.shape[-1:])
            out.index_copy_(0, rows, y)
        return out

    def _expert_forward(self, x: torch.Tensor, e: int) -> torch.Tensor:
        hidden = self.activation(F.linear(x, self.w_1[e], self.b_1[e]))
        return F.linear(self.dropout(hidden), self.w_2[e], self.b_2[e])

    def extra_repr(self) -> str:
        return (
            f"idim={self.idim}, hidden_units={self.hidden_units}, "
            f"num_experts={self.num_experts}"
        )


def _init_linear_(
    weight: torch.Tensor, bias: torch.Tensor, init: Optional[str]
) -> None:
    fan_in = weight.size(1)
    if init is None:
        # torch.nn.Linear.reset_parameters
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        torch.nn.init.uniform_(bias, -bound, bound)
        return
    schemes = {
        "xavier_uniform": torch.nn.init.xavier_uniform_,
        "xavier_normal": torch.nn.init.xavier_normal_,
        "kaiming_uniform": lambda w: torch.nn.init.kaiming_uniform_(
            w, nonlinearity="relu"
        ),
        "kaiming_normal": lambda w: torch.nn.init.kaiming_normal_(
            w, nonlinearity="relu"
        ),
        "normal": lambda w: torch.nn.init.normal_(w, mean=0.0, std=0.02),
    }
    if init not in schemes:
        raise ValueError(f"Unknown initialization {init!r}: one of {sorted(schemes)}")
    schemes[init](weight)
    bias.zero_()


def dense_to_smoe_state_dict(
    dense_state: Dict[str, torch.Tensor], num_experts: int
) -> Dict[str, torch.Tensor]:
    """Expand a ``PositionwiseFeedForward`` state dict into E equal experts.

    Args:
        dense_state: Keys ``w_1.weight``, ``w_1.bias``, ``w_2.weight``,
            ``w_2.bias``.
        num_experts: E.

    Returns:
        State dict for :class:`SMoEFeedForward` (``w_1: (E, H, D)`` ...).
    """
    return {
        "w_1": dense_state["w_1.weight"].unsqueeze(0).repeat(num_experts, 1, 1),
        "b_1": dense_state["w_1.bias"].unsqueeze(0).repeat(num_experts, 1),
        "w_2": dense_state["w_2.weight"].unsqueeze(0).repeat(num_experts, 1, 1),
        "b_2": dense_state["w_2.bias"].unsqueeze(0).repeat(num_experts, 1),
    }


class ExpertRows:
    """Which rows of a batch each expert takes, with the row counts on the host.

    A block cuts its input into one group of rows per expert; the group sizes
    must be known on the host to do so. Built from host integers
    (:meth:`from_list`: the guiding tokens are known where the batch is
    built), it costs one copy to the device and no sync; built from a device
    tensor (:meth:`from_tensor`), one sync for the counts.

    Args:
        expert: (Batch,) expert index of each row.
        order: (Batch,) the rows sorted by expert (stable).
        counts: Rows per expert, E host ints.

    Attributes:
        groups: ``(e, rows)`` for each expert ``e`` with rows, ``rows`` (Count,)
            on the device, in batch order.
    """

    def __init__(self, expert: torch.Tensor, order: torch.Tensor, counts: Sequence[int]):
        self.expert = expert
        self.counts = tuple(counts)
        self.groups: List[Tuple[int, torch.Tensor]] = []
        start = 0
        for e, count in enumerate(self.counts):
            if count:
                self.groups.append((e, order[start : start + count]))
            start += count

    def __len__(self) -> int:
        return self.expert.size(0)

    @classmethod
    def from_list(
        cls, experts: Sequence[int], num_experts: int, device: Optional[torch.device] = None
    ) -> "ExpertRows":
        """From the expert of each row as host ints."""
        experts = list(experts)
        bad = [e for e in experts if not 0 <= e < num_experts]
        if bad:
            raise ValueError(f"expert index {bad[0]} out of range for {num_experts} experts")
        batch = len(experts)
        order = sorted(range(batch), key=experts.__getitem__)  # stable
        both = host_to_device(order + experts, device)  # one copy for both: (2 * Batch,)
        return cls(both[batch:], both[:batch], [experts.count(e) for e in range(num_experts)])

    @classmethod
    def from_tensor(cls, expert: torch.Tensor, num_experts: int) -> "ExpertRows":
        """From (Batch,) expert indices on the device: one host sync for the counts."""
        # shifted by one so that negative indices are counted (in bin 0), not refused by bincount
        counts = torch.bincount(expert.clamp(min=-1) + 1, minlength=num_experts + 1).tolist()
        if counts[0] or len(counts) > num_experts + 1:
            raise ValueError(f"expert index out of range for {num_experts} experts")
        return cls(expert, torch.argsort(expert, stable=True), counts[1:])


def host_to_device(values: Sequence[int], device: Optional[torch.device]) -> torch.Tensor:
    """A (N,) int64 tensor of host ints on ``device``, copied without waiting for the device.

    A copy from pageable host memory to a GPU makes the host wait until the
    device has caught up; from pinned memory it is queued like a kernel.
    """
    tensor = torch.tensor(values, dtype=torch.long)
    if device is None or torch.device(device).type != "cuda":
        return tensor.to(device) if device is not None else tensor
    return tensor.pin_memory().to(device, non_blocking=True)
