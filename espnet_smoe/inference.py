"""Python inference API: ESPnet's ``Speech2Text`` with a bandwidth argument.

Example::

    from espnet_smoe.inference import SMoESpeech2Text
    s2t = SMoESpeech2Text.from_pretrained("exp/smoe/packed.zip", beam_size=5)
    nbest = s2t(speech, task_sym="<st_fra>", bandwidth_sym="nb")  # or "auto"
    text = nbest[0][3]   # text without special tokens
"""

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from espnet2.bin.s2t_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import unpack

import espnet_smoe  # noqa: F401  (registers the classes before the model is built)
from espnet_smoe.bandwidth import WIDEBAND, detect_bandwidth
from espnet_smoe.checkpoint import verify_smoe_checkpoint
from espnet_smoe.no_repeat_ngram import NoRepeatNgramScorer, add_full_scorer

AUTO = "auto"  # bandwidth_sym that detects the token from the audio

BandwidthArg = Union[None, str, torch.Tensor, np.ndarray]


def unpack_archive(archive: Union[str, Path], out_dir: Optional[Union[str, Path]] = None):
    """Unpack a model zip made by ``espnet2.bin.pack s2t``.

    Returns:
        Keyword arguments for ``Speech2Text`` (``s2t_train_config``,
        ``s2t_model_file`` ...).
    """
    archive = Path(archive)
    out_dir = Path(out_dir) if out_dir is not None else archive.with_suffix("")
    return unpack(archive, out_dir)


def _true_lengths(speech, speech_lengths) -> torch.Tensor:
    if speech_lengths is not None:
        return torch.as_tensor(speech_lengths, dtype=torch.long).reshape(-1)
    if isinstance(speech, (list, tuple)):
        return torch.tensor([len(torch.as_tensor(w).reshape(-1)) for w in speech])
    return torch.full((len(speech),), torch.as_tensor(speech).shape[1], dtype=torch.long)


class SMoESpeech2Text(Speech2Text):
    """``Speech2Text`` that routes an S-MoE encoder by the bandwidth token.

    Args:
        s2t_train_config: Training config.yaml.
        s2t_model_file: Model .pth; every expert parameter is checked to be in it.
        bandwidth_sym: Default bandwidth token (``nb`` or ``<nb>``), used when
            a call gives none; ``auto`` detects it from each utterance's audio
            (:mod:`espnet_smoe.bandwidth`).
        bandwidth_fallback: With ``auto``: the token for audio whose bandwidth
            cannot be measured (silence, clipping); a warning names the reason.
        no_repeat_ngram_size: n > 0 forbids a hypothesis to hold the same n
            tokens twice (:mod:`espnet_smoe.no_repeat_ngram`); 0: no limit.
        **kwargs: Everything ``Speech2Text`` takes (``beam_size``,
            ``task_sym``, ``lang_sym``, ``batch_size`` ...).
    """

    # The CLI sets this on a subclass, because ESPnet's inference() builds the
    # object itself without our argument.
    default_bandwidth_sym: Optional[str] = None
    default_bandwidth_fallback: str = WIDEBAND
    default_no_repeat_ngram_size: int = 0

    def __init__(
        self,
        s2t_train_config: Union[Path, str, None] = None,
        s2t_model_file: Union[Path, str, None] = None,
        bandwidth_sym: Optional[str] = None,
        bandwidth_fallback: Optional[str] = None,
        no_repeat_ngram_size: Optional[int] = None,
        **kwargs,
    ):
        if no_repeat_ngram_size is None:
            no_repeat_ngram_size = self.default_no_repeat_ngram_size
        if no_repeat_ngram_size < 0:  # before the model is loaded: a bad option fails at once
            raise ValueError(f"no_repeat_ngram_size must be >= 0 (0: no limit), got {no_repeat_ngram_size}")
        super().__init__(s2t_train_config, s2t_model_file, **kwargs)
        if no_repeat_ngram_size > 0:
            scorer = NoRepeatNgramScorer(no_repeat_ngram_size, self.beam_search.n_vocab, self.s2t_model.sos)
            add_full_scorer(self.beam_search, "no_repeat_ngram", scorer, 1.0)
            logging.info(f"no_repeat_ngram_size {no_repeat_ngram_size}: scorer no_repeat_ngram added to the search")
        if s2t_model_file is not None:
            verify_smoe_checkpoint(self.s2t_model, s2t_model_file)
        self.bandwidth_sym = bandwidth_sym or self.default_bandwidth_sym
        self.bandwidth_fallback = (bandwidth_fallback or self.default_bandwidth_fallback).strip("<>")

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, **kwargs):
        """Build from a local packed zip, or from a model-zoo tag via ESPnet."""
        if model_tag is not None and Path(model_tag).is_file():
            kwargs.update(unpack_archive(model_tag))
            model_tag = None
        return super().from_pretrained(model_tag=model_tag, **kwargs)

    def __call__(
        self,
        speech: Union[torch.Tensor, np.ndarray],
        text_prev=None,
        lang_sym: Optional[str] = None,
        task_sym: Optional[str] = None,
        predict_time: Optional[bool] = None,
        bandwidth: BandwidthArg = None,
        bandwidth_sym: Optional[str] = None,
    ):
        """Decode one utterance; see ``Speech2Text.__call__``.

        Args:
            speech: (Samples,) 16 kHz waveform.
            bandwidth: Token id (shape (1,)) as the data loader gives it, or a
                token string; else ``bandwidth_sym``, else the default.
        """
        ids = self._bandwidth_ids(1, bandwidth, bandwidth_sym, [speech])
        with self.s2t_model.bandwidth_scope(ids):
            return super().__call__(
                speech,
                text_prev=text_prev,
                lang_sym=lang_sym,
                task_sym=task_sym,
                predict_time=predict_time,
            )

    def batch_decode(
        self,
        speech,
        speech_lengths=None,
        text_prev=None,
        text_prev_lengths=None,
        lang_sym: Optional[str] = None,
        task_sym: Optional[str] = None,
        predict_time: Optional[bool] = None,
        bandwidth: BandwidthArg = None,
        bandwidth_lengths=None,
        bandwidth_sym: Optional[str] = None,
    ):
        """Decode a minibatch in one beam search; see ``Speech2Text.batch_decode``.

        Args:
            bandwidth: (Batch, 1) or (Batch,) token ids, or one token string
                for the whole batch.
        """
        n_utt = len(speech)
        true_lengths = _true_lengths(speech, speech_lengths)
        rows = [torch.as_tensor(speech[i]).reshape(-1)[: int(true_lengths[i])] for i in range(n_utt)]
        ids = self._bandwidth_ids(n_utt, bandwidth, bandwidth_sym, rows)
        lengths = None
        if not self.pads_speech:
            # ESPnet's batch_decode gives every row the padded length; an
            # unpadded model needs the true ones so the search masks padding.
            lengths = true_lengths
        with self.s2t_model.bandwidth_scope(ids), self.s2t_model.lengths_scope(lengths):
            return super().batch_decode(
                speech,
                speech_lengths,
                text_prev=text_prev,
                text_prev_lengths=text_prev_lengths,
                lang_sym=lang_sym,
                task_sym=task_sym,
                predict_time=predict_time,
            )

    @property
    def pads_speech(self) -> bool:
        """False when trained with ``preprocessor_conf.pad_speech: false``."""
        return bool(self.preprocessor_conf.get("pad_speech", True))

    def _pad_or_trim(self, speech: torch.Tensor) -> torch.Tensor:
        if self.pads_speech:
            return super()._pad_or_trim(speech)
        max_samples = int(self.preprocessor_conf["fs"] * self.preprocessor_conf["speech_length"])
        return speech[..., :max_samples]  # trimmed like in training, never padded

    def _bandwidth_ids(
        self, n_utt: int, bandwidth: BandwidthArg, bandwidth_sym: Optional[str], speech: Sequence = ()
    ) -> Optional[torch.Tensor]:
        if bandwidth is not None and not isinstance(bandwidth, str):
            ids = torch.as_tensor(bandwidth, dtype=torch.long).reshape(n_utt, -1)[:, 0]
            return ids.to(self.device)
        symbol = bandwidth if isinstance(bandwidth, str) else (bandwidth_sym or self.bandwidth_sym)
        if symbol is not None and symbol.strip("<>") == AUTO:
            return torch.tensor([self._token_id(s) for s in self.detect_bandwidths(speech)], device=self.device)
        if symbol is None:
            if self.s2t_model.routes_encoder:
                raise ValueError(
                    "this model routes its encoder by bandwidth "
                    f"{sorted(self.s2t_model.encoder.routing)}: give bandwidth_sym "
                    "(CLI: --bandwidth_sym nb) or a bandwidth data file"
                )
            return None
        return torch.full((n_utt,), self._token_id(symbol), dtype=torch.long, device=self.device)

    def _token_id(self, symbol: str) -> int:
        token = "<" + symbol.strip().strip("<>") + ">"
        if token not in self.converter.token2id:
            raise ValueError(f"bandwidth token {token} is not in the model's token list")
        return self.converter.token2id[token]

    def detect_bandwidths(self, speech: Sequence) -> List[str]:
        """``nb``/``wb`` of each (Samples,) waveform, at the model's sampling rate."""
        fs = int(self.preprocessor_conf.get("fs", 16000))
        symbols = []
        for row, wave in enumerate(speech):
            decision = detect_bandwidth(torch.as_tensor(wave).reshape(-1), fs, fallback=self.bandwidth_fallback)
            if decision.reason is not None:
                logging.warning(
                    "utterance %d of the batch: %s audio, bandwidth unknown; using <%s>",
                    row, decision.reason, decision.token,
                )
            symbols.append(decision.token)
        return symbols
