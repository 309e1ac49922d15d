"""Warm start S-MoE experts from a dense checkpoint (sparse upcycling).

A hard-sharing model and an S-MoE model of the same config differ only in
their FFNs: the dense one has ``<ffn>.w_1.weight (H, D)``, ``w_1.bias``,
``w_2.weight``, ``w_2.bias``; the S-MoE block has the same tensors stacked per
expert, ``<ffn>.w_1 (E, H, D)`` ... Upcycling copies each dense FFN into every
expert of that layer, so before any update the S-MoE model computes exactly
what the dense model computes, whatever the routing.

ESPnet's ``--init_param`` (``espnet2/torch_utils/load_pretrained_model.py``)
has no extension point: it reads the checkpoint, applies its
``<file>:<src_key>:<dst_key>:<excludes>`` selection, merges the result into
the model's own state dict and calls ``load_state_dict`` on the model (or on
the ``dst_key`` submodule). So the expansion is a ``load_state_dict``
pre-hook on every S-MoE encoder/decoder (installed by
:class:`~espnet_smoe.routing.GuidedExperts`): it sees the merged state dict,
finds dense FFN tensors where the module has experts, and replaces them by
``E`` copies. Every other tensor loads as ESPnet loads it, and the same
happens for ``build_model_from_file`` and for any user code that loads a
state dict. A state dict without dense FFN tensors (an S-MoE checkpoint,
``--resume``) passes through untouched.

Only ``--ignore_init_mismatch true`` cannot be caught here: ESPnet drops the
dense tensors (names the model does not have) before loading.
:func:`check_init_params` refuses that combination up front, when the task
builds the model.
"""

import logging
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, MutableMapping, Optional

import torch

from espnet_smoe.smoe_feed_forward import SMoEFeedForward, dense_to_smoe_state_dict

# The state-dict names of ESPnet's PositionwiseFeedForward (two nn.Linear).
DENSE_FFN_KEYS = ("w_1.weight", "w_1.bias", "w_2.weight", "w_2.bias")


class UpcyclingError(RuntimeError):
    """A dense checkpoint cannot fill the experts (missing or mis-shaped FFN)."""


def dense_ffn_shapes(block: SMoEFeedForward) -> Dict[str, tuple]:
    """Shapes of the dense FFN that one expert of ``block`` equals."""
    hidden, dim = block.hidden_units, block.idim
    return {
        "w_1.weight": (hidden, dim),
        "w_1.bias": (hidden,),
        "w_2.weight": (dim, hidden),
        "w_2.bias": (dim,),
    }


def smoe_blocks(module: torch.nn.Module, prefix: str = "") -> Dict[str, SMoEFeedForward]:
    """Every S-MoE block under ``module``, keyed by its state-dict prefix.

    Args:
        module: A model, encoder or decoder.
        prefix: Prefix of ``module`` in the state dict ("" or ending in ".").

    Returns:
        ``{"<prefix><name>.": block}``, in module order.
    """
    return {
        f"{prefix}{name}.": block
        for name, block in module.named_modules()
        if isinstance(block, SMoEFeedForward)
    }


def upcycle_state_dict_(
    state_dict: MutableMapping[str, torch.Tensor],
    blocks: Mapping[str, SMoEFeedForward],
) -> List[str]:
    """Replace, in place, the dense FFN tensors of these blocks by experts.

    If no block has a dense tensor in ``state_dict``, nothing changes. If one
    has, all of them must have all four with the expected shapes: a block
    that is left out would keep its random experts next to upcycled ones.

    A dense tensor wins over an expert tensor of the same block that is also
    present, because ESPnet merges the checkpoint into the model's own state
    dict (which holds the current, random experts) before loading.

    Args:
        state_dict: Tensors by full name; modified in place.
        blocks: Block prefix (ending in ".") -> block, see :func:`smoe_blocks`.

    Returns:
        The prefixes (without the final ".") that were upcycled.

    Raises:
        UpcyclingError: naming every missing or mis-shaped dense tensor.
    """
    if not any(p + k in state_dict for p in blocks for k in DENSE_FFN_KEYS):
        return []
    problems = []
    for prefix, block in blocks.items():
        for key, shape in dense_ffn_shapes(block).items():
            name = prefix + key
            if name not in state_dict:
                problems.append(f"{name} is missing")
            elif tuple(state_dict[name].shape) != shape:
                problems.append(
                    f"{name} has shape {tuple(state_dict[name].shape)}, the experts "
                    f"need {shape} (D={block.idim}, H={block.hidden_units})"
                )
    if problems:
        raise UpcyclingError(
            "cannot upcycle the dense checkpoint into S-MoE experts (each dense "
            "FFN is copied into every expert of its layer, so every S-MoE layer "
            "needs its dense FFN, of the same size): " + "; ".join(problems)
        )
    for prefix, block in blocks.items():
        dense = {key: state_dict.pop(prefix + key) for key in DENSE_FFN_KEYS}
        for name, value in dense_to_smoe_state_dict(dense, block.num_experts).items():
            state_dict[prefix + name] = value
    upcycled = [p[:-1] for p in blocks]
    logging.info(
        "S-MoE: upcycled %d dense FFNs, each copied into the %s experts of its layer: %s",
        len(upcycled),
        "/".join(str(n) for n in sorted({b.num_experts for b in blocks.values()})),
        ", ".join(upcycled),
    )
    return upcycled


def upcycling_pre_hook(
    module: torch.nn.Module,
    state_dict: MutableMapping[str, torch.Tensor],
    prefix: str,
    local_metadata,
    strict,
    missing_keys,
    unexpected_keys,
    error_msgs,
) -> None:
    """``load_state_dict`` pre-hook of an S-MoE encoder/decoder: upcycle.

    Runs before the module's children load, so the blocks find expert
    tensors where the checkpoint had dense ones.
    """
    upcycle_state_dict_(state_dict, smoe_blocks(module, prefix))


def _selected_keys(spec: str, keys: Iterable[str]) -> List[str]:
    """Model-side names ``--init_param <spec>`` loads, as ESPnet selects them.

    ``spec`` is ``<file>[:<src_key>[:<dst_key>[:<excludes>]]]``; see
    ``espnet2.torch_utils.load_pretrained_model.load_pretrained_model``.
    """
    parts = spec.split(":", 4) + [None] * 3
    _, src_key, dst_key, excludes = parts[:4]
    selected = []
    for key in keys:
        if excludes and any(key.startswith(e) for e in excludes.split(",")):
            continue
        if src_key:
            if not key.startswith(src_key):
                continue
            key = key[len(src_key) + 1 :]
        selected.append(f"{dst_key}.{key}" if dst_key else key)
    return selected


def check_init_params(
    model: torch.nn.Module, init_params: Optional[Iterable[str]], ignore_init_mismatch: bool
) -> None:
    """Refuse ``--ignore_init_mismatch true`` with a dense checkpoint for experts.

    ESPnet would drop the dense FFN tensors, whose names the S-MoE model does
    not have, with a warning, and the experts would stay random.

    Args:
        model: The freshly built model.
        init_params: ``args.init_param``.
        ignore_init_mismatch: ``args.ignore_init_mismatch``.

    Raises:
        UpcyclingError: naming the checkpoint and a dense FFN tensor of it.
    """
    if not init_params or not ignore_init_mismatch:
        return
    targets = {p + k for p in smoe_blocks(model) for k in DENSE_FFN_KEYS}
    if not targets:
        return
    for spec in init_params:
        path = spec.split(":", 1)[0]
        if not Path(path).is_file():
            continue  # ESPnet's own loading names the missing file
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if "module" in state:
            state = state["module"]
        hits = sorted(targets.intersection(_selected_keys(spec, state)))
        if hits:
            raise UpcyclingError(
                f"--init_param {spec} holds dense FFNs for S-MoE layers (e.g. {hits[0]}), "
                "but --ignore_init_mismatch true makes ESPnet drop them before loading, "
                "leaving those experts random. Run without --ignore_init_mismatch: the "
                "dense FFNs are then copied into every expert."
            )
