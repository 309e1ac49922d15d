"""``smoe``: ESPnet's S2T model, with the encoder routed by bandwidth tokens."""

import contextlib
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable
from typeguard import typechecked

from espnet_smoe.routing import GuidedExperts, RoutingError


class MaskGuidingTargets(torch.nn.Module):
    """Wrap the attention criterion so guiding-token targets carry no loss.

    See ``SMoETransformerDecoder``'s docstring for why (the leak hazard).
    """

    def __init__(self, criterion: torch.nn.Module, guiding_ids: Sequence[int], ignore_id: int):
        super().__init__()
        self.criterion = criterion
        self.ignore_id = ignore_id
        self.register_buffer(
            "guiding_ids", torch.tensor(sorted(guiding_ids), dtype=torch.long), persistent=False
        )

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """x: (Batch, Length, Vocab) logits; target: (Batch, Length) ids."""
        guided = torch.isin(target, self.guiding_ids.to(target.device))
        return self.criterion(x, target.masked_fill(guided, self.ignore_id))


class PerTaskLoss(torch.nn.Module):
    """Wrap the attention criterion; outside training also keep its value per task.

    The rows of a task are those whose target holds the task token (``<asr>``,
    ``<st_fra>``, ...). The values go to ESPnet's reporter as
    ``loss_att_<task>`` (e.g. ``loss_att_st_fra``): per-task dev-loss curves,
    the place where task interference shows.
    """

    def __init__(self, criterion: torch.nn.Module, task_ids: Dict[str, int]):
        super().__init__()
        self.criterion = criterion
        self.task_ids = dict(task_ids)
        self.last: Dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """x: (Batch, Length, Vocab) logits; target: (Batch, Length) ids."""
        self.last = {}
        if not self.training:
            with torch.no_grad():
                for task, task_id in self.task_ids.items():
                    rows = (target == task_id).any(dim=1)  # (Batch,)
                    if bool(rows.any()):
                        self.last[f"loss_att_{task}"] = self.criterion(x[rows], target[rows])
        return self.criterion(x, target)


def task_token_ids(token_list: Sequence[str]) -> Dict[str, int]:
    """ESPnet S2T's task tokens in a token list: ``{"asr": id, "st_fra": id, ...}``."""
    return {
        t[1:-1]: i for i, t in enumerate(token_list) if t == "<asr>" or (t.startswith("<st_") and t.endswith(">"))
    }


class ESPnetSMoES2TModel(ESPnetS2TModel):
    """S2T model for S-MoE encoders/decoders; also runs dense ones unchanged.

    Adds to ``ESPnetS2TModel``:

    * the data name ``bandwidth``: one bandwidth guiding-token id per
      utterance (from ``utt2bw`` through the ``smoe_s2t`` preprocessor), which
      routes an S-MoE encoder;
    * resolution of the encoder/decoder routing tables against the token list
      when the model is built (unknown tokens fail here, not mid-training);
    * errors that name the utterance when a row cannot be routed;
    * ``mask_guiding_targets``: no attention loss on the task token;
    * ``share_encoder_passes``: in training, rows of a batch with the same
      audio and bandwidth (the ASR and the ST sample of one recording, which
      length-sorted batching puts side by side) are encoded once and the
      output is used for each of them;
    * per-task attention losses on the dev set (``loss_att_asr``,
      ``loss_att_st_fra``, ...) in ESPnet's reporter, without DDP (where a
      rank's batch may lack a task and the ranks' statistics would differ);
    * the auxiliary loss of any submodule that exposes one as ``aux_loss``
      (e.g. the load balancing of a learned-gate MoE baseline): reset before
      each forward, summed after it over the blocks that ran.

    Args:
        mask_guiding_targets: Exclude the decoder's guiding tokens from the
            attention loss (default True; see the decoder's leak note).
        moe_aux_loss_weight: Weight of the summed ``aux_loss`` of the
            submodules that have one (unused without them).
        share_encoder_passes: Encode identical rows once in training
            (default True). The losses and gradients are those of encoding
            each row, except that the copies share one SpecAugment and
            dropout draw and batch-norm statistics count each recording once.
        **kwargs: Everything ``ESPnetS2TModel`` takes.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        token_list: Union[Tuple[str, ...], List[str]],
        encoder: torch.nn.Module,
        decoder: Optional[torch.nn.Module],
        mask_guiding_targets: bool = True,
        moe_aux_loss_weight: float = 0.01,
        share_encoder_passes: bool = True,
        **kwargs,
    ):
        super().__init__(
            vocab_size=vocab_size,
            token_list=token_list,
            encoder=encoder,
            decoder=decoder,
            **kwargs,
        )
        for part in (self.encoder, self.decoder):
            if isinstance(part, GuidedExperts):
                part.resolve_tokens(token_list)
        if mask_guiding_targets and isinstance(self.decoder, GuidedExperts):
            guiding_ids = [token_list.index(t) for t in self.decoder.routing]
            self.criterion_att = MaskGuidingTargets(
                self.criterion_att, guiding_ids, self.ignore_id
            )
        # outermost, so that it still sees the task tokens that the mask hides
        self.criterion_att = PerTaskLoss(self.criterion_att, task_token_ids(token_list))
        # Bandwidth token ids (Batch,) for the next encode(): set by forward()
        # and by bandwidth_scope() at inference.
        self._bandwidth: Optional[torch.Tensor] = None
        # True speech lengths for batched decoding of unpadded models.
        self._lengths: Optional[torch.Tensor] = None
        self.moe_aux_loss_weight = moe_aux_loss_weight
        self.share_encoder_passes = share_encoder_passes
        self._aux_loss_blocks = [m for m in self.modules() if hasattr(m, "aux_loss")]

    @property
    def routes_encoder(self) -> bool:
        return isinstance(self.encoder, GuidedExperts)

    @contextlib.contextmanager
    def bandwidth_scope(self, bandwidth: Optional[torch.Tensor]) -> Iterator[None]:
        """Route every ``encode`` inside the block by these token ids (Batch,)."""
        previous, self._bandwidth = self._bandwidth, bandwidth
        try:
            yield
        finally:
            self._bandwidth = previous

    @contextlib.contextmanager
    def lengths_scope(self, lengths: Optional[torch.Tensor]) -> Iterator[None]:
        """Use these speech lengths (Batch,) in every ``encode`` inside the block.

        ESPnet's batched decoding passes the padded length for every row; a
        model trained without padding needs the true ones.
        """
        previous, self._lengths = self._lengths, lengths
        try:
            yield
        finally:
            self._lengths = previous

    def forward(
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
                loss, stats, weight = super().forward(
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

    def encode(
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
        encoder_out, encoder_out_lens = super().encode(speech, speech_lengths)
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


def _names(utt_ids: Optional[Sequence[str]], rows) -> List[str]:
    rows = list(rows)
    if utt_ids is None:
        return [f"row {r}" for r in rows]
    return [utt_ids[r] for r in rows]
