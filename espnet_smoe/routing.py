"""Guiding-token routing: which expert each utterance uses.

A routing table is written in the training YAML as a mapping from guiding
token to expert index, e.g. ``{"<nb>": 0, "<wb>": 1}``; several tokens may
share an expert. The model resolves it against the token list once, into a
``(vocab,)`` lookup tensor holding the expert of every guiding token and -1
elsewhere (routing prefixes on the device is one gather), and into a dict of
the same on the host: in training the data loader knows every row's tokens,
and routing there costs the device nothing.

:class:`GuidedExperts` is the part the S-MoE encoder and decoder share: it
swaps chosen ESPnet FFNs for :class:`~espnet_smoe.smoe_feed_forward.SMoEFeedForward`
blocks and hands every block the batch's routing.
"""

from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

from espnet_smoe.smoe_feed_forward import ExpertRows, SMoEFeedForward
from espnet_smoe.upcycling import upcycling_pre_hook


class RoutingError(ValueError):
    """A batch row could not be routed. ``rows`` lists the offending rows."""

    def __init__(self, message: str, rows: Sequence[int]):
        super().__init__(message)
        self.rows = list(rows)


def validate_routing(routing: Dict[str, int], num_experts: Optional[int]) -> int:
    """Check a routing table and return the number of experts.

    Args:
        routing: Guiding token -> expert index.
        num_experts: Expected number of experts, or None to use
            ``max(index) + 1``.
    """
    if not routing:
        raise ValueError("routing table is empty: give at least one guiding token")
    for token, index in routing.items():
        if not (token.startswith("<") and token.endswith(">")):
            raise ValueError(
                f"routing token {token!r} must be a special token like '<nb>'"
            )
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"routing {token!r} -> {index!r}: index must be int >= 0")
    needed = max(routing.values()) + 1
    if num_experts is None:
        num_experts = needed
    if needed > num_experts:
        raise ValueError(
            f"routing {routing} uses expert {needed - 1} but num_experts={num_experts}"
        )
    return num_experts


def replace_feed_forwards(
    layers: torch.nn.Module,
    ffn_attributes: Sequence[str],
    layer_numbers: Optional[List[int]],
    make_block: Callable[[PositionwiseFeedForward], torch.nn.Module],
) -> List[int]:
    """Swap the dense FFNs of chosen layers for ``make_block(dense)``.

    Args:
        layers: ESPnet layer stack (``encoders`` / ``decoders``).
        ffn_attributes: FFN attribute names in a layer; None ones are skipped.
        layer_numbers: 1-based layers, like ESPnet's ``interctc_layer_idx``
            (None: all).
        make_block: Builds the replacement from the dense FFN it replaces.

    Returns:
        The sorted layer numbers that were changed.
    """
    n_layers = len(layers)
    chosen = list(range(1, n_layers + 1)) if layer_numbers is None else layer_numbers
    bad = [n for n in chosen if not 1 <= n <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range 1..{n_layers}")
    for number in sorted(set(chosen)):
        layer = layers[number - 1]
        for name in ffn_attributes:
            dense = getattr(layer, name, None)
            if dense is None:
                continue
            if not isinstance(dense, PositionwiseFeedForward):
                raise ValueError(
                    f"layer {number}.{name} is {type(dense).__name__}: experts "
                    "replace only linear position-wise FFNs "
                    "(positionwise_layer_type: linear)"
                )
            setattr(layer, name, make_block(dense))
    return sorted(set(chosen))


class GuidedExperts:
    """Mixin for an ESPnet encoder/decoder whose FFNs follow guiding tokens.

    The host class calls :meth:`_install_experts` at the end of ``__init__``
    and :meth:`route` at the start of every forward.
    """

    def _install_experts(
        self,
        layers: torch.nn.Module,
        ffn_attributes: Sequence[str],
        routing: Dict[str, int],
        num_experts: Optional[int],
        smoe_layers: Optional[List[int]],
    ) -> None:
        """Replace the dense FFNs of the chosen layers by S-MoE blocks.

        Args:
            layers: The ESPnet layer stack (``encoders`` / ``decoders``).
            ffn_attributes: FFN attribute names in a layer, e.g.
                ``("feed_forward", "feed_forward_macaron")``; None ones skipped.
            routing: Guiding token -> expert index.
            num_experts: Number of experts (default: from the routing table).
            smoe_layers: 1-based layer numbers that get experts, like ESPnet's
                ``interctc_layer_idx`` (default: all).
        """
        self.routing = dict(routing)
        self.num_experts = validate_routing(self.routing, num_experts)
        self.smoe_layers = replace_feed_forwards(
            layers,
            ffn_attributes,
            smoe_layers,
            lambda dense: SMoEFeedForward(
                idim=dense.w_1.in_features,
                hidden_units=dense.w_1.out_features,
                num_experts=self.num_experts,
                dropout_rate=dense.dropout.p,
                activation=dense.activation,
            ),
        )
        self._blocks = [m for m in self.modules() if isinstance(m, SMoEFeedForward)]
        # Filled by resolve_tokens(); not saved: the token list is in config.yaml.
        self.register_buffer(
            "token_to_expert", torch.empty(0, dtype=torch.long), persistent=False
        )
        self.expert_of_id: Dict[int, int] = {}
        self.token_list: Optional[List[str]] = None
        # A dense checkpoint (hard sharing) loaded into this module fills
        # every expert with its layer's FFN: ESPnet's --init_param included.
        self.register_load_state_dict_pre_hook(upcycling_pre_hook)

    def smoe_blocks(self) -> List[SMoEFeedForward]:
        return list(self._blocks)

    def resolve_tokens(self, token_list: Sequence[str]) -> None:
        """Turn the routing table into a token-id lookup; fail on unknown tokens."""
        token2id = {token: i for i, token in enumerate(token_list)}
        missing = [token for token in self.routing if token not in token2id]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: routing tokens {missing} are not in the "
                f"token list ({len(token_list)} tokens). Add them as sentencepiece "
                "user_defined_symbols, or fix the routing table."
            )
        lookup = torch.full((len(token_list),), -1, dtype=torch.long)
        for token, expert in self.routing.items():
            lookup[token2id[token]] = expert
        self.token_to_expert = lookup.to(self.token_to_expert.device)
        # the same table on the host, for batches whose tokens the host knows
        self.expert_of_id = {token2id[token]: expert for token, expert in self.routing.items()}
        self.token_list = list(token_list)

    def experts_for_tokens(self, token_ids: Union[torch.Tensor, Sequence[int]]) -> List[int]:
        """Map one guiding token id per row to its expert, on the host.

        Args:
            token_ids: (Batch,) token ids: host ints (as the data loader knows
                them), or a tensor, which is read back once.

        Returns:
            Batch expert indices.

        Raises:
            RoutingError: naming the rows whose token has no route.
        """
        self._check_resolved()
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        experts = [self.expert_of_id.get(i, -1) for i in ids]
        bad = [r for r, e in enumerate(experts) if e < 0]
        if bad:
            shown = [self._token_name(ids[r]) for r in bad]
            raise RoutingError(
                f"rows {bad} have guiding tokens {shown} with no route; "
                f"known tokens: {sorted(self.routing)}",
                bad,
            )
        return experts

    def expert_rows(self, experts: Sequence[int]) -> ExpertRows:
        """The blocks' grouping of rows for host expert indices (one copy to the device)."""
        return ExpertRows.from_list(experts, self.num_experts, self.token_to_expert.device)

    def route(self, expert: Union[ExpertRows, torch.Tensor, Sequence[int]]) -> None:
        """Give every S-MoE block the expert of each batch row.

        Args:
            expert: :class:`ExpertRows`, host ints (Batch), or a (Batch,)
                tensor (one host sync to group its rows).
        """
        if isinstance(expert, torch.Tensor):
            if expert.dim() != 1:
                raise ValueError(f"expert must be (Batch,), got {tuple(expert.shape)}")
            expert = ExpertRows.from_tensor(expert, self.num_experts)
        elif not isinstance(expert, ExpertRows):
            expert = self.expert_rows(expert)
        for block in self._blocks:
            block.routed_expert = expert

    def _check_resolved(self) -> None:
        if self.token_to_expert.numel() == 0:
            raise RuntimeError(
                f"{type(self).__name__}.resolve_tokens(token_list) was not called: "
                "the S-MoE model does it when it is built"
            )

    def _token_name(self, token_id: int) -> str:
        if self.token_list is not None and 0 <= token_id < len(self.token_list):
            return self.token_list[token_id]
        return f"id {token_id}"
