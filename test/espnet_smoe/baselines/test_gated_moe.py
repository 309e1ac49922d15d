import pytest
import torch

from espnet_smoe.baselines.gated_moe import (
    GatedMoEConformerEncoder,
    GatedMoEFeedForward,
    GatedMoETransformerDecoder,
    load_balancing_loss,
)


def test_load_balancing_loss_on_fixed_routing():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    expert = torch.tensor([0, 0, 1, 0])
    # f = (3/4, 1/4); P = (2.6/4, 1.4/4); E * sum f*P = 2 * (0.75*0.65 + 0.25*0.35)
    assert load_balancing_loss(probs, expert, 2).item() == pytest.approx(2 * (0.75 * 0.65 + 0.25 * 0.35))
    uniform = torch.full((6, 3), 1 / 3)
    assert load_balancing_loss(uniform, torch.tensor([0, 1, 2, 0, 1, 2]), 3).item() == pytest.approx(1.0)


def test_router_gets_gradients_and_output_is_gated_expert():
    block = GatedMoEFeedForward(8, 16, 2, 0.0)
    x = torch.randn(3, 5, 8)
    out = block(x)
    (out.sum() + block.aux_loss).backward()
    assert block.router.weight.grad.abs().sum() > 0
    flat = x.reshape(-1, 8)
    probs = torch.softmax(block.router(flat), -1)
    gate, expert = probs.max(-1)
    ref = block.experts(flat, expert) * gate[:, None]
    torch.testing.assert_close(out.reshape(-1, 8), ref)


def test_gated_encoder_and_decoder_replace_every_ffn():
    enc = GatedMoEConformerEncoder(20, num_experts=3, output_size=16, attention_heads=2, linear_units=24,
                                   num_blocks=2, macaron_style=True, cnn_module_kernel=3)
    assert sum(isinstance(m, GatedMoEFeedForward) for m in enc.modules()) == 4
    out, _, _ = enc(torch.randn(2, 30, 20), torch.tensor([30, 22]))
    assert out.shape[0] == 2
    dec = GatedMoETransformerDecoder(50, 16, num_experts=2, attention_heads=2, linear_units=24, num_blocks=2)
    assert sum(isinstance(m, GatedMoEFeedForward) for m in dec.modules()) == 2
