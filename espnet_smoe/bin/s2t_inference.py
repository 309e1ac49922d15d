#!/usr/bin/env python3
"""ESPnet's S2T decoding with the S-MoE classes and a bandwidth token.

Every ``espnet2.bin.s2t_inference`` flag, plus:

* ``--bandwidth_sym nb``: bandwidth token for all utterances (like
  ``--task_sym``), unless a per-utterance file is given as data:
  ``--data_path_and_name_and_type data/test/utt2bw,bandwidth,text``;
  ``--bandwidth_sym auto`` detects it from each utterance's audio
  (``--bandwidth_fallback`` for silent or clipped audio);
* ``--model_tag path/to/packed.zip`` decodes from an ``espnet2.bin.pack`` zip;
* ``--task_sym asr st_fra``: several tasks in one process (the model and
  ESPnet are loaded once), each written to ``<output_dir>/<task>/``; with one
  task the output goes to ``<output_dir>`` as in ESPnet;
* ``--no_repeat_ngram_size 4``: a hypothesis never holds the same 4 tokens
  twice (``espnet_smoe.no_repeat_ngram``; 0, the default: no limit);
* ``--ctc_tasks asr``: the tasks whose output the CTC branch was trained on
  (``text_ctc``, the source transcript). Other tasks decode with
  ``ctc_weight 0``: CTC would push a translation towards the transcript.
"""

import logging
import sys
from pathlib import Path

import espnet2.bin.s2t_inference as espnet_inference
from espnet2.legacy.utils.cli_utils import get_commandline_args

from espnet_smoe.bin import reset_root_logging
from espnet_smoe.inference import SMoESpeech2Text


def get_parser():
    parser = espnet_inference.get_parser()
    parser.description = "S2T decoding with S-MoE (espnet_smoe)"
    # "resolve": --task_sym below replaces ESPnet's (same name and default, a list)
    group = parser.add_argument_group("S-MoE", conflict_handler="resolve")
    group.add_argument(
        "--bandwidth_sym",
        type=str,
        default=None,
        help="Bandwidth guiding token for every utterance, e.g. nb or wb "
        "(no angle brackets needed), or 'auto': detect it from each utterance's "
        "audio. A 'bandwidth' data file overrides it.",
    )
    group.add_argument(
        "--bandwidth_fallback",
        type=str,
        default="wb",
        choices=["nb", "wb"],
        help="With --bandwidth_sym auto: the token for silent or clipped audio",
    )
    group.add_argument(
        "--no_repeat_ngram_size",
        type=int,
        default=0,
        help="n > 0: forbid any n tokens to appear twice in a hypothesis "
        "(stops decoding loops); 0: no limit",
    )
    group.add_argument(
        "--task_sym",
        type=str,
        nargs="+",
        default=["<asr>"],
        help="Task token(s), e.g. asr st_fra; several are decoded one after "
        "the other in this process, into <output_dir>/<task>/",
    )
    group.add_argument(
        "--ctc_tasks",
        type=str,
        nargs="*",
        default=["asr"],
        help="Tasks whose target is the CTC branch's (the source transcript); "
        "the others decode with ctc_weight 0",
    )
    return parser


def task_runs(output_dir: str, tasks, ctc_tasks, ctc_weight: float):
    """(task, output dir, ctc weight) for each task to decode."""
    tasks = [t.strip("<>") for t in tasks]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"--task_sym names a task twice: {tasks}")
    ctc = {t.strip("<>") for t in ctc_tasks}
    return [
        (task, output_dir if len(tasks) == 1 else str(Path(output_dir) / task), ctc_weight if task in ctc else 0.0)
        for task in tasks
    ]


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    bandwidth_sym = kwargs.pop("bandwidth_sym")
    bandwidth_fallback = kwargs.pop("bandwidth_fallback")
    no_repeat_ngram_size = kwargs.pop("no_repeat_ngram_size")  # checked by SMoESpeech2Text
    runs = task_runs(kwargs["output_dir"], kwargs.pop("task_sym"), kwargs.pop("ctc_tasks"), kwargs["ctc_weight"])
    if any(name == "bandwidth" for _, name, _ in kwargs["data_path_and_name_and_type"]):
        # ESPnet's inference() checks data names against S2TTask, which does
        # not know 'bandwidth'; our preprocessor consumes it.
        kwargs["allow_variable_data_keys"] = True

    class ConfiguredSpeech2Text(SMoESpeech2Text):
        default_bandwidth_sym = bandwidth_sym
        default_bandwidth_fallback = bandwidth_fallback
        default_no_repeat_ngram_size = no_repeat_ngram_size

    # ESPnet's inference() builds its decoder through this module-level name;
    # point it at ours for the duration of the call, then restore it.
    if not hasattr(espnet_inference, "Speech2Text"):
        raise ImportError("espnet2.bin.s2t_inference.Speech2Text moved: espnet==202611 expected")
    original = espnet_inference.Speech2Text
    espnet_inference.Speech2Text = ConfiguredSpeech2Text
    try:
        for task, output_dir, ctc_weight in runs:
            if ctc_weight != kwargs["ctc_weight"]:
                logging.warning("task %s: ctc_weight %s -> 0 (not in --ctc_tasks)", task, kwargs["ctc_weight"])
            reset_root_logging()  # so that inference()'s basicConfig(level=--log_level) applies
            espnet_inference.inference(
                **{**kwargs, "task_sym": task, "output_dir": output_dir, "ctc_weight": ctc_weight}
            )
    finally:
        espnet_inference.Speech2Text = original


if __name__ == "__main__":
    main()
