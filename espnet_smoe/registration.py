"""Add the S-MoE classes to ESPnet's S2T registry (``espnet2.tasks.s2t``).

ESPnet has no plugin mechanism: ``S2TTask.build_model`` looks names up in the
module-level ``ClassChoices`` of ``espnet2/tasks/s2t.py``. We add ours to
their ``classes`` dicts. If ESPnet moves those objects, this fails at import
time with a message, rather than later with ``--encoder must be one of``.
"""

import espnet2.tasks.s2t as s2t_tasks
from espnet2.train.class_choices import ClassChoices

from espnet_smoe.baselines.gated_moe import GatedMoEConformerEncoder, GatedMoETransformerDecoder
from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.model import ESPnetSMoES2TModel
from espnet_smoe.preprocessor import SMoES2TPreprocessor

REGISTRY = {
    "encoder_choices": {
        "smoe_conformer": SMoEConformerEncoder,
        "gated_moe_conformer": GatedMoEConformerEncoder,  # learned-gate baseline
    },
    "decoder_choices": {
        "smoe_transformer": SMoETransformerDecoder,
        "gated_moe_transformer": GatedMoETransformerDecoder,
    },
    "model_choices": {"smoe": ESPnetSMoES2TModel},
    "preprocessor_choices": {"smoe_s2t": SMoES2TPreprocessor},
}


def register() -> None:
    """Register every S-MoE class; idempotent."""
    for attribute, classes in REGISTRY.items():
        choices = getattr(s2t_tasks, attribute, None)
        if not isinstance(choices, ClassChoices) or not isinstance(
            getattr(choices, "classes", None), dict
        ):
            raise ImportError(
                f"espnet_smoe: espnet2.tasks.s2t.{attribute} is not a ClassChoices "
                "with a 'classes' dict in this ESPnet; the plugin supports "
                "espnet==202611 (see setup.py)"
            )
        for name, cls in classes.items():
            base = choices.base_type
            if base is not None and not issubclass(cls, base):
                raise TypeError(f"{cls.__name__} is not a {base.__name__}")
            present = choices.classes.get(name)
            if present is not None and present is not cls:
                raise ImportError(
                    f"espnet_smoe: --{choices.name} {name} is already taken by "
                    f"{present.__module__}.{present.__name__}"
                )
            choices.classes[name] = cls
