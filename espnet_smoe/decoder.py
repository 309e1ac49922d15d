"""``smoe_transformer``: ESPnet's Transformer decoder with task-routed experts."""

from typing import Dict, List, Optional, Sequence, Union

import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from typeguard import typechecked

from espnet_smoe.routing import GuidedExperts, RoutingError
from espnet_smoe.smoe_feed_forward import ExpertRows


class SMoETransformerDecoder(GuidedExperts, TransformerDecoder):
    """Transformer decoder whose FFNs are S-MoE blocks chosen by the task token.

    The task guiding token (``<asr>``, ``<st_fra>`` ...) is already in every
    decoder input: ESPnet's S2T prompt is ``[<sop> prev] <sos> <lang> <task>
    ...``. Each row is routed by the first token of its prefix that is in the
    routing table. ``forward`` (training), ``forward_one_step``, ``score`` and
    ``batch_score`` (beam search) all route from the prefix they are given, so
    a beam search over hypotheses of different tasks routes each one right.

    The leak hazard, and what we chose: with per-utterance routing, the output
    at ``<lang>`` that predicts the task token is itself computed by that
    task's expert, so the model could "predict" the task from the routing. We
    keep routing per utterance (compute equal to the dense model) and instead
    exclude guiding-token targets from the attention loss
    (``ESPnetSMoES2TModel(mask_guiding_targets=True)``, the default): the task
    token is never learned as a prediction, and at inference it is always
    given in the prompt, never predicted.

    Args:
        vocab_size: Output vocabulary size.
        encoder_output_size: Attention dimension.
        routing: Task guiding token -> expert index.
        num_experts: Number of experts (default: from ``routing``).
        smoe_layers: 1-based blocks that get experts (default: all).
        **kwargs: Any ``TransformerDecoder`` option.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        routing: Dict[str, int] = {"<asr>": 0, "<st_fra>": 1},
        num_experts: Optional[int] = None,
        smoe_layers: Optional[List[int]] = None,
        **kwargs,
    ):
        TransformerDecoder.__init__(
            self,
            vocab_size=vocab_size,
            encoder_output_size=encoder_output_size,
            **kwargs,
        )
        self._install_experts(
            self.decoders, ("feed_forward",), routing, num_experts, smoe_layers
        )

    def experts_for_prefix(self, ys: Union[torch.Tensor, Sequence[Sequence[int]]]) -> List[int]:
        """Expert of each row: the route of its first guiding token.

        Args:
            ys: (Batch, Length) token ids of decoder inputs or prefixes: a
                tensor (read back to the host once) or host rows of ints.

        Returns:
            Batch expert indices.

        Raises:
            RoutingError: naming the rows that hold no guiding token.
        """
        self._check_resolved()
        if isinstance(ys, torch.Tensor):
            mapped = self.token_to_expert[ys.clamp(min=0)]  # (Batch, Length), -1 = none
            first = (mapped >= 0).int().argmax(dim=1)  # first guiding position per row, 0 if none
            experts = mapped.gather(1, first.unsqueeze(1)).squeeze(1).tolist()
        else:
            experts = [next((self.expert_of_id[t] for t in row if t in self.expert_of_id), -1) for row in ys]
        missing = [r for r, e in enumerate(experts) if e < 0]
        if missing:
            head = ys[missing[0]][:6]
            head = head.tolist() if isinstance(head, torch.Tensor) else list(head)
            raise RoutingError(
                f"decoder rows {missing} hold no guiding token of {sorted(self.routing)}; "
                f"row {missing[0]} starts with {[self._token_name(t) for t in head]}",
                missing,
            )
        return experts

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        return_hs: bool = False,
        return_all_hs: bool = False,
        expert: Optional[Union[ExpertRows, Sequence[int]]] = None,
    ):
        """Teacher-forced forward; see ``TransformerDecoder.forward``.

        Args:
            hs_pad: (Batch, Tmax, D) encoder output.
            hlens: (Batch,).
            ys_in_pad: (Batch, Lmax) decoder input ids, prompt included.
            ys_in_lens: (Batch,).
            expert: The rows' experts, when the caller knows them (the S-MoE
                model does, from the data loader); else they are read from
                ``ys_in_pad`` (one host sync).
        """
        self.route(self.experts_for_prefix(ys_in_pad) if expert is None else expert)
        return super().forward(
            hs_pad,
            hlens,
            ys_in_pad,
            ys_in_lens,
            return_hs=return_hs,
            return_all_hs=return_all_hs,
        )

    def forward_one_step(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor = None,
        *,
        cache: List[torch.Tensor] = None,
        return_hs: bool = False,
    ):
        """One search step; ``score`` and ``batch_score`` come through here.

        Args:
            tgt: (Batch, L) prefixes, prompt included.
            memory: (Batch, T, D) encoder output.
        """
        self.route(self.experts_for_prefix(tgt))
        return super().forward_one_step(
            tgt, tgt_mask, memory, memory_mask, cache=cache, return_hs=return_hs
        )
