"""ONNX export of a dense route: the encoder and one decoder step.

For a plain model made by ``export_route`` (every S-MoE part fixed). The
graphs start after ESPnet's frontend: the encoder takes the frontend's
features (``model._extract_feats``: log-mel for ``frontend: default``), so
the STFT stays with the caller, as in most ONNX speech runtimes.

* ``encoder.onnx``: ``feats (B, T, F)``, ``feats_lengths (B,)`` ->
  ``enc (B, T', D)``, ``enc_lengths (B,)``; normalisation included.
* ``decoder_step.onnx``: ``ys (B, L)`` (prompt and tokens so far),
  ``memory (B, T', D)`` -> ``logp (B, V)``, the log-probabilities of the next
  token. No cache: the prefix is recomputed every step (a simple graph; a
  beam search calls it once per step with all hypotheses as the batch).

The TorchScript-based exporter (``dynamo=False``) is used: it keeps ESPnet's
length-dependent slicing (relative positions, masks) dynamic, which the test
checks on lengths other than the example's.
"""

from pathlib import Path
from typing import Dict, Union

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet_smoe.routing import GuidedExperts


class EncoderForOnnx(torch.nn.Module):
    """Normalisation + encoder of an ESPnet S2T model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.normalize = model.normalize
        self.encoder = model.encoder

    def forward(self, feats: torch.Tensor, feats_lengths: torch.Tensor):
        """feats: (B, T, F), feats_lengths: (B,) -> (B, T', D), (B,)."""
        feats = feats.clone()  # ESPnet's GlobalMVN normalises in place
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        enc, enc_lengths, _ = self.encoder(feats, feats_lengths)
        return enc, enc_lengths


class DecoderStepForOnnx(torch.nn.Module):
    """One step of the attention decoder: next-token log-probabilities."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, ys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """ys: (B, L) token ids, memory: (B, T', D) -> (B, V)."""
        mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)  # (1, L, L)
        logp, _ = self.decoder.forward_one_step(ys, mask, memory, cache=None)
        return logp


def export_onnx(
    model: torch.nn.Module, out_dir: Union[str, Path], opset_version: int = 17
) -> Dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder_step.onnx`` for a dense S2T model.

    Args:
        model: A plain ESPnet S2T model (e.g. an ``export_route`` result
            built with ``S2TTask.build_model_from_file``), in eval mode.
        out_dir: Output directory.

    Returns:
        ``{"encoder": path, "decoder_step": path}``.
    """
    for part in (model.encoder, model.decoder):
        if isinstance(part, GuidedExperts):
            raise ValueError(
                f"{type(part).__name__} still routes by guiding tokens: export a "
                "route with both --bandwidth and --task before ONNX export"
            )
    model = model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, step = EncoderForOnnx(model).eval(), DecoderStepForOnnx(model).eval()
    # an example of 1 s of 16 kHz audio; every axis but the feature size is dynamic
    feats, feats_lengths = model._extract_feats(torch.zeros(1, 16000), torch.tensor([16000]))
    with torch.no_grad():
        memory, _ = encoder(feats, feats_lengths)
    paths = {"encoder": out_dir / "encoder.onnx", "decoder_step": out_dir / "decoder_step.onnx"}
    torch.onnx.export(
        encoder,
        (feats, feats_lengths),
        paths["encoder"],
        input_names=["feats", "feats_lengths"],
        output_names=["enc", "enc_lengths"],
        dynamic_axes={
            "feats": {0: "batch", 1: "frames"},
            "feats_lengths": {0: "batch"},
            "enc": {0: "batch", 1: "enc_frames"},
            "enc_lengths": {0: "batch"},
        },
        opset_version=opset_version,
        dynamo=False,
    )
    ys = torch.tensor([[model.sos, model.sos]])
    torch.onnx.export(
        step,
        (ys, memory),
        paths["decoder_step"],
        input_names=["ys", "memory"],
        output_names=["logp"],
        dynamic_axes={
            "ys": {0: "batch", 1: "length"},
            "memory": {0: "batch", 1: "enc_frames"},
            "logp": {0: "batch"},
        },
        opset_version=opset_version,
        dynamo=False,
    )
    return paths
