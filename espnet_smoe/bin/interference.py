#!/usr/bin/env python3
"""Measure task and bandwidth interference in a trained S2T model.

Over N batches of a data set that holds both tasks and both bandwidths, the
cosine similarity between the ASR and ST loss gradients, and between the NB
and WB loss gradients, per parameter group (encoder block sub-modules,
decoder block sub-modules, CTC, embeddings; one group per S-MoE expert), and
each expert's share of the frames/tokens of each task and bandwidth.
Run it from the recipe dir (config.yaml's paths are relative to it):

    python -m espnet_smoe.bin.interference --config exp/x/config.yaml \\
        --model_file exp/x/valid.acc.best.pth --data_dir data/dev_mix \\
        --num_batches 8 --batch_size 16 --out_dir exp/x/interference

writes ``interference.json`` and ``interference.png`` in ``--out_dir``.
Without ``--data_dir`` or ``--data_path_and_name_and_type``, the config's
validation data (and its valid_shape_file for the lengths) are used. Works
for dense (hard sharing), S-MoE and learned-gate models. Compare models by
running it once per model, then:

    python -m espnet_smoe.bin.interference --plot exp/hs/interference/interference.json \\
        exp/smoe/interference/interference.json --names "hard sharing" "S-MoE" --out_dir exp/interference

See ``espnet_smoe/interference.py`` for what is measured and how.
"""

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

import espnet_smoe  # noqa: F401  (registers the classes config.yaml names)
from espnet_smoe.batch import HOST_ROWS
from espnet_smoe.interference import InterferenceMeter, RoutingCounter, parameter_groups, row_labels
from espnet_smoe.task import SMoES2TTask

# What --data_dir expands to: ESPnet's S2T data names plus the bandwidth.
DATA_DIR_FILES = (
    ("wav.scp", "speech", "sound"),
    ("text", "text", "text"),
    ("text.prev", "text_prev", "text"),
    ("text.ctc", "text_ctc", "text"),
    ("utt2bw", "bandwidth", "text"),
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--config", "--s2t_train_config", dest="config", type=Path, help="training config.yaml")
    parser.add_argument("--model_file", "--s2t_model_file", dest="model_file", type=Path, help="model .pth")
    data = parser.add_argument_group("data (default: the config's valid_data_path_and_name_and_type)")
    data.add_argument("--data_dir", type=Path, default=None,
                      help="Kaldi-style dir with " + ", ".join(f for f, _, _ in DATA_DIR_FILES))
    data.add_argument("--data_path_and_name_and_type", action="append", default=[],
                      help="path,name,type as in ESPnet (repeat; utt2bw,bandwidth,text is needed)")
    data.add_argument("--key_file", type=Path, default=None, help="use only these utterances")
    data.add_argument("--shape_file", type=Path, default=None,
                      help="ESPnet speech_shape file: lengths for --batch_order sorted without reading the audio "
                      "(default with the config's validation data: its valid_shape_file)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_batches", type=int, default=10, help="at most this many batches")
    parser.add_argument("--batch_order", choices=("sorted", "random", "file"), default="sorted",
                        help="sorted: length-sorted batches as in training (batch_type: sorted), so the ASR and "
                        "ST rows of a recording share a batch, taken in random order; random: shuffled "
                        "utterances; file: the data's order")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch choice/order")
    parser.add_argument("--tasks", nargs=2, default=["asr", "st_fra"], help="the two task tokens to compare")
    parser.add_argument("--bandwidths", nargs=2, default=["nb", "wb"], help="the two bandwidth tokens")
    parser.add_argument("--loss_part", choices=("all", "att", "ctc"), default="all",
                        help="all: the model's loss as trained; att / ctc: only the attention (decoder) or the "
                        "CTC loss (ctc_weight set to 0 / 1 while measuring)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: the first GPU")
    parser.add_argument("--out_dir", type=Path, required=True)
    plot = parser.add_argument_group("comparison plot (instead of measuring)")
    plot.add_argument("--plot", nargs="+", type=Path, default=None, help="interference.json files to draw together")
    plot.add_argument("--names", nargs="+", default=None, help="one name per --plot file")
    return parser


def data_triplets(args, train_args) -> List[Tuple[str, str, str]]:
    """The (path, name, type) list the tool reads."""
    if args.data_dir is not None and args.data_path_and_name_and_type:
        raise ValueError("give --data_dir or --data_path_and_name_and_type, not both")
    if args.data_dir is not None:
        missing = [f for f, _, _ in DATA_DIR_FILES if not (args.data_dir / f).exists()]
        if missing:
            raise FileNotFoundError(f"{args.data_dir}: missing {missing} (needs {[f for f, _, _ in DATA_DIR_FILES]})")
        return [(str(args.data_dir / f), name, kind) for f, name, kind in DATA_DIR_FILES]
    if args.data_path_and_name_and_type:
        out = []
        for spec in args.data_path_and_name_and_type:
            parts = spec.rsplit(",", 2)
            if len(parts) != 3:
                raise ValueError(f"--data_path_and_name_and_type {spec!r}: expected path,name,type")
            out.append(tuple(parts))
        return out
    valid = getattr(train_args, "valid_data_path_and_name_and_type", None)
    if not valid:
        raise ValueError("no data: give --data_dir (the config has no valid_data_path_and_name_and_type)")
    return [tuple(t) for t in valid]


def read_keys(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def read_lengths(path: Path) -> Dict[str, int]:
    lengths = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<utt-id> <length>[,dim]', got {line.strip()!r}")
            lengths[parts[0]] = int(parts[1].split(",")[0])
    return lengths


def plan_batches(
    keys: Sequence[str],
    batch_size: int,
    num_batches: int,
    order: str,
    seed: int,
    lengths: Optional[Dict[str, int]] = None,
) -> List[List[str]]:
    """Split the keys into at most ``num_batches`` batches of ``batch_size``.

    ``sorted``: by length, longest first, ties in key order (so the ASR and
    ST copies of a recording sit together, as ESPnet's sorted batches put
    them), then ``num_batches`` of these batches drawn at random (not just the
    longest); ``random``: shuffled keys; ``file``: the keys' order.
    """
    if batch_size < 1 or num_batches < 1:
        raise ValueError("--batch_size and --num_batches must be >= 1")
    rng = random.Random(seed)
    keys = list(keys)
    if order == "random":
        rng.shuffle(keys)
    elif order == "sorted":
        missing = [k for k in keys if k not in lengths]
        if missing:
            raise ValueError(f"no length for {len(missing)} utterances (see --shape_file), e.g. {missing[:3]}")
        keys.sort(key=lambda k: -lengths[k])
    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    if order == "sorted":
        rng.shuffle(batches)
    return batches[:num_batches]


def token_ids(token_list: Sequence[str], names: Sequence[str], what: str) -> Dict[int, str]:
    """Token id -> '<token>' for names given with or without brackets."""
    out = {}
    for name in names:
        token = "<" + name.strip("<>") + ">"
        if token not in token_list:
            raise ValueError(f"{what} token {token} is not in the model's token list")
        out[token_list.index(token)] = token
    return out


def measure(args) -> dict:
    if args.config is None or args.model_file is None:
        raise ValueError("give --config and --model_file (or --plot JSON files)")
    device = "cuda" if args.ngpu > 0 else "cpu"
    model, train_args = SMoES2TTask.build_model_from_file(args.config, args.model_file, device)
    model.eval()  # no dropout; batch norm uses its running statistics (see espnet_smoe/interference.py)
    if args.loss_part != "all":
        if not hasattr(model, "ctc_weight"):
            raise ValueError(f"--loss_part {args.loss_part}: {type(model).__name__} has no ctc_weight")
        if args.loss_part == "ctc" and getattr(model, "ctc", None) is None:
            raise ValueError("--loss_part ctc: the model has no CTC branch")
        model.ctc_weight = 0.0 if args.loss_part == "att" else 1.0  # ESPnet skips the other branch
    token_list = list(train_args.token_list)
    tasks = token_ids(token_list, args.tasks, "task")
    bandwidths = token_ids(token_list, args.bandwidths, "bandwidth")

    from espnet2.train.dataset import ESPnetDataset

    triplets = data_triplets(args, train_args)
    dataset = ESPnetDataset(triplets, preprocess=SMoES2TTask.build_preprocess_fn(train_args, False))
    collate = SMoES2TTask.build_collate_fn(train_args, False)
    keys = read_keys(args.key_file) if args.key_file is not None else read_keys(Path(triplets[0][0]))
    lengths = None
    if args.batch_order == "sorted":
        shape_file = args.shape_file
        if shape_file is None and args.data_dir is None and not args.data_path_and_name_and_type:
            # the config's validation data: its shape file (collect_stats) has the lengths
            valid_shapes = getattr(train_args, "valid_shape_file", None) or []
            if valid_shapes and Path(valid_shapes[0]).exists():
                shape_file = Path(valid_shapes[0])
        if shape_file is not None:
            logging.info("lengths from %s", shape_file)
            lengths = read_lengths(shape_file)
        else:
            logging.info("reading %d utterances for their lengths (--shape_file skips this)", len(keys))
            lengths = {k: len(dataset[k][1]["speech"]) for k in keys}
    batches = plan_batches(keys, args.batch_size, args.num_batches, args.batch_order, args.seed, lengths)

    groups = parameter_groups(model)
    families = {"task": list(tasks.values()), "bandwidth": list(bandwidths.values())}
    meter = InterferenceMeter(groups, families)
    counter = RoutingCounter(model)
    losses = []
    start = time.time()
    for i, batch_keys in enumerate(batches):
        utt_ids, batch = collate([dataset[k] for k in batch_keys])
        # the meter takes row subsets of the tensors; the model reads their host rows back itself
        batch.pop(HOST_ROWS, None)
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = row_labels(batch, utt_ids, tasks, bandwidths)
        with torch.no_grad(), counter:  # the whole batch once: routing counts and loss
            loss, _, _ = model(**batch, utt_id=utt_ids)
        counter.add(labels)
        losses.append(float(loss))
        meter.add_batch(model, batch, labels, utt_ids)
        logging.info("batch %d/%d (%d rows): loss %.3f, %.1f s", i + 1, len(batches), len(utt_ids),
                     losses[-1], time.time() - start)
    return {
        "model": {"config": str(args.config), "model_file": str(args.model_file), "model": train_args.model,
                  "encoder": train_args.encoder, "decoder": train_args.decoder,
                  "routing": {part: dict(getattr(train_args, f"{part}_conf", {}).get("routing", {}))
                              for part in ("encoder", "decoder")}},
        "data": {"files": [list(t) for t in triplets], "key_file": str(args.key_file) if args.key_file else None,
                 "batch_size": args.batch_size, "batches": len(batches), "batch_order": args.batch_order,
                 "seed": args.seed, "utterances": sum(len(b) for b in batches)},
        "loss": {"description": "the model's own loss (model(**rows)) on each side's rows of a batch, eval mode",
                 "part": args.loss_part,
                 "mean_batch_loss": sum(losses) / len(losses) if losses else None},
        "gradient_cosine": meter.result(),
        "expert_shares": counter.result(),
    }


def plot(results: Sequence[dict], names: Sequence[str], path: Path) -> None:
    """Cosine per group and family (one bar per model), and expert shares."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            "the interference plot needs matplotlib: pip install matplotlib (or the recipe extra, "
            "pip install -e '.[recipe]'); the JSON is written without it"
        ) from e
    matplotlib.use("Agg")  # no display on the training machines
    import matplotlib.pyplot as plt

    families = ["task", "bandwidth"]
    with_shares = [(n, r) for n, r in zip(names, results) if r.get("expert_shares")]
    fig, axes = plt.subplots(
        1, len(families) + len(with_shares), figsize=(6 * (len(families) + len(with_shares)), 9), squeeze=False
    )
    for ax, family in zip(axes[0], families):
        groups = []
        for r in results:
            for g in r["gradient_cosine"][family]["groups"]:
                if g not in groups:
                    groups.append(g)
        height = 0.8 / len(results)
        for k, (name, r) in enumerate(zip(names, results)):
            entry = r["gradient_cosine"][family]
            values = [entry["groups"].get(g, {}).get("cosine_mean") for g in groups]
            ys = [i + k * height for i, v in enumerate(values) if v is not None]
            ax.barh(ys, [v for v in values if v is not None], height=height, label=name)
        for i, g in enumerate(groups):
            if all(r["gradient_cosine"][family]["groups"].get(g, {}).get("cosine_mean") is None for r in results):
                ax.text(0.02, i + 0.4 - height / 2, "one side only", fontsize=6, va="center", color="gray")
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(groups))], [_short(g) for g in groups], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        sides = " vs ".join(results[0]["gradient_cosine"][family]["sides"])
        ax.set_title(f"gradient cosine, {sides}\n(mean over batches; no bar: one side only)", fontsize=9)
        ax.set_xlim(-1, 1)
        ax.legend(fontsize=8)
    for ax, (name, r) in zip(axes[0][len(families) :], with_shares):
        rows, labels = [], []
        for block, entry in r["expert_shares"].items():
            for label, shares in entry["shares"].items():
                rows.append(shares)
                labels.append(f"{_short(block)} {label}")
        left = [0.0] * len(rows)
        for e in range(max(len(s) for s in rows)):
            widths = [s[e] if e < len(s) else 0.0 for s in rows]
            ax.barh(range(len(rows)), widths, left=left, label=f"expert {e}")
            left = [a + b for a, b in zip(left, widths)]
        ax.set_yticks(range(len(rows)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{name}: share of frames/tokens per expert", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(name: str) -> str:
    """encoder.encoders.0.feed_forward -> encoder.0.feed_forward (plot labels)."""
    return name.replace(".encoders.", ".").replace(".decoders.", ".")


def main(cmd=None):
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    if args.plot is not None:
        names = args.names or [p.parent.name for p in args.plot]
        if len(names) != len(args.plot):
            parser.error(f"--names needs one name per --plot file ({len(args.plot)})")
        results = [json.loads(p.read_text()) for p in args.plot]
        plot(results, names, args.out_dir / "interference_compare.png")
        print(json.dumps({"png": str(args.out_dir / "interference_compare.png")}))
        return
    if args.config is None or args.model_file is None:
        parser.error("give --config and --model_file (or --plot JSON files)")
    result = measure(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "interference.json").write_text(json.dumps(result, indent=1) + "\n")
    logging.info("wrote %s", args.out_dir / "interference.json")
    plot([result], [args.config.parent.name], args.out_dir / "interference.png")
    logging.info("wrote %s", args.out_dir / "interference.png")


if __name__ == "__main__":
    main()
