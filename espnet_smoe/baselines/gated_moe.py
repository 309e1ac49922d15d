"""Baseline for a fair claim: a conventional learned-gate MoE (not the paper's method).

``gated_moe_conformer`` / ``gated_moe_transformer`` replace the same FFNs as
the S-MoE classes with E experts chosen per *frame/token* by a learned top-1
router (Switch Transformer style), trained with a load-balancing loss. Same
expert count and expert shape as S-MoE, so the comparison isolates
"supervised routing by guiding tokens" from "having experts".

The balancing loss of every block, ``E * sum_e f_e * P_e`` (f_e: share of
positions sent to expert e, P_e: mean router probability of e), is summed by
``ESPnetSMoES2TModel`` and added with weight ``moe_aux_loss_weight``. Padded
positions are counted too: the FFN does not see the padding mask.
"""

from typing import List, Optional

import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from typeguard import typechecked

from espnet_smoe.routing import replace_feed_forwards
from espnet_smoe.smoe_feed_forward import SMoEFeedForward


class GatedMoEFeedForward(torch.nn.Module):
    """Top-1 routed experts with a learned gate.

    Args:
        idim: Input and output dimension D.
        hidden_units: Hidden dimension H of every expert.
        num_experts: Number of experts E.
        dropout_rate: Dropout inside each expert.
        activation: Activation module.
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
        self.num_experts = num_experts
        self.router = torch.nn.Linear(idim, num_experts)
        # Same stacked experts and dispatch as S-MoE, applied per position.
        self.experts = SMoEFeedForward(idim, hidden_units, num_experts, dropout_rate, activation)
        self.aux_loss: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (Batch, Length, D) or (Batch, D) -> same shape."""
        flat = x.reshape(-1, x.size(-1))  # (N, D)
        probs = torch.softmax(self.router(flat).float(), dim=-1)  # (N, E)
        gate, expert = probs.max(dim=-1)  # top-1
        out = self.experts(flat, expert) * gate.unsqueeze(-1).to(flat.dtype)
        self.aux_loss = load_balancing_loss(probs, expert, self.num_experts)
        return out.reshape(x.shape)


def load_balancing_loss(probs: torch.Tensor, expert: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch Transformer balancing loss ``E * sum_e f_e * P_e`` (1.0 when balanced).

    Args:
        probs: (N, E) router probabilities.
        expert: (N,) chosen expert per position.
    """
    share = torch.bincount(expert, minlength=num_experts).to(probs.dtype) / expert.numel()
    return num_experts * torch.sum(share * probs.mean(dim=0))


def _gated_block(num_experts: int):
    def make(dense: PositionwiseFeedForward) -> GatedMoEFeedForward:
        return GatedMoEFeedForward(
            dense.w_1.in_features, dense.w_1.out_features, num_experts, dense.dropout.p, dense.activation
        )

    return make


class GatedMoEConformerEncoder(ConformerEncoder):
    """Conformer encoder with learned top-1 MoE FFNs (both macaron halves).

    Args:
        input_size: Input feature dimension.
        num_experts: Experts per FFN.
        moe_layers: 1-based blocks with experts (default: all).
        **kwargs: Any ``ConformerEncoder`` option.
    """

    @typechecked
    def __init__(self, input_size: int, num_experts: int = 2, moe_layers: Optional[List[int]] = None, **kwargs):
        super().__init__(input_size=input_size, **kwargs)
        replace_feed_forwards(
            self.encoders, ("feed_forward", "feed_forward_macaron"), moe_layers, _gated_block(num_experts)
        )


class GatedMoETransformerDecoder(TransformerDecoder):
    """Transformer decoder with learned top-1 MoE FFNs.

    Args:
        vocab_size: Output vocabulary size.
        encoder_output_size: Attention dimension.
        num_experts: Experts per FFN.
        moe_layers: 1-based blocks with experts (default: all).
        **kwargs: Any ``TransformerDecoder`` option.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        num_experts: int = 2,
        moe_layers: Optional[List[int]] = None,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, encoder_output_size=encoder_output_size, **kwargs)
        replace_feed_forwards(self.decoders, ("feed_forward",), moe_layers, _gated_block(num_experts))
