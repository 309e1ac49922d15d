"""Sparse upcycling: a dense (hard-sharing) checkpoint into an S-MoE model."""

import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.model import ESPnetSMoES2TModel
from espnet_smoe.upcycling import UpcyclingError, check_init_params

ENC = dict(output_size=16, attention_heads=2, linear_units=24, num_blocks=2, input_layer="conv2d",
           macaron_style=True, cnn_module_kernel=3, dropout_rate=0.0, positional_dropout_rate=0.0,
           attention_dropout_rate=0.0)
DEC = dict(attention_heads=2, linear_units=24, num_blocks=2, dropout_rate=0.0, positional_dropout_rate=0.0,
           self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0)


def build(token_list, smoe: bool, linear_units=24, **model_kw):
    """Hard sharing (smoe=False) or S-MoE encoder+decoder, as the recipe's `model: smoe`."""
    v = len(token_list)
    enc_conf, dec_conf = {**ENC, "linear_units": linear_units}, {**DEC, "linear_units": linear_units}
    enc = SMoEConformerEncoder(20, **enc_conf) if smoe else ConformerEncoder(20, **enc_conf)
    dec = SMoETransformerDecoder(v, 16, **dec_conf) if smoe else TransformerDecoder(v, 16, **dec_conf)
    return ESPnetSMoES2TModel(vocab_size=v, token_list=token_list, frontend=None, specaug=None, normalize=None,
                              preencoder=None, encoder=enc, postencoder=None, decoder=dec, ctc=CTC(v, 16),
                              ctc_weight=0.3, **model_kw)


def mixed_batch(token_list):
    """Four utterances: every bandwidth with every task, different lengths."""
    t = token_list.index
    rows = [("<nb>", "<asr>"), ("<wb>", "<asr>"), ("<nb>", "<st_fra>"), ("<wb>", "<st_fra>")]
    text = torch.tensor([[t("<eng>"), t(task), t("<notimestamps>"), t(f"w{i}"), t(f"w{i + 5}")]
                         for i, (_, task) in enumerate(rows)])
    n = len(rows)
    return dict(
        speech=torch.randn(n, 40, 20), speech_lengths=torch.tensor([40, 36, 33, 40]),
        text=text, text_lengths=torch.full((n,), 5),
        text_prev=torch.full((n, 1), t("<na>")), text_prev_lengths=torch.ones(n, dtype=torch.long),
        text_ctc=torch.tensor([[t("w1"), t("w2")]] * n), text_ctc_lengths=torch.full((n,), 2),
        bandwidth=torch.tensor([[t(bw)] for bw, _ in rows]), bandwidth_lengths=torch.ones(n, dtype=torch.long),
    )


def outputs(model, b):
    """Loss, encoder output and decoder logits of a batch."""
    with torch.no_grad():
        loss = model(**b)[0]
        with model.bandwidth_scope(b["bandwidth"]):
            enc, enc_lens = model.encode(b["speech"], b["speech_lengths"])
        ys = torch.cat([torch.full((4, 1), model.sos), b["text"]], dim=1)
        logits, _ = model.decoder(enc, enc_lens, ys, b["text_lengths"] + 1)
    return loss, enc, logits


@pytest.fixture
def dense_file(token_list, tmp_path):
    torch.manual_seed(11)
    dense = build(token_list, smoe=False).eval()
    path = tmp_path / "valid.acc.ave.pth"
    torch.save(dense.state_dict(), path)
    return dense, path


def test_upcycled_model_equals_the_dense_model(token_list, dense_file):
    """Before any update, every output of the upcycled model is the dense model's."""
    dense, path = dense_file
    torch.manual_seed(12)
    # mask_guiding_targets changes the loss itself (the dense decoder trains the task token)
    smoe = build(token_list, smoe=True, mask_guiding_targets=False).eval()
    b = mixed_batch(token_list)
    ref = outputs(dense, b)
    before = outputs(smoe, b)
    assert (before[1] - ref[1]).abs().max() > 1e-2  # random experts: the check can fail
    load_pretrained_model(str(path), smoe, ignore_init_mismatch=False)  # what --init_param does
    got = outputs(smoe, b)
    for name, r, g in zip(("loss", "encoder output", "decoder logits"), ref, got):
        diff = (r - g).abs().max().item()
        print(f"{name}: max abs diff {diff:.3g}")
        assert diff <= 1e-6, name
    state = torch.load(path)
    for name, p in smoe.named_parameters():
        if name.endswith((".w_1", ".b_1", ".w_2", ".b_2")):
            prefix, kind = name.rsplit(".", 1)
            dense_name = {"w_1": "w_1.weight", "b_1": "w_1.bias", "w_2": "w_2.weight", "b_2": "w_2.bias"}[kind]
            for e in range(p.size(0)):
                assert torch.equal(p[e], state[f"{prefix}.{dense_name}"]), (name, e)
        else:
            assert torch.equal(p, state[name]), name


def test_src_dst_keys_upcycle_only_the_selected_part(token_list, dense_file):
    dense, path = dense_file
    smoe = build(token_list, smoe=True)
    dec_before = smoe.decoder.decoders[0].feed_forward.w_1.detach().clone()
    load_pretrained_model(f"{path}:encoder:encoder", smoe, ignore_init_mismatch=False)
    enc_ffn = smoe.encoder.encoders[1].feed_forward_macaron
    for e in range(2):
        assert torch.equal(enc_ffn.w_1[e], dense.encoder.encoders[1].feed_forward_macaron.w_1.weight)
    assert torch.equal(smoe.decoder.decoders[0].feed_forward.w_1, dec_before)


def test_smoe_checkpoint_loads_unchanged(token_list):
    src = build(token_list, smoe=True)
    dst = build(token_list, smoe=True)
    dst.load_state_dict(src.state_dict(), strict=True)
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), name


def test_missing_or_misshaped_dense_ffn_is_named(token_list, dense_file, tmp_path):
    dense, _ = dense_file
    smoe = build(token_list, smoe=True)
    state = dense.state_dict()
    del state["decoder.decoders.1.feed_forward.w_2.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(UpcyclingError, match=r"decoder\.decoders\.1\.feed_forward\.w_2\.bias is missing"):
        load_pretrained_model(str(tmp_path / "missing.pth"), smoe, ignore_init_mismatch=False)
    # a dense model with other FFN sizes
    wide = build(token_list, smoe=False, linear_units=48)
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(UpcyclingError, match=r"encoder\.encoders\.0\.feed_forward\.w_1\.weight has shape "
                                             r"\(48, 16\), the experts need \(24, 16\)"):
        load_pretrained_model(str(tmp_path / "wide.pth"), smoe, ignore_init_mismatch=False)
    # a dense layer left out entirely would keep random experts next to copied ones
    state = dense.state_dict()
    for k in [k for k in state if k.startswith("encoder.encoders.1.feed_forward.")]:
        del state[k]
    with pytest.raises(UpcyclingError, match=r"encoder\.encoders\.1\.feed_forward\.w_1\.weight is missing"):
        smoe.load_state_dict(state, strict=False)


def test_ignore_init_mismatch_with_dense_ffns_is_refused(token_list, dense_file):
    dense, path = dense_file
    smoe = build(token_list, smoe=True)
    with pytest.raises(UpcyclingError, match=rf"--init_param {path} holds dense FFNs for S-MoE layers"):
        check_init_params(smoe, [str(path)], ignore_init_mismatch=True)
    check_init_params(smoe, [str(path)], ignore_init_mismatch=False)  # upcycled on load instead
    check_init_params(smoe, [f"{path}:ctc:ctc"], ignore_init_mismatch=True)  # no FFN selected
    check_init_params(dense, [str(path)], ignore_init_mismatch=True)  # no experts to fill
