import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.smoe_feed_forward import SMoEFeedForward

CONF = dict(
    output_size=16,
    attention_heads=2,
    linear_units=24,
    num_blocks=3,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    attention_dropout_rate=0.0,
    input_layer="conv2d",
    macaron_style=True,
    use_cnn_module=True,
    cnn_module_kernel=3,
)


def test_equal_experts_match_espnet_conformer(expand_dense_into):
    dense = ConformerEncoder(input_size=20, **CONF).eval()
    smoe = SMoEConformerEncoder(input_size=20, routing={"<nb>": 0, "<wb>": 1}, **CONF).eval()
    expand_dense_into(smoe, dense)
    x = torch.randn(4, 50, 20)
    ilens = torch.tensor([50, 41, 30, 50])
    ref, ref_lens, _ = dense(x, ilens)
    for expert in ([0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]):
        out, lens, _ = smoe(x, ilens, expert=torch.tensor(expert))
        assert torch.equal(lens, ref_lens)
        assert (out - ref).abs().max() <= 1e-5


def test_both_macaron_halves_are_experts_and_routing_changes_output():
    smoe = SMoEConformerEncoder(input_size=20, **CONF).eval()
    blocks = [n for n, m in smoe.named_modules() if isinstance(m, SMoEFeedForward)]
    assert len(blocks) == 2 * CONF["num_blocks"]
    assert any(n.endswith("feed_forward_macaron") for n in blocks)
    x, ilens = torch.randn(2, 40, 20), torch.tensor([40, 40])
    out0, _, _ = smoe(x, ilens, expert=torch.tensor([0, 0]))
    out1, _, _ = smoe(x, ilens, expert=torch.tensor([1, 1]))
    assert (out0 - out1).abs().max() > 1e-3


def test_smoe_layers_selects_blocks():
    smoe = SMoEConformerEncoder(input_size=20, smoe_layers=[2], **CONF)
    kinds = [type(layer.feed_forward).__name__ for layer in smoe.encoders]
    assert kinds == ["PositionwiseFeedForward", "SMoEFeedForward", "PositionwiseFeedForward"]
    with pytest.raises(ValueError, match="out of range 1..3"):
        SMoEConformerEncoder(input_size=20, smoe_layers=[4], **CONF)


def test_shared_experts_and_bad_tables(token_list):
    enc = SMoEConformerEncoder(input_size=20, routing={"<nb>": 0, "<wb>": 0}, num_experts=1, **CONF)
    enc.resolve_tokens(token_list)
    ids = torch.tensor([token_list.index("<nb>"), token_list.index("<wb>")])
    assert enc.experts_for_tokens(ids) == [0, 0]
    assert enc.experts_for_tokens(ids.tolist()) == [0, 0]  # host ints, as the data loader has them
    with pytest.raises(ValueError, match="uses expert 2 but num_experts=2"):
        SMoEConformerEncoder(input_size=20, routing={"<nb>": 2}, num_experts=2, **CONF)
    enc2 = SMoEConformerEncoder(input_size=20, routing={"<nb>": 0, "<tel>": 1}, **CONF)
    with pytest.raises(ValueError, match=r"\['<tel>'\] are not in the token list"):
        enc2.resolve_tokens(token_list)
    with pytest.raises(ValueError, match="replace only linear position-wise FFNs"):
        SMoEConformerEncoder(input_size=20, positionwise_layer_type="conv1d", **CONF)
