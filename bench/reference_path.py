"""The plugin's training path as of commit 0f6cd75, kept to measure against.

The benches run it beside the plugin's own path in one process (calls
interleaved) by patching these functions over the classes' methods for the
duration of a call (:func:`reference_path`). It is the code of that commit,
verbatim but for ``super()`` (spelled out, the functions live outside their
classes):

* ESPnet's ``ESPnetS2TModel._calc_att_loss`` / ``_calc_ctc_loss``: decoder
  inputs and CTC targets built row by row;
* routing read from device tensors (``nonzero().tolist()`` to check it),
  and a ``bincount().tolist()`` in every S-MoE block;
* twin rows found by a fingerprint of the audio on the device
  (``shared_rows``).
"""

import contextlib
import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.model import ESPnetSMoES2TModel, _names
from espnet_smoe.routing import GuidedExperts, RoutingError
from espnet_smoe.smoe_feed_forward import SMoEFeedForward


def model_forward(
    self,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    text_prev: torch.Tensor,
    text_prev_lengths: torch.Tensor,
    text_ctc: torch.Tensor,
    text_ctc_lengths: torch.Tensor,
    bandwidth: Optional[torch.Tensor] = None,
    bandwidth_lengths: Optional[torch.Tensor] = None,
    **kwargs,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
    """Frontend + encoder + decoder + losses, as ``ESPnetS2TModel.forward``.

    Args:
        speech: (Batch, Samples).
        text, text_prev, text_ctc: (Batch, Length) token ids.
        bandwidth: (Batch, 1) or (Batch,) bandwidth guiding-token ids;
            required when the encoder is S-MoE.
        kwargs: ``utt_id`` (list of Batch keys) names rows in errors.
    """
    utt_ids = kwargs.get("utt_id")
    if self.routes_encoder and bandwidth is None:
        raise ValueError(
            f"utterances {_names(utt_ids, range(speech.size(0)))} have no "
            f"bandwidth token, but the encoder routes by "
            f"{sorted(self.encoder.routing)}: add utt2bw to the data, e.g. "
            "--train_data_path_and_name_and_type dump/raw/train/utt2bw,bandwidth,text"
        )
    for block in self._aux_loss_blocks:
        block.aux_loss = None  # a block that does not run must not count
    try:
        with self.bandwidth_scope(bandwidth):
            loss, stats, weight = ESPnetS2TModel.forward(
                self,
                speech,
                speech_lengths,
                text,
                text_lengths,
                text_prev,
                text_prev_lengths,
                text_ctc,
                text_ctc_lengths,
                **kwargs,
            )
    except RoutingError as e:
        raise RoutingError(
            f"utterances {_names(utt_ids, e.rows)}: {e}", e.rows
        ) from e
    added = {}
    aux_losses = [b.aux_loss for b in self._aux_loss_blocks if b.aux_loss is not None]
    if aux_losses:
        aux = torch.stack([a.float() for a in aux_losses]).sum()
        loss = loss + self.moe_aux_loss_weight * aux
        added = {"loss_moe_aux": aux.detach(), "loss": loss.detach()}
    if not self.training and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        added.update(self.criterion_att.last)
    if added:
        stats.update(added)
        # new stats must be gathered like ESPnet's own, or DDP averaging fails
        loss, stats, weight = force_gatherable((loss, stats, weight), loss.device)
    return loss, stats, weight


def model_encode(
    self,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    bandwidth: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frontend + encoder; also used by ESPnet's S2T inference.

    Args:
        speech: (Batch, Samples).
        speech_lengths: (Batch,).
        bandwidth: (Batch,) or (Batch, 1) bandwidth token ids; defaults to
            the ones of :meth:`bandwidth_scope`.
    """
    if self.routes_encoder:
        if bandwidth is None:
            bandwidth = self._bandwidth
        if bandwidth is None:
            raise ValueError(
                "this S-MoE encoder routes by bandwidth tokens "
                f"{sorted(self.encoder.routing)}: give bandwidth ids (Batch,), "
                "e.g. inference with --bandwidth_sym nb or a bandwidth data file"
            )
        bandwidth = bandwidth.reshape(bandwidth.size(0), -1)[:, 0]
        if bandwidth.size(0) != speech.size(0):
            raise ValueError(
                f"{bandwidth.size(0)} bandwidth tokens for {speech.size(0)} utterances"
            )
        bandwidth = bandwidth.to(speech.device)
    if self._lengths is not None:
        speech_lengths = self._lengths.to(speech_lengths).clamp(max=speech.size(1))
    shared = None
    if self.training and self.share_encoder_passes and not getattr(self.encoder, "interctc_layer_idx", None):
        shared = shared_rows(speech, speech_lengths, bandwidth)
    if shared is not None:
        unique, inverse = shared
        speech_lengths = speech_lengths[unique]
        speech = speech[unique, : int(speech_lengths.max())]  # (Unique, Samples')
        bandwidth = bandwidth[unique] if bandwidth is not None else None
    if self.routes_encoder:
        self.encoder.route(self.encoder.experts_for_tokens(bandwidth))
    encoder_out, encoder_out_lens = ESPnetS2TModel.encode(self, speech, speech_lengths)
    if shared is None:
        return encoder_out, encoder_out_lens
    return encoder_out.index_select(0, inverse), encoder_out_lens.index_select(0, inverse)


def shared_rows(
    speech: torch.Tensor, lengths: torch.Tensor, bandwidth: Optional[torch.Tensor] = None
) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Rows of a batch that hold the same audio (and bandwidth token) as an earlier row.

    Rows of one length and bandwidth token are matched by a fingerprint (a random projection of
    their first samples, for the whole batch at once), and a match counts only after an exact
    comparison, done for all matches at once. Comparing rows pair by pair cost a device round
    trip per pair, and length-sorted batches hold several recordings of one length (TTS audio
    comes in steps of a few samples): ~260 round trips per 128-row tts_ui batch
    (``bench/bench_gpu_sharing.py``).

    Args:
        speech: (Batch, Samples, ...) padded waveforms (or features).
        lengths: (Batch,) true lengths.
        bandwidth: (Batch,) bandwidth token ids, or None.

    Returns:
        None when every row is different, else ``(unique, inverse)``:
        ``unique`` (Unique,) the first row of each distinct audio, and
        ``inverse`` (Batch,) the position in ``unique`` of each row's audio.
    """
    batch, device = speech.size(0), speech.device
    lens = lengths.tolist()
    bws = bandwidth.tolist() if bandwidth is not None else [None] * batch
    head = speech[:, : min(lens + [4096])].reshape(batch, -1).float()  # samples every row has
    projection = torch.randn(head.size(1), generator=torch.Generator().manual_seed(0)).to(device)
    prints = (head @ projection).tolist()  # (Batch,)
    first_of: List[int] = list(range(batch))  # each row's earlier twin, itself if none
    kept: Dict[Tuple, List[int]] = {}  # (length, bandwidth) -> rows kept as distinct so far
    for row in range(batch):
        earlier = kept.setdefault((lens[row], bws[row]), [])
        twin = next((f for f in earlier if math.isclose(prints[f], prints[row], rel_tol=1e-5, abs_tol=1e-6)), None)
        if twin is None:
            earlier.append(row)
        else:
            first_of[row] = twin
    twins = [r for r in range(batch) if first_of[r] != r]
    if twins:  # the exact check, up to each row's length; a fingerprint clash leaves the row on its own
        a = torch.tensor(twins, device=device)
        b = torch.tensor([first_of[r] for r in twins], device=device)
        equal = (speech[a] == speech[b]).reshape(len(twins), speech.size(1), -1).all(dim=2)  # (Twins, Samples)
        padding = torch.arange(speech.size(1), device=device) >= lengths.to(device)[a][:, None]
        for row, same in zip(twins, (equal | padding).all(dim=1).tolist()):
            if not same:
                first_of[row] = row
    unique = [r for r in range(batch) if first_of[r] == r]
    if len(unique) == batch:
        return None
    position = {row: i for i, row in enumerate(unique)}
    inverse = [position[first_of[r]] for r in range(batch)]
    return torch.tensor(unique, device=device), torch.tensor(inverse, device=device)


def experts_for_tokens(self, token_ids: torch.Tensor) -> torch.Tensor:
    """Map one guiding token id per row to its expert.

    Args:
        token_ids: (Batch,) token ids.

    Returns:
        (Batch,) expert indices.

    Raises:
        RoutingError: naming the rows whose token has no route.
    """
    self._check_resolved()
    in_vocab = (token_ids >= 0) & (token_ids < self.token_to_expert.numel())
    safe_ids = token_ids.clamp(min=0, max=self.token_to_expert.numel() - 1)
    expert = torch.where(in_vocab, self.token_to_expert[safe_ids], -1)
    bad = (expert < 0).nonzero().flatten().tolist()
    if bad:
        shown = [self._token_name(int(token_ids[r])) for r in bad]
        raise RoutingError(
            f"rows {bad} have guiding tokens {shown} with no route; "
            f"known tokens: {sorted(self.routing)}",
            bad,
        )
    return expert


def route(self, expert: torch.Tensor) -> None:
    """Give every S-MoE block the expert of each batch row, (Batch,)."""
    if expert.dim() != 1:
        raise ValueError(f"expert must be (Batch,), got {tuple(expert.shape)}")
    for block in self._blocks:
        block.routed_expert = expert


def experts_for_prefix(self, ys: torch.Tensor) -> torch.Tensor:
    """Expert of each row: the route of its first guiding token.

    Args:
        ys: (Batch, Length) token ids of decoder inputs or prefixes.

    Returns:
        (Batch,) expert indices.

    Raises:
        RoutingError: naming the rows that hold no guiding token.
    """
    self._check_resolved()
    mapped = self.token_to_expert[ys.clamp(min=0)]  # (Batch, Length), -1 = none
    has_route = mapped >= 0
    first = has_route.int().argmax(dim=1)  # first guiding position per row
    missing = (~has_route.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise RoutingError(
            f"decoder rows {missing} hold no guiding token of {sorted(self.routing)}; "
            f"row {missing[0]} starts with "
            f"{[self._token_name(int(t)) for t in ys[missing[0], :6]]}",
            missing,
        )
    return mapped.gather(1, first.unsqueeze(1)).squeeze(1)


def decoder_forward(
    self,
    hs_pad: torch.Tensor,
    hlens: torch.Tensor,
    ys_in_pad: torch.Tensor,
    ys_in_lens: torch.Tensor,
    return_hs: bool = False,
    return_all_hs: bool = False,
):
    """Teacher-forced forward; see ``TransformerDecoder.forward``.

    Args:
        hs_pad: (Batch, Tmax, D) encoder output.
        hlens: (Batch,).
        ys_in_pad: (Batch, Lmax) decoder input ids, prompt included.
        ys_in_lens: (Batch,).
    """
    self.route(self.experts_for_prefix(ys_in_pad))
    return TransformerDecoder.forward(
        self,
        hs_pad,
        hlens,
        ys_in_pad,
        ys_in_lens,
        return_hs=return_hs,
        return_all_hs=return_all_hs,
    )


def block_forward(
    self, x: torch.Tensor, expert: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Apply each row's expert.

    Args:
        x: (Batch, Length, D) or (Batch, D).
        expert: (Batch,) expert index per row. Defaults to the routing set
            by the owner in ``routed_expert``.

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
    if expert.dim() != 1 or expert.size(0) != x.size(0):
        raise ValueError(
            f"expert must be (Batch,) = ({x.size(0)},), got {tuple(expert.shape)}"
        )
    if self.num_experts == 1:
        return self._expert_forward(x, 0)

    # One host sync per call: the row count of every expert.
    counts = torch.bincount(expert, minlength=self.num_experts).tolist()
    if len(counts) > self.num_experts:
        raise ValueError(
            f"expert index {len(counts) - 1} out of range for "
            f"{self.num_experts} experts"
        )
    for e, count in enumerate(counts):
        if count == x.size(0):
            return self._expert_forward(x, e)  # a single-expert batch

    # Each expert gathers its rows and writes its output straight into
    # place: one copy in, one copy out, no re-ordering pass.
    order = torch.argsort(expert, stable=True)
    out: Optional[torch.Tensor] = None
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        rows = order[start : start + count]
        start += count
        y = self._expert_forward(x.index_select(0, rows), e)
        if out is None:
            # Allocated from the first expert's output, not from x: under
            # autocast the experts compute in bf16/fp16 while x may be fp32.
            out = y.new_empty(x.shape[:-1] + y.shape[-1:])
        out.index_copy_(0, rows, y)
    return out


PATCHES = (
    (ESPnetSMoES2TModel, "forward", model_forward),
    (ESPnetSMoES2TModel, "encode", model_encode),
    (ESPnetSMoES2TModel, "_calc_att_loss", ESPnetS2TModel._calc_att_loss),
    (ESPnetSMoES2TModel, "_calc_ctc_loss", ESPnetS2TModel._calc_ctc_loss),
    (GuidedExperts, "experts_for_tokens", experts_for_tokens),
    (GuidedExperts, "route", route),
    (SMoETransformerDecoder, "experts_for_prefix", experts_for_prefix),
    (SMoETransformerDecoder, "forward", decoder_forward),
    (SMoEFeedForward, "forward", block_forward),
)


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Run the plugin's classes on the reference path inside the block."""
    saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in PATCHES]
    try:
        for cls, name, function in PATCHES:
            setattr(cls, name, function)
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)
