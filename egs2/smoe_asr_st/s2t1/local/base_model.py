#!/usr/bin/env python3
"""The shipped base model that ``run.sh`` warm-starts from (``--init base``).

A base model is an ESPnet packed archive (``espnet2.bin.pack s2t``: config, model,
sentencepiece model, feature statistics) made by this recipe, with a description
beside it, ``<archive without .zip>.json``: its SHA-256, the command and code that made
it, the data it saw and its scores. Two commands:

    # run.sh stage 5: check the archive against its description and unpack it
    python -m local.base_model unpack --archive pretrained/base.zip --out_dir exp/pretrained/base

    # after training a base: write the description (refuses training data that holds
    # an evaluation sentence)
    python -m local.base_model describe --archive pretrained/base.zip --exp_dir exp/base \\
        --train_data data/train_mix_sp --eval_data data/dev data/test_nb data/test_wb \\
        --command "./run.sh ..." --corpus "..."

``unpack`` writes into ``out_dir``: ``config.yaml`` (the training config, paths pointing
into ``out_dir``), ``model.pth`` (for ``--init_param``), ``bpe.model`` and ``tokens.txt``
(the token list of the config, one per line, as ``make_tokens`` writes it: the
fine-tuned model must keep the base's vocabulary) and ``feats_stats.npz`` (its
normalisation: the features the base learned on). A second call with the same
archive does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from espnet2.main_funcs.pack_funcs import unpack as espnet_unpack

from local.combine_data import sentence_keys
from local.log import setup_logging


class BaseModelError(RuntimeError):
    """The archive or its description is not what run.sh can start from."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def description_path(archive: Path) -> Path:
    """``pretrained/base.zip`` -> ``pretrained/base.json``."""
    return archive.with_suffix(".json")


def unpack(archive: Path, out_dir: Path) -> dict[str, Path]:
    """Check ``archive`` against its description and unpack it; returns the files (module docstring)."""
    archive, out_dir = Path(archive), Path(out_dir)
    desc_file = description_path(archive)
    if not archive.is_file():
        raise BaseModelError(f"{archive}: base model not found; expected an ESPnet packed archive "
                             "(run.sh --base_model), or --init scratch to train from random weights")
    if not desc_file.is_file():
        raise BaseModelError(f"{desc_file}: missing; expected the description of {archive} "
                             "(python -m local.base_model describe writes it)")
    expected = json.loads(desc_file.read_text(encoding="utf-8"))["sha256"]
    found = sha256(archive)
    if found != expected:
        raise BaseModelError(f"{archive}: SHA-256 {found}, expected {expected} (from {desc_file}): "
                             "the file is damaged or not the one described (git checkout it again)")
    files = {"config": out_dir / "config.yaml", "model": out_dir / "model.pth", "bpe_model": out_dir / "bpe.model",
             "tokens": out_dir / "tokens.txt", "stats": out_dir / "feats_stats.npz"}
    done = out_dir / "unpacked.sha256"
    if done.is_file() and done.read_text().strip() == found and all(p.is_file() for p in files.values()):
        logging.info("%s: already unpacked in %s", archive, out_dir)
        return files

    work = out_dir / "archive"
    shutil.rmtree(work, ignore_errors=True)
    members = espnet_unpack(archive, work, use_cache=False)  # rewrites the config's paths into work/
    for key in ("s2t_train_config", "s2t_model_file"):
        if key not in members:
            raise BaseModelError(f"{archive}: meta.yaml has no {key}; expected an S2T archive (espnet2.bin.pack s2t)")
    config = yaml.safe_load(Path(members["s2t_train_config"]).read_text(encoding="utf-8"))
    try:
        tokens, bpe_model = config["token_list"], Path(config["bpemodel"])
        stats = Path(config["normalize_conf"]["stats_file"])
    except (KeyError, TypeError) as e:
        raise BaseModelError(f"{archive}: its config.yaml lacks {e}; expected token_list, bpemodel and "
                             "normalize_conf.stats_file (a config written by S2T training)") from e
    for path, what in ((bpe_model, "bpemodel"), (stats, "normalize_conf.stats_file")):
        if not path.is_file():
            raise BaseModelError(f"{archive}: {what} {path.relative_to(work)} is not in the archive; "
                                 "pack it with --option")
    shutil.copyfile(members["s2t_model_file"], files["model"])
    shutil.copyfile(bpe_model, files["bpe_model"])
    shutil.copyfile(stats, files["stats"])
    files["tokens"].write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    config["bpemodel"], config["normalize_conf"]["stats_file"] = str(files["bpe_model"]), str(files["stats"])
    files["config"].write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    shutil.rmtree(work)
    done.write_text(found + "\n")
    logging.info("%s: unpacked into %s (%d tokens)", archive, out_dir, len(tokens))
    return files


def check_no_eval_sentence(train_data: Path, eval_data: list[Path]) -> tuple[int, int]:
    """Raise naming the sentences an evaluation dir shares with training; returns both counts."""
    train = sentence_keys(train_data)  # English and French, normalised as combine_data compares them
    evaluation = set().union(*(sentence_keys(d) for d in eval_data))
    shared = sorted(train & evaluation)
    if shared:
        raise BaseModelError(f"{train_data}: {len(shared)} training sentences are in "
                             f"{' '.join(map(str, eval_data))}, e.g. {shared[:5]}; a base model must not "
                             "have heard them (local/combine_data.py --exclude keeps them out)")
    return len(train), len(evaluation)


def describe(archive: Path, exp_dir: Path, train_data: Path, eval_data: list[Path], command: str,
             corpus: str) -> dict:
    """The description of a base model (see the module docstring)."""
    n_train, n_eval = check_no_eval_sentence(train_data, eval_data)
    wav = (train_data / "wav.scp").read_text(encoding="utf-8").splitlines()
    results = json.loads((exp_dir / "results.json").read_text(encoding="utf-8"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "archive": archive.name,
        "sha256": sha256(archive),
        "bytes": archive.stat().st_size,
        "command": command,
        "git_commit": commit,
        "corpus": corpus,
        "training_utterances": len(wav),
        "training_recordings": len({line.split(" ", 1)[1] for line in wav}),
        "training_sentences": n_train,
        "evaluation_sentences_kept_out": n_eval,
        "evaluation_data": [str(d) for d in eval_data],
        "results": results.get("results", results),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("unpack", help="check and unpack a base model")
    u.add_argument("--archive", type=Path, required=True)
    u.add_argument("--out_dir", type=Path, required=True)
    d = sub.add_parser("describe", help="write <archive>.json for a trained base")
    d.add_argument("--archive", type=Path, required=True)
    d.add_argument("--exp_dir", type=Path, required=True, help="its experiment folder (results.json)")
    d.add_argument("--train_data", type=Path, required=True, help="the data dir it trained on")
    d.add_argument("--eval_data", type=Path, nargs="+", required=True, help="dirs it must not have heard")
    d.add_argument("--command", dest="run_command", required=True, help="the command that trained it")
    d.add_argument("--corpus", required=True, help="one line on the data it trained on")
    args = p.parse_args(argv)
    setup_logging()
    try:
        if args.command == "unpack":
            unpack(args.archive, args.out_dir)
        else:
            info = describe(args.archive, args.exp_dir, args.train_data, args.eval_data, args.run_command,
                            args.corpus)
            description_path(args.archive).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
    except BaseModelError as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
