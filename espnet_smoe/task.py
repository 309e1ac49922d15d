"""The S2T task with what S-MoE adds: the ``bandwidth`` data name and init."""

import argparse
from typing import Tuple

from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.tasks.s2t import S2TTask

from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.upcycling import check_init_params


class SMoES2TTask(S2TTask):
    """ESPnet's ``S2TTask``; the classes themselves come from the registry."""

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

