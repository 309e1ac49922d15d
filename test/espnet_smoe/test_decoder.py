import pytest
import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.legacy.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.routing import RoutingError
from espnet_smoe.smoe_feed_forward import SMoEFeedForward

CONF = dict(attention_heads=2, linear_units=24, num_blocks=2, dropout_rate=0.0,
            positional_dropout_rate=0.0, self_attention_dropout_rate=0.0,
            src_attention_dropout_rate=0.0)


@pytest.fixture
def decoder(token_list):
    dec = SMoETransformerDecoder(len(token_list), 16, **CONF).eval()
    dec.resolve_tokens(token_list)
    return dec


def prompt(token_list, task, words):
    t = token_list.index
    return [t("<sos>"), t("<eng>"), t(task), t("<notimestamps>")] + [t(w) for w in words]


def test_equal_experts_match_espnet_transformer_decoder(token_list, expand_dense_into):
    dense = TransformerDecoder(len(token_list), 16, **CONF).eval()
    smoe = SMoETransformerDecoder(len(token_list), 16, **CONF).eval()
    expand_dense_into(smoe, dense)
    smoe.resolve_tokens(token_list)
    ys = torch.tensor([prompt(token_list, "<asr>", ["w1", "w2"]), prompt(token_list, "<st_fra>", ["w3", "w4"])])
    hs = torch.randn(2, 9, 16)
    hlens = torch.tensor([9, 6])
    ref, _ = dense(hs, hlens, ys, torch.tensor([6, 6]))
    out, _ = smoe(hs, hlens, ys, torch.tensor([6, 6]))
    assert (out - ref).abs().max() <= 1e-5
    ref1, _ = dense.forward_one_step(ys, subsequent_mask(6).unsqueeze(0), hs)
    out1, _ = smoe.forward_one_step(ys, subsequent_mask(6).unsqueeze(0), hs)
    assert (out1 - ref1).abs().max() <= 1e-5


def test_asr_and_st_rows_use_different_experts(decoder, token_list):
    ys = torch.tensor([prompt(token_list, "<asr>", ["w1"]), prompt(token_list, "<st_fra>", ["w1"])])
    assert decoder.experts_for_prefix(ys) == [0, 1]
    assert decoder.experts_for_prefix(ys.tolist()) == [0, 1]  # host rows route alike
    # the routed expert is visible in every block after a forward
    hs = torch.randn(2, 7, 16)
    out, _ = decoder(hs, torch.tensor([7, 7]), ys, torch.tensor([5, 5]))
    for block in decoder.smoe_blocks():
        assert block.routed_expert.expert.tolist() == [0, 1]
        assert block.routed_expert.counts == (1, 1)
    # routing given by the caller (as the model does from the host) gives the same output
    given, _ = decoder(hs, torch.tensor([7, 7]), ys, torch.tensor([5, 5]), expert=[0, 1])
    torch.testing.assert_close(given, out, rtol=0, atol=0)
    # same input but the task token: the outputs after the prompt differ
    out, _ = decoder(hs[:1].repeat(2, 1, 1), torch.tensor([7, 7]), ys, torch.tensor([5, 5]))
    assert (out[0, 3:] - out[1, 3:]).abs().max() > 1e-4


def test_prefix_with_previous_text_routes_by_task(decoder, token_list):
    t = token_list.index
    ys = torch.tensor([[t("<sop>"), t("w5"), t("w6")] + prompt(token_list, "<st_fra>", ["w1"])])
    assert decoder.experts_for_prefix(ys) == [1]
    assert decoder.experts_for_prefix(ys.tolist()) == [1]


def test_batch_score_on_mixed_batch_equals_score_row_by_row(decoder, token_list):
    ys = torch.tensor([
        prompt(token_list, "<asr>", ["w1", "w2"]),
        prompt(token_list, "<st_fra>", ["w3", "w4"]),
        prompt(token_list, "<st_fra>", ["w5", "w5"]),
        prompt(token_list, "<asr>", ["w7", "w8"]),
    ])
    xs = torch.randn(4, 11, 16)
    batch_logp, batch_states = decoder.batch_score(ys, [None] * 4, xs)
    for b in range(4):
        logp, state = decoder.score(ys[b], None, xs[b])
        torch.testing.assert_close(batch_logp[b], logp, atol=1e-5, rtol=1e-5)
    # a second step with cached states, hypotheses of both tasks in one batch
    next_tokens = batch_logp.argmax(-1, keepdim=True)
    ys2 = torch.cat([ys, next_tokens], dim=1)
    batch_logp2, _ = decoder.batch_score(ys2, batch_states, xs)
    for b in range(4):
        _, state = decoder.score(ys[b], None, xs[b])
        logp2, _ = decoder.score(ys2[b], state, xs[b])
        torch.testing.assert_close(batch_logp2[b], logp2, atol=1e-5, rtol=1e-5)


def test_row_without_guiding_token_is_named(decoder, token_list):
    t = token_list.index
    ys = torch.tensor([prompt(token_list, "<asr>", ["w1"]), [t("<sos>"), t("<eng>"), t("w1"), t("w2"), t("w3")]])
    for given in (ys, ys.tolist()):
        with pytest.raises(RoutingError, match=r"decoder rows \[1\].*'<sos>', '<eng>', 'w1'") as err:
            decoder.experts_for_prefix(given)
        assert err.value.rows == [1]


def test_unresolved_decoder_says_so(token_list):
    dec = SMoETransformerDecoder(len(token_list), 16, **CONF)
    with pytest.raises(RuntimeError, match="resolve_tokens"):
        dec.experts_for_prefix(torch.zeros(1, 3, dtype=torch.long))
    assert all(isinstance(layer.feed_forward, SMoEFeedForward) for layer in dec.decoders)
