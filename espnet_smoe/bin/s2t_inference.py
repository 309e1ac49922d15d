#!/usr/bin/env python3
"""ESPnet's S2T decoding with the S-MoE classes and a bandwidth token.

Every ``espnet2.bin.s2t_inference`` flag, plus:

* ``--bandwidth_sym nb``: bandwidth token for all utterances (like
  ``--task_sym``), unless a per-utterance file is given as data:
  ``--data_path_and_name_and_type data/test/utt2bw,bandwidth,text``;
* ``--model_tag path/to/packed.zip`` decodes from an ``espnet2.bin.pack`` zip.
"""

import sys

import espnet2.bin.s2t_inference as espnet_inference
from espnet2.legacy.utils.cli_utils import get_commandline_args

from espnet_smoe.inference import SMoESpeech2Text


def get_parser():
    parser = espnet_inference.get_parser()
    parser.description = "S2T decoding with S-MoE (espnet_smoe)"
    parser.add_argument(
        "--bandwidth_sym",
        type=str,
        default=None,
        help="Bandwidth guiding token for every utterance, e.g. nb or wb "
        "(no angle brackets needed). A 'bandwidth' data file overrides it.",
    )
    return parser


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    bandwidth_sym = kwargs.pop("bandwidth_sym")
    if any(name == "bandwidth" for _, name, _ in kwargs["data_path_and_name_and_type"]):
        # ESPnet's inference() checks data names against S2TTask, which does
        # not know 'bandwidth'; our preprocessor consumes it.
        kwargs["allow_variable_data_keys"] = True

    class ConfiguredSpeech2Text(SMoESpeech2Text):
        default_bandwidth_sym = bandwidth_sym

    # ESPnet's inference() builds its decoder through this module-level name;
    # point it at ours for the duration of the call, then restore it.
    if not hasattr(espnet_inference, "Speech2Text"):
        raise ImportError("espnet2.bin.s2t_inference.Speech2Text moved: espnet==202611 expected")
    original = espnet_inference.Speech2Text
    espnet_inference.Speech2Text = ConfiguredSpeech2Text
    try:
        espnet_inference.inference(**kwargs)
    finally:
        espnet_inference.Speech2Text = original


if __name__ == "__main__":
    main()
