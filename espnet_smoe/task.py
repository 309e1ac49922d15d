"""The S2T task with what S-MoE adds: the ``bandwidth`` data name, init, host rows.

Also two things every GPU run gains from, whatever the model: a fused
optimizer where torch has one, and no GradScaler under bf16 autocast.
"""

import argparse
import inspect
from typing import Dict, List, Tuple

import espnet2.train.trainer as espnet_trainer
import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.tasks.abs_task import optim_classes
from espnet2.tasks.s2t import S2TTask
from espnet2.train.trainer import Trainer

from espnet_smoe.batch import HOST_ROWS, SMoECollateFn
from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.upcycling import check_init_params


class SMoETrainer(Trainer):
    """ESPnet's trainer, without a GradScaler when autocast runs in bf16.

    (And its attention plots get batches without the collate's host rows.)

    ESPnet's ``--use_amp`` autocasts to bf16 on GPUs that have it, and still
    scales the loss as for fp16. bf16 has float32's exponent range, so the
    scaling guards against nothing, and the scaler's overflow check reads a
    flag back from the GPU every step. A disabled GradScaler passes every call
    through (its state in checkpoints is empty, and it ignores a saved one).
    """

    @classmethod
    def run(cls, *args, **kwargs) -> None:
        if espnet_trainer.autocast_args.get("dtype") is not torch.bfloat16:
            return super().run(*args, **kwargs)
        scaler_class = espnet_trainer.GradScaler
        espnet_trainer.GradScaler = lambda *a, **k: scaler_class(*a, **{**k, "enabled": False})
        try:
            return super().run(*args, **kwargs)
        finally:
            espnet_trainer.GradScaler = scaler_class

    @classmethod
    def plot_attention(cls, model, output_dir, summary_writer, iterator, reporter, options) -> None:
        # ESPnet's attention plots cut every batch entry into rows: host rows are no tensor
        batches = ((ids, {k: v for k, v in batch.items() if k != HOST_ROWS}) for ids, batch in iterator)
        return super().plot_attention(model, output_dir, summary_writer, batches, reporter, options)


class SMoES2TTask(S2TTask):
    """ESPnet's ``S2TTask``; the classes themselves come from the registry."""

    trainer = SMoETrainer

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> SMoECollateFn:
        """ESPnet's S2T collate (token ids padded with -1: 0 is the CTC blank), plus host rows."""
        return SMoECollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        """ESPnet's optimizer; fused (one kernel for all parameters) where torch offers it."""
        optim_class = optim_classes.get(args.optim)
        conf = fused_optim_conf(optim_class, args.optim_conf, {p.device.type for p in model.parameters()})
        espnet_builds_it = getattr(args, "sharded_ddp", False) or getattr(args, "exclude_weight_decay", False)
        if conf is args.optim_conf or espnet_builds_it:
            return super().build_optimizers(args, model)
        return [optim_class(model.parameters(), **conf)]

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return tuple(super().optional_data_names(train, inference)) + ("bandwidth",)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        if (
            getattr(args, "use_preprocessor", False)
            and args.encoder == "smoe_conformer"
            and getattr(args, "preprocessor", None) != "smoe_s2t"
        ):
            raise ValueError(
                f"--encoder smoe_conformer needs --preprocessor smoe_s2t (got "
                f"{getattr(args, 'preprocessor', None)!r}): it turns utt2bw into "
                "the bandwidth token ids that route the encoder"
            )
        return super().build_preprocess_fn(args, train)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetS2TModel:
        model = super().build_model(args)
        if args.init is not None:
            # ESPnet's initialize() sees a 3-D expert stack as one matrix.
            for module in model.modules():
                if isinstance(module, SMoEFeedForward):
                    module.reset_parameters(args.init)
        # --init_param with a dense checkpoint upcycles on load (a pre-hook of
        # the S-MoE encoder/decoder), except under --ignore_init_mismatch.
        check_init_params(
            model, getattr(args, "init_param", None), getattr(args, "ignore_init_mismatch", False)
        )
        return model



def fused_optim_conf(optim_class, optim_conf: Dict, devices) -> Dict:
    """``optim_conf`` with ``fused: True`` when torch's ``optim_class`` has a fused step for
    parameters on ``devices`` (a set of device types) and the config does not say otherwise;
    else ``optim_conf`` itself."""
    if optim_class is None or "fused" in optim_conf or devices != {"cuda"}:
        return optim_conf
    if "fused" not in inspect.signature(optim_class).parameters:
        return optim_conf
    return {**optim_conf, "fused": True}
