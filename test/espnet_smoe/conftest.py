"""Tiny S2T token list shared by the plugin's unit tests."""

import pytest
import torch

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
