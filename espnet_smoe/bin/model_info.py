#!/usr/bin/env python3
"""Write a model's total and active parameter counts as JSON.

Active parameters are those one utterance uses: all of the dense model plus
one expert per S-MoE layer. The comparison table reports both.

    python -m espnet_smoe.bin.model_info --config exp/x/config.yaml --out exp/x/model_info.json
"""

import argparse
import json
from pathlib import Path

import torch

from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.task import SMoES2TTask


def count_parameters(model: torch.nn.Module) -> dict:
    """Total, active and expert parameter counts of a model."""
    total = sum(p.numel() for p in model.parameters())
    idle = 0  # parameters of the experts an utterance does not use
    expert_params = 0
    for module in model.modules():
        if isinstance(module, SMoEFeedForward):
            n = sum(p.numel() for p in module.parameters(recurse=False))
            expert_params += n
            idle += n - n // module.num_experts
    return {"total_params": total, "active_params": total - idle, "expert_params": expert_params}


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="training config.yaml")
    parser.add_argument("--out", type=Path, required=True, help="output JSON file")
    args = parser.parse_args(cmd)
    model, train_args = SMoES2TTask.build_model_from_file(args.config, None, "cpu")
    info = count_parameters(model)
    info.update(encoder=train_args.encoder, decoder=train_args.decoder, model=train_args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
