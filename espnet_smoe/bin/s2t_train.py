#!/usr/bin/env python3
"""ESPnet's S2T training with the S-MoE classes registered.

Takes every flag of ``espnet2.bin.s2t_train`` plus the ``bandwidth`` data
name, e.g. ``--train_data_path_and_name_and_type dump/train/utt2bw,bandwidth,text``.
"""

import espnet_smoe  # noqa: F401  (registers smoe_conformer, smoe_transformer, smoe, smoe_s2t)
from espnet_smoe.task import SMoES2TTask


def get_parser():
    return SMoES2TTask.get_parser()


def main(cmd=None):
    SMoES2TTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
