#!/usr/bin/env python3
"""Export one route of an S-MoE model (a bandwidth and/or a task) as a dense model.

    # narrowband ASR only: a plain ESPnet S2T model, no plugin needed to decode it
    python -m espnet_smoe.bin.export_route --model exp/x/packed.zip --bandwidth nb --task asr --out nb_asr.zip
    python -m espnet2.bin.s2t_inference --model_tag nb_asr.zip --lang_sym eng --task_sym asr ...

    # narrowband, both tasks: dense encoder, task experts in the decoder (decode with espnet_smoe)
    python -m espnet_smoe.bin.export_route --config exp/x/config.yaml \\
        --model_file exp/x/valid.acc.ave.pth --bandwidth nb --out nb.zip

    # and the route's encoder and one decoder step as ONNX (needs onnx; check with onnxruntime)
    python -m espnet_smoe.bin.export_route --model packed.zip --bandwidth nb --task asr --out nb_asr.zip \
        --onnx_dir nb_asr_onnx

Prints a JSON summary (route, parameter counts, what changed in the config).
See ``espnet_smoe/export.py`` for what a plain export changes, and for
``pad_speech: false`` models, whose plain export ESPnet decodes padded.
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path

import espnet_smoe  # noqa: F401  (registers the classes the source config names)
from espnet_smoe.export import export_route


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_argument_group("source model (a packed zip, or config + model file)")
    source.add_argument("--model", "--model_tag", dest="model", type=Path, default=None,
                        help="zip made by 'python -m espnet2.bin.pack s2t' (run.sh stage 11)")
    source.add_argument("--config", "--s2t_train_config", dest="config", type=Path, default=None,
                        help="training config.yaml")
    source.add_argument("--model_file", "--s2t_model_file", dest="model_file", type=Path, default=None,
                        help="model .pth (with --config)")
    parser.add_argument("--bandwidth", default=None,
                        help="bandwidth token whose encoder experts to keep, e.g. nb or <nb>")
    parser.add_argument("--task", default=None,
                        help="task token whose decoder experts to keep, e.g. asr or <st_fra>")
    parser.add_argument("--out", type=Path, required=True, help="output zip")
    parser.add_argument("--onnx_dir", type=Path, default=None,
                        help="also write encoder.onnx and decoder_step.onnx of the route here "
                        "(plain routes only: give --bandwidth and --task)")
    return parser


def main(cmd=None):
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    if (args.model is None) == (args.config is None):
        parser.error("give --model packed.zip, or --config config.yaml with --model_file model.pth")
    if args.config is not None and args.model_file is None:
        parser.error("--config needs --model_file")
    if args.bandwidth is None and args.task is None:
        parser.error("give --bandwidth and/or --task: the route to keep")
    summary = export_route(
        args.out,
        model_zip=args.model,
        config=args.config,
        model_file=args.model_file,
        bandwidth=args.bandwidth,
        task=args.task,
    )
    if args.onnx_dir is not None:
        if not summary["plain_espnet"]:
            raise ValueError("--onnx_dir needs a plain route: give both --bandwidth and --task")
        from espnet2.main_funcs.pack_funcs import unpack
        from espnet2.tasks.s2t import S2TTask

        from espnet_smoe.onnx_export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            files = unpack(args.out, tmp)
            model, _ = S2TTask.build_model_from_file(files["s2t_train_config"], files["s2t_model_file"], "cpu")
            summary["onnx"] = {k: str(v) for k, v in export_onnx(model, args.onnx_dir).items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
