"""Expert blocks and whole training steps under autocast (ESPnet's ``use_amp``).

CPU bf16 autocast stands in for the GPU's: it casts the same ops (linear,
matmul) to low precision, so a dtype mismatch between an expert's output and
the tensor it is written into shows up here as it would on a GPU.
"""

import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_smoe.baselines.gated_moe import GatedMoEConformerEncoder, GatedMoEFeedForward, GatedMoETransformerDecoder
from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.model import ESPnetSMoES2TModel
from espnet_smoe.smoe_feed_forward import SMoEFeedForward

ENC = dict(output_size=16, attention_heads=2, linear_units=24, num_blocks=1, input_layer="conv2d",
           macaron_style=True, cnn_module_kernel=3, dropout_rate=0.0)
DEC = dict(attention_heads=2, linear_units=24, num_blocks=1, dropout_rate=0.0)
ENCODERS = {"dense": ConformerEncoder, "smoe": SMoEConformerEncoder, "gated": GatedMoEConformerEncoder}
DECODERS = {"dense": TransformerDecoder, "smoe": SMoETransformerDecoder, "gated": GatedMoETransformerDecoder}
VARIANTS = {  # the table's variants: (encoder, decoder); dense_wide is "dense" with other sizes
    "hard_sharing": ("dense", "dense"),
    "smoe_enc": ("smoe", "dense"),
    "smoe_dec": ("dense", "smoe"),
    "smoe_encdec": ("smoe", "smoe"),
    "gated_moe": ("gated", "gated"),
}


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_smoe_block_on_a_mixed_batch_matches_per_expert_reference():
    torch.manual_seed(0)
    block = SMoEFeedForward(8, 16, 2, 0.0)
    x = torch.randn(4, 5, 8)
    expert = torch.tensor([1, 0, 1, 0])
    with bf16():
        out = block(x, expert)
        ref = torch.stack([block(x[i : i + 1], expert[i : i + 1])[0] for i in range(4)])
    assert out.dtype == torch.bfloat16, out.dtype
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref)  # each row went through its own expert
    out.float().sum().backward()
    assert block.w_1.grad[0].abs().sum() > 0 and block.w_1.grad[1].abs().sum() > 0


def test_gated_block_under_autocast_and_aux_loss_is_fresh():
    torch.manual_seed(0)
    block = GatedMoEFeedForward(8, 16, 2, 0.0)
    with bf16():
        out = block(torch.randn(3, 5, 8))
    assert out.shape == (3, 5, 8) and torch.isfinite(out.float()).all()
    first = block.aux_loss
    assert first is not None and torch.isfinite(first)
    with bf16():
        block(torch.randn(2, 4, 8) * 3)
    assert block.aux_loss is not first  # recomputed, not left over


def build(token_list, encoder, decoder):
    v = len(token_list)
    return ESPnetSMoES2TModel(
        vocab_size=v, token_list=token_list, frontend=None, specaug=None, normalize=None, preencoder=None,
        encoder=ENCODERS[encoder](20, **ENC), postencoder=None, decoder=DECODERS[decoder](v, 16, **DEC),
        ctc=CTC(v, 16), ctc_weight=0.3,
    )


def mixed_batch(token_list):
    """Four rows: every task x bandwidth pair, so every expert gets rows."""
    t = token_list.index
    rows = [("<asr>", "<nb>"), ("<st_fra>", "<wb>"), ("<st_fra>", "<nb>"), ("<asr>", "<wb>")]
    n = len(rows)
    text = torch.tensor([[t("<eng>"), t(task), t("<notimestamps>"), t("w1"), t("w2")] for task, _ in rows])
    return dict(
        speech=torch.randn(n, 40, 20), speech_lengths=torch.tensor([40, 36, 40, 30]),
        text=text, text_lengths=torch.full((n,), 5),
        text_prev=torch.full((n, 1), t("<na>")), text_prev_lengths=torch.ones(n, dtype=torch.long),
        text_ctc=torch.tensor([[t("w1"), t("w2")]] * n), text_ctc_lengths=torch.full((n,), 2),
        bandwidth=torch.tensor([[t(bw)] for _, bw in rows]), bandwidth_lengths=torch.ones(n, dtype=torch.long),
        utt_id=[f"utt{i}" for i in range(n)],
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_training_step_under_bf16_autocast(token_list, variant):
    """A step as ESPnet's trainer does it with use_amp: forward in autocast, backward, update."""
    torch.manual_seed(0)
    model = build(token_list, *VARIANTS[variant])
    batch = mixed_batch(token_list)
    with torch.no_grad():
        loss_fp32 = model(**batch)[0]
    with bf16():
        loss, stats, weight = model(**batch)
    assert torch.isfinite(loss), (variant, loss)
    # bf16 keeps ~3 significant digits: the loss is the fp32 one, not garbage
    assert loss.item() == pytest.approx(loss_fp32.item(), rel=0.05), (variant, loss.item(), loss_fp32.item())
    assert ("loss_moe_aux" in stats) == (variant == "gated_moe")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), variant
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    ffn = "encoders.0.feed_forward"
    for part in ("encoder", "decoder"):
        name = next(n for n in before if n.startswith(f"{part}.") and ("feed_forward" in n or ffn in n))
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), (variant, name)
