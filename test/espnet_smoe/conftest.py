"""Tiny S2T token list and models shared by the plugin's unit tests."""

import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.model import ESPnetSMoES2TModel
from espnet_smoe.smoe_feed_forward import SMoEFeedForward, dense_to_smoe_state_dict


def tiny_token_list():
    """The layout ESPnet's S2T expects, with our guiding tokens in it."""
    words = [f"w{i}" for i in range(20)]
    specials = ["<na>", "<nb>", "<wb>", "<asr>", "<st_fra>", "<eng>", "<notimestamps>"]
    times = [f"<{i * 0.02:.2f}>" for i in range(1501)]
    return ["<blank>", "<unk>"] + words + specials + times + ["<sos>", "<eos>", "<sop>"]


@pytest.fixture(scope="session")
def token_list():
    return tiny_token_list()


def _expand_dense_into(smoe: torch.nn.Module, dense: torch.nn.Module) -> None:
    """Load a dense model's weights into an S-MoE one, every expert a copy."""
    state = dense.state_dict()
    for prefix, module in smoe.named_modules():
        if isinstance(module, SMoEFeedForward):
            sub = {k[len(prefix) + 1 :]: state.pop(k) for k in list(state) if k.startswith(prefix + ".")}
            for k, v in dense_to_smoe_state_dict(sub, module.num_experts).items():
                state[f"{prefix}.{k}"] = v
    smoe.load_state_dict(state, strict=True)


@pytest.fixture
def expand_dense_into():
    return _expand_dense_into


ENC = dict(output_size=16, attention_heads=2, linear_units=24, num_blocks=1, input_layer="conv2d",
           macaron_style=True, cnn_module_kernel=3, dropout_rate=0.0)
DEC = dict(attention_heads=2, linear_units=24, num_blocks=1, dropout_rate=0.0)


def build_tiny_s2t(token_list, encoder="smoe", decoder="smoe", model_cls=ESPnetSMoES2TModel, enc_kw=None,
                   dec_kw=None, **model_kw):
    """A tiny S2T model on 20-dim features (no frontend): S-MoE or dense encoder and decoder."""
    v = len(token_list)
    enc_conf = {**ENC, **(enc_kw or {})}
    enc = SMoEConformerEncoder(20, **enc_conf) if encoder == "smoe" else ConformerEncoder(20, **enc_conf)
    dec_conf = {**DEC, **(dec_kw or {})}
    dec = SMoETransformerDecoder(v, 16, **dec_conf) if decoder == "smoe" else TransformerDecoder(v, 16, **dec_conf)
    return model_cls(vocab_size=v, token_list=token_list, frontend=None, specaug=None, normalize=None,
                     preencoder=None, encoder=enc, postencoder=None, decoder=dec,
                     ctc=CTC(v, 16), ctc_weight=0.3, **model_kw)


@pytest.fixture
def build():
    return build_tiny_s2t
