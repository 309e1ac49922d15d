"""``smoe_conformer``: ESPnet's Conformer encoder with bandwidth-routed experts."""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from typeguard import typechecked

from espnet_smoe.routing import GuidedExperts
from espnet_smoe.smoe_feed_forward import ExpertRows


class SMoEConformerEncoder(GuidedExperts, ConformerEncoder):
    """Conformer encoder whose FFNs (both macaron halves) are S-MoE blocks.

    Each utterance's bandwidth guiding token (``<nb>``/``<wb>``) picks the
    expert of every S-MoE FFN for all its frames. Everything else is ESPnet's
    ``ConformerEncoder``, and all its options keep working.

    Args:
        input_size: Input feature dimension.
        routing: Bandwidth guiding token -> expert index.
        num_experts: Number of experts (default: from ``routing``).
        smoe_layers: 1-based blocks that get experts (default: all).
        **kwargs: Any ``ConformerEncoder`` option (``output_size``,
            ``linear_units``, ``num_blocks``, ``macaron_style`` ...).
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        routing: Dict[str, int] = {"<nb>": 0, "<wb>": 1},
        num_experts: Optional[int] = None,
        smoe_layers: Optional[List[int]] = None,
        **kwargs,
    ):
        ConformerEncoder.__init__(self, input_size=input_size, **kwargs)
        self._install_experts(
            self.encoders,
            ("feed_forward", "feed_forward_macaron"),
            routing,
            num_experts,
            smoe_layers,
        )

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc=None,
        return_all_hs: bool = False,
        expert: Optional[Union[ExpertRows, torch.Tensor, Sequence[int]]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Encode, with the experts chosen per utterance.

        Args:
            xs_pad: (Batch, Length, input_size).
            ilens: (Batch,).
            expert: The expert of each utterance (:class:`ExpertRows`, host
                ints or a (Batch,) tensor). If None, the routing set by
                :meth:`route` (the S-MoE model does it from the bandwidth
                tokens) is used.

        Returns:
            Like ``ConformerEncoder.forward``: (Batch, Length', output_size),
            (Batch,), None.
        """
        if expert is not None:
            self.route(expert)
        return super().forward(
            xs_pad,
            ilens,
            prev_states=prev_states,
            masks=masks,
            ctc=ctc,
            return_all_hs=return_all_hs,
        )
