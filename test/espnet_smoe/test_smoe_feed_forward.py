import pytest
import torch
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

from espnet_smoe.smoe_feed_forward import SMoEFeedForward, dense_to_smoe_state_dict


def reference(block: SMoEFeedForward, x: torch.Tensor, expert: torch.Tensor):
    """Per-row loop over plain matmuls: the definition of the block."""
    rows = []
    for b in range(x.size(0)):
        e = int(expert[b])
        h = block.activation(x[b] @ block.w_1[e].T + block.b_1[e])
        rows.append(h @ block.w_2[e].T + block.b_2[e])
    return torch.stack(rows)


@pytest.mark.parametrize("num_experts", [1, 2, 3])
def test_matches_reference_outputs_and_gradients(num_experts):
    block = SMoEFeedForward(8, 16, num_experts, dropout_rate=0.0, activation=torch.nn.SiLU())
    x = torch.randn(7, 5, 8, requires_grad=True)
    expert = torch.randint(0, num_experts, (7,))
    # padded batch: padded frames are zeros, they must go through unchanged logic
    with torch.no_grad():
        x[3, 2:] = 0.0
    out = block(x, expert)
    ref = reference(block, x, expert)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)

    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, block.w_1, block.b_2], grad_out)
    ref_grads = torch.autograd.grad(ref, [x, block.w_1, block.b_2], grad_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)


def test_rows_of_expert_zero_give_expert_one_no_gradient():
    block = SMoEFeedForward(4, 6, 2, dropout_rate=0.0)
    out = block(torch.randn(3, 2, 4), torch.zeros(3, dtype=torch.long))
    out.sum().backward()
    assert block.w_1.grad[0].abs().sum() > 0
    assert torch.count_nonzero(block.w_1.grad[1]) == 0
    assert torch.count_nonzero(block.b_2.grad[1]) == 0


def test_mixed_batch_keeps_row_order():
    block = SMoEFeedForward(4, 6, 2, dropout_rate=0.0)
    x = torch.randn(5, 3, 4)
    expert = torch.tensor([1, 0, 1, 1, 0])
    out = block(x, expert)
    for b in range(5):
        alone = block(x[b : b + 1], expert[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], alone)


def test_from_dense_equals_dense_layer():
    dense = PositionwiseFeedForward(8, 12, 0.0, torch.nn.ReLU())
    block = SMoEFeedForward.from_dense(dense, 3)
    x = torch.randn(4, 6, 8)
    for e in range(3):
        torch.testing.assert_close(block(x, torch.full((4,), e)), dense(x))
    assert set(dense_to_smoe_state_dict(dense.state_dict(), 3)) == {"w_1", "b_1", "w_2", "b_2"}


def test_routing_errors():
    block = SMoEFeedForward(4, 6, 2, dropout_rate=0.0)
    with pytest.raises(RuntimeError, match="got no routing"):
        block(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"expert must be \(Batch,\)"):
        block(torch.randn(2, 3, 4), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="out of range"):
        block(torch.randn(2, 3, 4), torch.tensor([0, 2]))


@pytest.mark.parametrize("init", ["xavier_uniform", "normal"])
def test_init_per_expert_slice(init):
    block = SMoEFeedForward(64, 256, 2, dropout_rate=0.0)
    block.reset_parameters(init)
    assert torch.count_nonzero(block.b_1) == 0
    if init == "xavier_uniform":
        bound = (6.0 / (64 + 256)) ** 0.5  # fan of one expert, not of the stack
        assert block.w_1.abs().max() <= bound
        assert block.w_1.abs().max() > 0.9 * bound
    else:
        assert abs(block.w_1.std().item() - 0.02) < 0.002
    # experts are initialised independently
    assert not torch.equal(block.w_1[0], block.w_1[1])
