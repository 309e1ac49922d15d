"""``smoe``: ESPnet's S2T model, with the encoder routed by bandwidth tokens."""

import contextlib
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable
from typeguard import typechecked

from espnet_smoe.batch import HOST_ROWS, describe_rows
from espnet_smoe.routing import GuidedExperts, RoutingError
from espnet_smoe.smoe_feed_forward import ExpertRows, host_to_device


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
    * a training step whose host syncs do not grow with the batch: routing
      and shared encoder passes decided on the host from the collate's
      ``host_rows`` (:mod:`espnet_smoe.batch`), and ESPnet's decoder inputs
      and CTC targets built for all rows at once (equal losses);
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
        # Bandwidth token ids (Batch,) for the next encode() outside forward():
        # set by bandwidth_scope() at inference.
        self._bandwidth: Optional[torch.Tensor] = None
        # True speech lengths for batched decoding of unpadded models.
        self._lengths: Optional[torch.Tensor] = None
        # Routing and shared encoder passes of the batch in forward().
        self._plan: Optional[BatchPlan] = None
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

    @contextlib.contextmanager
    def _plan_scope(self, plan: Optional["BatchPlan"]) -> Iterator[None]:
        previous, self._plan = self._plan, plan
        try:
            yield
        finally:
            self._plan = previous

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
            kwargs: ``utt_id`` (list of Batch keys) names rows in errors;
                ``host_rows`` (from :class:`~espnet_smoe.batch.SMoECollateFn`)
                holds the rows' tokens and audio identities on the host, so
                that routing and shared encoder passes need no host sync.
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
        batch = dict(speech=speech, speech_lengths=speech_lengths, text=text, text_lengths=text_lengths,
                     text_prev=text_prev, text_prev_lengths=text_prev_lengths, bandwidth=bandwidth,
                     bandwidth_lengths=bandwidth_lengths)
        try:
            plan = self.plan_batch(batch, kwargs.get(HOST_ROWS))
            with self._plan_scope(plan):
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

    def plan_batch(
        self, batch: Dict[str, Optional[torch.Tensor]], rows: Optional[Dict[str, list]] = None
    ) -> Optional["BatchPlan"]:
        """Routing and shared encoder passes of a batch, decided on the host.

        Args:
            batch: The forward's tensors (``speech``, ``text``, ``bandwidth``
                ... with their ``_lengths``).
            rows: ``batch["host_rows"]`` of :class:`~espnet_smoe.batch.SMoECollateFn`;
                read back from ``batch`` when None or not of this batch
                (e.g. split by DataParallel).

        Returns:
            None when nothing is routed or shared.

        Raises:
            RoutingError: naming the rows whose guiding token has no route.
        """
        size = batch["speech"].size(0)
        share = self.training and self.share_encoder_passes and not getattr(self.encoder, "interctc_layer_idx", None)
        routes_decoder = isinstance(self.decoder, GuidedExperts)
        needed = (["audio"] if share else []) + (["bandwidth"] if self.routes_encoder else [])
        needed += ["text", "text_prev"] if routes_decoder else []
        if not needed:
            return None
        if rows is None or any(len(rows.get(name, ())) != size for name in needed):
            rows = describe_rows(batch, needed)
        encoder = self.encoder.experts_for_tokens(rows["bandwidth"]) if self.routes_encoder else None
        unique = inverse = None
        if share:
            # same audio and same encoder input: the bandwidth token routes the encoder
            keys = list(zip(rows["audio"], encoder or [None] * size))
            first_row: Dict[tuple, int] = {}
            for row, key in enumerate(keys):
                first_row.setdefault(key, row)
            if len(first_row) < size:
                unique_rows = list(first_row.values())
                position = {key: i for i, key in enumerate(first_row)}
                inverse_rows = [position[key] for key in keys]
                both = host_to_device(unique_rows + inverse_rows, batch["speech"].device)
                unique, inverse = both[: len(unique_rows)], both[len(unique_rows) :]
                encoder = [encoder[r] for r in unique_rows] if encoder is not None else None
        decoder = None
        if routes_decoder:
            prompts = [
                (prev if self.na not in prev else []) + text for prev, text in zip(rows["text_prev"], rows["text"])
            ]
            decoder = self.decoder.expert_rows(self.decoder.experts_for_prefix(prompts))
        return BatchPlan(
            encoder=self.encoder.expert_rows(encoder) if encoder is not None else None,
            unique=unique,
            inverse=inverse,
            decoder=decoder,
        )

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        bandwidth: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + encoder; also used by ESPnet's S2T inference.

        Inside :meth:`forward`, the batch's plan routes the encoder and picks
        the rows to encode; elsewhere the bandwidth tokens do (one host sync).

        Args:
            speech: (Batch, Samples).
            speech_lengths: (Batch,).
            bandwidth: (Batch,) or (Batch, 1) bandwidth token ids; defaults to
                the ones of :meth:`bandwidth_scope`.
        """
        if self._lengths is not None:
            speech_lengths = self._lengths.to(speech_lengths).clamp(max=speech.size(1))
        plan = self._plan
        if plan is None and self.routes_encoder:
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
            self.encoder.route(self.encoder.experts_for_tokens(bandwidth))
        if plan is not None and plan.encoder is not None:
            self.encoder.route(plan.encoder)
        if plan is None or plan.unique is None:
            return super().encode(speech, speech_lengths)
        encoder_out, encoder_out_lens = super().encode(
            speech.index_select(0, plan.unique), speech_lengths.index_select(0, plan.unique)
        )
        return encoder_out.index_select(0, plan.inverse), encoder_out_lens.index_select(0, plan.inverse)

    def _calc_att_loss(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        ys_pad: torch.Tensor,
        ys_pad_lens: torch.Tensor,
        ys_prev_pad: torch.Tensor,
        ys_prev_lens: torch.Tensor,
    ):
        """ESPnet's attention loss, with the decoder's inputs built for all rows at once.

        Args:
            encoder_out: (Batch, T, D).
            encoder_out_lens: (Batch,).
            ys_pad: (Batch, L) targets, padded with ``ignore_id``.
            ys_pad_lens: (Batch,).
            ys_prev_pad: (Batch, Lp) previous text (``<na>`` if none).
            ys_prev_lens: (Batch,).

        Returns:
            loss_att, acc_att (a tensor: reading it back would sync), cer_att, wer_att.
        """
        ys_in_pad, ys_in_lens, ys_out_pad = s2t_decoder_io(
            ys_pad, ys_prev_pad, sos=self.sos, eos=self.eos, sop=self.sop, na=self.na, ignore_id=self.ignore_id
        )
        routed = {} if self._plan is None or self._plan.decoder is None else {"expert": self._plan.decoder}
        decoder_out, _ = self.decoder(encoder_out, encoder_out_lens, ys_in_pad, ys_in_lens, **routed)
        loss_att = self.criterion_att(decoder_out, ys_out_pad)
        counted = ys_out_pad != self.ignore_id  # (Batch, L')
        acc_att = ((decoder_out.argmax(dim=-1) == ys_out_pad) & counted).sum() / counted.sum()
        if self.training or self.error_calculator is None:
            return loss_att, acc_att.detach(), None, None
        ys_hat = decoder_out.argmax(dim=-1)
        cer_att, wer_att = self.error_calculator(ys_hat.cpu(), ys_out_pad.cpu())
        return loss_att, acc_att.detach(), cer_att, wer_att

    def _calc_ctc_loss(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        ys_pad: torch.Tensor,
        ys_pad_lens: torch.Tensor,
    ):
        """ESPnet's CTC loss over the rows without ``<na>``, on the padded batch.

        ESPnet selects those rows and concatenates each one's targets (host
        work per row); here the rows with ``<na>`` get an empty target and no
        weight instead, and torch's CTC reads the padded targets directly.

        Args:
            encoder_out: (Batch, T, D).
            encoder_out_lens: (Batch,).
            ys_pad: (Batch, L) CTC targets, padded with -1.
            ys_pad_lens: (Batch,).
        """
        ctc = self.ctc
        if ctc.ctc_type != "builtin" or not ctc.reduce:
            return super()._calc_ctc_loss(encoder_out, encoder_out_lens, ys_pad, ys_pad_lens)
        valid = (ys_pad != self.na).all(dim=1)  # (Batch,)
        # F.dropout in training mode whatever the model's: what ESPnet's CTC.forward does
        logits = ctc.ctc_lo(torch.nn.functional.dropout(encoder_out, p=ctc.dropout_rate))  # (Batch, T, V)
        log_probs = logits.transpose(0, 1).log_softmax(2).float()  # (T, Batch, V)
        per_row = ctc.ctc_loss(
            log_probs, ys_pad.clamp(min=0), encoder_out_lens, torch.where(valid, ys_pad_lens, 0)
        )  # (Batch,)
        loss_ctc = torch.where(valid, per_row, 0.0).sum() / valid.sum().clamp(min=1)
        loss_ctc = loss_ctc.to(dtype=encoder_out.dtype)
        cer_ctc = None
        if not self.training and self.error_calculator is not None and bool(valid.any()):
            ys_hat = ctc.argmax(encoder_out[valid]).data
            cer_ctc = self.error_calculator(ys_hat.cpu(), ys_pad[valid].cpu(), is_ctc=True)
        return loss_ctc, cer_ctc


class BatchPlan(NamedTuple):
    """What the host decided for one training batch (see ``plan_batch``).

    Attributes:
        encoder: The experts of the encoder's rows (after sharing), or None.
        unique: (Unique,) the rows encoded, one per distinct recording and
            bandwidth token, or None when every row is encoded.
        inverse: (Batch,) the position in ``unique`` of each row, or None.
        decoder: The experts of the decoder's rows, or None.
    """

    encoder: Optional[ExpertRows]
    unique: Optional[torch.Tensor]
    inverse: Optional[torch.Tensor]
    decoder: Optional[ExpertRows]


def s2t_decoder_io(
    ys_pad: torch.Tensor, ys_prev_pad: torch.Tensor, sos: int, eos: int, sop: int, na: int, ignore_id: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ESPnet S2T's decoder inputs and targets, built for the whole batch at once.

    Per row, as ``ESPnetS2TModel._calc_att_loss`` builds it (``y``: the row's
    tokens that are not ``ignore_id``):

    * previous text with ``<na>``: input ``<sos> y``, target ``y <eos>``;
    * else: input ``<sop> prev <sos> y``, target ``ignore*(len(prev)+1) y <eos>``;

    padded with ``<eos>`` (input) and ``ignore_id`` (target) to the longest
    row. Tokens are scattered to their places in one pass; the width costs
    one host sync (ESPnet's decoder masks to the longest input).

    Args:
        ys_pad: (Batch, L) target tokens.
        ys_prev_pad: (Batch, Lp) previous text.

    Returns:
        ys_in_pad (Batch, W), ys_in_lens (Batch,), ys_out_pad (Batch, W).
    """
    keep = ys_pad != ignore_id  # (Batch, L)
    keep_prev = ys_prev_pad != ignore_id  # (Batch, Lp)
    use_prev = ~(ys_prev_pad == na).any(dim=1, keepdim=True)  # (Batch, 1)
    keep_prev = keep_prev & use_prev
    n_prev = keep_prev.sum(dim=1, keepdim=True)  # (Batch, 1)
    start = torch.where(use_prev, n_prev + 2, 1)  # (Batch, 1) input position of y's first token
    ys_in_lens = (start + keep.sum(dim=1, keepdim=True)).squeeze(1)  # (Batch,)
    width = int(ys_in_lens.max())
    trash = width  # one extra column receives every dropped token, then is cut off
    position = keep.cumsum(dim=1) - 1  # (Batch, L) place of each kept token within y
    y_at = torch.where(keep, start + position, trash)  # (Batch, L)
    prev_at = torch.where(keep_prev, keep_prev.cumsum(dim=1), trash)  # (Batch, Lp) after <sop>

    ys_in = ys_pad.new_full((ys_pad.size(0), width + 1), eos)  # (Batch, W + 1)
    ys_in[:, :1] = torch.where(use_prev, sop, sos)
    ys_in.scatter_(1, start - 1, sos)
    ys_in.scatter_(1, prev_at, ys_prev_pad.to(ys_in.dtype))
    ys_in.scatter_(1, y_at, ys_pad)
    ys_out = ys_pad.new_full((ys_pad.size(0), width + 1), ignore_id)  # (Batch, W + 1)
    ys_out.scatter_(1, torch.where(keep, y_at - 1, trash), ys_pad)
    ys_out.scatter_(1, ys_in_lens.unsqueeze(1) - 1, eos)
    return ys_in[:, :width].contiguous(), ys_in_lens, ys_out[:, :width].contiguous()


def _names(utt_ids: Optional[Sequence[str]], rows) -> List[str]:
    rows = list(rows)
    if utt_ids is None:
        return [f"row {r}" for r in rows]
    return [utt_ids[r] for r in rows]
