"""Supervised Mixture of Experts (S-MoE) speech-to-text for ESPnet2.

Importing this package registers, in ESPnet's S2T task:

* ``--encoder smoe_conformer``   (:class:`SMoEConformerEncoder`)
* ``--decoder smoe_transformer`` (:class:`SMoETransformerDecoder`)
* ``--model smoe``               (:class:`ESPnetSMoES2TModel`)
* ``--preprocessor smoe_s2t``    (:class:`SMoES2TPreprocessor`)

Train and decode through ``python -m espnet_smoe.bin.s2t_train`` and
``python -m espnet_smoe.bin.s2t_inference``, which take every ESPnet flag.
"""

from espnet_smoe.decoder import SMoETransformerDecoder
from espnet_smoe.encoder import SMoEConformerEncoder
from espnet_smoe.model import ESPnetSMoES2TModel
from espnet_smoe.preprocessor import SMoES2TPreprocessor
from espnet_smoe.registration import register
from espnet_smoe.smoe_feed_forward import SMoEFeedForward

register()

__version__ = "0.1.0"
__all__ = [
    "SMoEFeedForward",
    "SMoEConformerEncoder",
    "SMoETransformerDecoder",
    "ESPnetSMoES2TModel",
    "SMoES2TPreprocessor",
    "register",
]
