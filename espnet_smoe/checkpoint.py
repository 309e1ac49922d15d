"""Check that a checkpoint really filled every expert.

ESPnet's ``build_model_from_file`` and ``--init_param`` load state dicts with
``strict=False``: a renamed or missing expert parameter is silently left at
its random init. This names what is missing or mis-shaped instead.
"""

from pathlib import Path
from typing import Dict, List, Union

import torch

from espnet_smoe.smoe_feed_forward import SMoEFeedForward


def smoe_parameter_shapes(model: torch.nn.Module) -> Dict[str, torch.Size]:
    """State-dict names and shapes of every S-MoE expert parameter."""
    shapes = {}
    for prefix, module in model.named_modules():
        if isinstance(module, SMoEFeedForward):
            for name, param in module.named_parameters(recurse=False):
                shapes[f"{prefix}.{name}"] = param.shape
    return shapes


def verify_smoe_state_dict(
    model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str
) -> None:
    """Raise if ``state_dict`` lacks an expert parameter of ``model``.

    Args:
        model: The model the state dict was (or will be) loaded into.
        state_dict: The checkpoint's tensors.
        source: Where the checkpoint came from, for the message.
    """
    missing: List[str] = []
    mismatched: List[str] = []
    for name, shape in smoe_parameter_shapes(model).items():
        if name not in state_dict:
            missing.append(name)
        elif state_dict[name].shape != shape:
            mismatched.append(
                f"{name}: checkpoint {tuple(state_dict[name].shape)} vs model {tuple(shape)}"
            )
    if missing or mismatched:
        dense_hint = ""
        if any(f"{n.rsplit('.', 1)[0]}.w_1.weight" in state_dict for n in missing):
            dense_hint = (
                " The checkpoint has dense FFNs there: expand it with "
                "espnet_smoe.smoe_feed_forward.dense_to_smoe_state_dict."
            )
        raise RuntimeError(
            f"{source}: {len(missing)} S-MoE parameters missing "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"{len(mismatched)} with another shape {mismatched[:4]}.{dense_hint}"
        )


def verify_smoe_checkpoint(model: torch.nn.Module, model_file: Union[str, Path]) -> None:
    """Load ``model_file`` on CPU and run :func:`verify_smoe_state_dict`."""
    state_dict = torch.load(model_file, map_location="cpu", weights_only=True)
    verify_smoe_state_dict(model, state_dict, str(model_file))
