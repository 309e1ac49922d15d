"""interference: gradient cosines and expert shares, checked against hand computations.

The models are the bin tests' tiny S-MoE config (conftest.py, on its AN4
data, both tasks and bandwidths) and its hard-sharing twin (dense encoder and
decoder), with random weights: no training is needed to compare gradients. The hand computations collate the
rows of each side as a batch of their own, call the model's loss and take
``torch.autograd.grad``: nothing of the tool's row selection or grouping.
"""

import copy
import json
import sys

import pytest
import torch
import yaml
from espnet2.train.dataset import ESPnetDataset

from espnet_smoe.bin.interference import DATA_DIR_FILES, plot
from espnet_smoe.bin.interference import main as interference_main
from espnet_smoe.interference import cosine, parameter_groups, row_labels, subset_gradients
from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.task import SMoES2TTask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_model(root, conf, seed):
    """config.yaml and a random-weight model file, as training writes them."""
    root.mkdir(parents=True)
    args = SMoES2TTask.get_parser().parse_args(["--output_dir", str(root), "--token_list", str(conf.pop("tokens"))])
    vars(args).update(conf)
    torch.manual_seed(seed)
    model = SMoES2TTask.build_model(args)  # turns token_list into the list, as training does
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args), sort_keys=False))
    torch.save(model.state_dict(), root / "model.pth")
    return {"config": root / "config.yaml", "model_file": root / "model.pth"}


@pytest.fixture(scope="module")
def models(an4_data, tmp_path_factory):
    """The bin tests' tiny S-MoE config (an4_data's) and its hard-sharing twin, random weights."""
    out = tmp_path_factory.mktemp("interference")
    root = an4_data["root"]
    conf = yaml.safe_load(an4_data["config"].read_text())
    conf.update(normalize=None, bpemodel=str(root / "bpe.model"), token_type="bpe", use_preprocessor=True,
                tokens=root / "tokens.txt")
    dense = copy.deepcopy(conf)
    dense["encoder"], dense["decoder"] = "conformer", "transformer"
    del dense["encoder_conf"]["routing"], dense["decoder_conf"]["routing"]
    gated = copy.deepcopy(dense)
    gated["encoder"], gated["decoder"] = "gated_moe_conformer", "gated_moe_transformer"
    gated["encoder_conf"]["num_experts"] = gated["decoder_conf"]["num_experts"] = 2
    return {"smoe": write_model(out / "smoe", conf, seed=0), "dense": write_model(out / "dense", dense, seed=1),
            "gated": write_model(out / "gated", gated, seed=2)}


@pytest.fixture(scope="module")
def smoe(models, an4_data):
    src = models["smoe"]
    model, args = SMoES2TTask.build_model_from_file(src["config"], src["model_file"], "cpu")
    model.eval()
    data = an4_data["data"] / "train"
    triplets = [(str(data / f), name, kind) for f, name, kind in DATA_DIR_FILES]
    dataset = ESPnetDataset(triplets, preprocess=SMoES2TTask.build_preprocess_fn(args, False))
    collate = SMoES2TTask.build_collate_fn(args, False)
    keys = [line.split()[0] for line in (data / "wav.scp").read_text().splitlines()]
    return {"model": model, "args": args, "dataset": dataset, "collate": collate, "keys": keys, **src}


@pytest.fixture(scope="module")
def dense(models):
    return models["dense"]


def run_tool(src, an4_data, out_dir, *extra):
    interference_main(["--config", str(src["config"]), "--model_file", str(src["model_file"]),
                       "--data_dir", str(an4_data["data"] / "train"), "--out_dir", str(out_dir), *extra])
    return json.loads((out_dir / "interference.json").read_text())


def hand_gradient(smoe, keys, names):
    """The loss gradient of these utterances, as one batch, on the named parameters."""
    _, batch = smoe["collate"]([smoe["dataset"][k] for k in keys])
    params = dict(smoe["model"].named_parameters())
    loss, _, _ = smoe["model"](**batch)
    return dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)))


def hand_group(grads, names, expert=None):
    parts = []
    for n in names:
        g = grads[n] if grads[n] is not None else torch.zeros(1)
        parts.append((g[expert] if expert is not None else g).reshape(-1))
    return torch.cat(parts)


def mixed_keys(keys):
    """Two narrowband and two wideband recordings, both tasks each: 8 rows."""
    nb = [k for k in keys if k.startswith("an4_nb_")][:4]
    wb = [k for k in keys if k.startswith("an4_wb_")][:4]
    return nb[:2] + wb[:2] + nb[2:] + wb[2:]


def test_tool_cosine_equals_autograd_by_hand(smoe, an4_data, tmp_path):
    keys = mixed_keys(smoe["keys"])
    (tmp_path / "keys").write_text("\n".join(keys) + "\n")
    result = run_tool(smoe, an4_data, tmp_path / "out", "--key_file", str(tmp_path / "keys"),
                      "--batch_order", "file", "--batch_size", "8", "--num_batches", "1")
    params = [n for n, _ in smoe["model"].named_parameters()]
    checks = {
        "decoder.decoders.0.self_attn": (None, [n for n in params if n.startswith("decoder.decoders.0.self_attn.")]),
        "ctc.ctc_lo": (None, [n for n in params if n.startswith("ctc.")]),
        "encoder.embed": (None, [n for n in params if n.startswith("encoder.embed.")]),
        "encoder.encoders.1.feed_forward.expert1": (
            1, [f"encoder.encoders.1.feed_forward.{w}" for w in ("w_1", "b_1", "w_2", "b_2")]),
        "decoder.decoders.0.feed_forward.expert0": (
            0, [f"decoder.decoders.0.feed_forward.{w}" for w in ("w_1", "b_1", "w_2", "b_2")]),
    }
    names = sorted({n for _, ns in checks.values() for n in ns})
    sides = {
        "task": ([k for k in keys if k.endswith("_asr")], [k for k in keys if k.endswith("_st_fra")]),
        "bandwidth": ([k for k in keys if "_nb_" in k], [k for k in keys if "_wb_" in k]),
    }
    for family, (a_keys, b_keys) in sides.items():
        ga, gb = hand_gradient(smoe, a_keys, names), hand_gradient(smoe, b_keys, names)
        groups = result["gradient_cosine"][family]["groups"]
        assert result["gradient_cosine"][family]["batches_compared"] == 1
        for group, (expert, ns) in checks.items():
            a, b = hand_group(ga, ns, expert), hand_group(gb, ns, expert)
            entry = groups[group]
            assert entry["params"] == a.numel()
            assert entry["grad_norm"][result["gradient_cosine"][family]["sides"][0]] == pytest.approx(
                float(a.norm()), rel=1e-4, abs=1e-9)
            if a.norm() == 0 or b.norm() == 0:
                assert entry["cosine_mean"] is None, (family, group)
                continue
            expected = float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))
            assert entry["cosine_per_batch"] == [pytest.approx(expected, abs=1e-5)], (family, group)
            assert entry["cosine_mean"] == pytest.approx(expected, abs=1e-5)
    # one task's decoder expert: the other task puts nothing on it, so no cosine
    task_groups = result["gradient_cosine"]["task"]["groups"]
    assert task_groups["decoder.decoders.0.feed_forward.expert0"]["cosine_mean"] is None
    assert task_groups["decoder.decoders.0.feed_forward.expert0"]["used_by"] == ["<asr>"]
    assert task_groups["decoder.decoders.0.feed_forward.expert0"]["grad_norm"]["<st_fra>"] == 0.0
    assert task_groups["decoder.decoders.0.feed_forward.expert0"]["grad_norm"]["<asr>"] > 0
    # both tasks use both bandwidth experts of the encoder: those have a cosine
    assert task_groups["encoder.encoders.1.feed_forward.expert1"]["cosine_mean"] is not None
    bw_groups = result["gradient_cosine"]["bandwidth"]["groups"]
    assert bw_groups["encoder.encoders.0.feed_forward_macaron.expert0"]["used_by"] == ["<nb>"]
    assert bw_groups["encoder.encoders.0.feed_forward_macaron.expert0"]["cosine_mean"] is None
    assert bw_groups["decoder.decoders.0.feed_forward.expert1"]["cosine_mean"] is not None


def test_identical_subsets_give_cosine_one(smoe):
    keys = mixed_keys(smoe["keys"])
    utt_ids, batch = smoe["collate"]([smoe["dataset"][k] for k in keys])
    groups = parameter_groups(smoe["model"])
    rows = [0, 2, 5, 6]
    a = subset_gradients(smoe["model"], batch, rows, groups, utt_ids)
    b = subset_gradients(smoe["model"], batch, rows, groups, utt_ids)
    defined = {g: cosine(a[g], b[g]) for g in groups if a[g].norm() > 0}
    assert len(defined) > 20
    for group, value in defined.items():
        assert value == pytest.approx(1.0, abs=1e-9), group
    # different rows: not 1 (the check can fail)
    c = subset_gradients(smoe["model"], batch, [1, 3, 4, 7], groups, utt_ids)
    assert cosine(a["decoder.output_layer"], c["decoder.output_layer"]) < 0.999


def test_groups_cover_every_parameter_once(smoe):
    model = smoe["model"]
    groups = parameter_groups(model)
    params = list(model.parameters())
    sizes = 0
    for name, members in groups.items():
        for i, expert in members:
            sizes += params[i][expert].numel() if expert is not None else params[i].numel()
    assert sizes == sum(p.numel() for p in params)
    n_blocks = sum(isinstance(m, SMoEFeedForward) for m in model.modules())
    assert sum(name.rsplit(".", 1)[-1].startswith("expert") for name in groups) == 2 * n_blocks
    for expected in ("encoder.embed", "encoder.encoders.0.self_attn", "encoder.encoders.0.conv_module",
                     "encoder.encoders.1.norm", "decoder.decoders.0.src_attn", "decoder.output_layer", "ctc.ctc_lo"):
        assert expected in groups


def test_expert_shares_equal_the_routing(smoe, models, an4_data, tmp_path):
    result = run_tool(smoe, an4_data, tmp_path / "out", "--batch_order", "file", "--batch_size", "6",
                      "--num_batches", "100")
    keys = smoe["keys"]
    assert result["data"]["utterances"] == len(keys)
    model, dataset = smoe["model"], smoe["dataset"]
    token_list = list(smoe["args"].token_list)
    frames = {"<nb>": 0, "<wb>": 0, "<asr>": 0, "<st_fra>": 0}
    tokens = {"<asr>": 0, "<st_fra>": 0}
    with torch.no_grad():
        for k in keys:
            data = dataset[k][1]
            speech = torch.from_numpy(data["speech"])[None]
            bw = torch.from_numpy(data["bandwidth"])
            _, lens = model.encode(speech, torch.tensor([speech.size(1)]), bandwidth=bw)
            task = "<asr>" if k.endswith("_asr") else "<st_fra>"
            frames[token_list[int(bw)]] += int(lens[0])
            frames[task] += int(lens[0])
            tokens[task] += len(data["text"]) + 1  # decoder input: <sos> + text
    shares = result["expert_shares"]
    enc = [b for b in shares if b.startswith("encoder.")]
    dec = [b for b in shares if b.startswith("decoder.")]
    assert len(enc) == 2 * 2 and len(dec) == 1  # 2 blocks x macaron pair; 1 decoder block
    for block in enc:
        assert shares[block]["unit"] == "frames"
        assert shares[block]["counts"]["<nb>"] == [frames["<nb>"], 0]  # every <nb> frame in expert 0
        assert shares[block]["counts"]["<wb>"] == [0, frames["<wb>"]]
        assert shares[block]["shares"]["<nb>"] == [1.0, 0.0]
        for task in ("<asr>", "<st_fra>"):
            assert sum(shares[block]["counts"][task]) == frames[task]
    for block in dec:
        assert shares[block]["unit"] == "tokens"
        assert shares[block]["counts"]["<asr>"] == [tokens["<asr>"], 0]
        assert shares[block]["counts"]["<st_fra>"] == [0, tokens["<st_fra>"]]
        assert shares[block]["shares"]["<st_fra>"] == [0.0, 1.0]
        assert sum(shares[block]["counts"]["<nb>"]) + sum(shares[block]["counts"]["<wb>"]) == sum(tokens.values())

    # learned gate (baseline): routed per frame/token, so only the totals are known in advance
    gated = run_tool(models["gated"], an4_data, tmp_path / "gated", "--batch_order", "file", "--batch_size", "6",
                     "--num_batches", "100")
    shares = gated["expert_shares"]
    assert sorted(shares) == sorted(b + ".experts" for b in enc + dec)
    for block, entry in shares.items():
        totals = frames if block.startswith("encoder") else tokens
        for label in ("<asr>", "<st_fra>") + (("<nb>", "<wb>") if block.startswith("encoder") else ()):
            assert sum(entry["counts"][label]) == totals[label], (block, label)
        assert sum(entry["counts"]["<nb>"]) + sum(entry["counts"]["<wb>"]) == sum(
            sum(entry["counts"][t]) for t in ("<asr>", "<st_fra>"))
    groups = gated["gradient_cosine"]["task"]["groups"]
    assert "encoder.encoders.0.feed_forward.experts.expert1" in groups
    assert "encoder.encoders.0.feed_forward" in groups  # its router


def test_json_schema_png_and_hard_sharing(smoe, dense, an4_data, tmp_path):
    runs = {}
    for name, src in (("smoe", smoe), ("hard", dense)):
        runs[name] = run_tool(src, an4_data, tmp_path / name, "--batch_size", "8", "--num_batches", "2",
                              "--batch_order", "random", "--seed", "3")
        png = (tmp_path / name / "interference.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10000
    for name, result in runs.items():
        assert set(result) == {"model", "data", "loss", "gradient_cosine", "expert_shares"}
        assert result["data"]["batches"] == 2 and result["data"]["utterances"] == 16
        assert result["loss"]["mean_batch_loss"] > 0
        for family, sides in (("task", ["<asr>", "<st_fra>"]), ("bandwidth", ["<nb>", "<wb>"])):
            entry = result["gradient_cosine"][family]
            assert entry["sides"] == sides
            assert entry["batches_compared"] + entry["batches_skipped"] == 2
            assert entry["batches_compared"] >= 1
            for group in entry["groups"].values():
                assert set(group) == {"params", "cosine_mean", "cosine_std", "cosine_of_sum", "batches",
                                      "cosine_per_batch", "grad_norm", "used_by"}
                assert set(group["grad_norm"]) == set(sides)
                assert len(group["cosine_per_batch"]) == entry["batches_compared"]
                for v in [group["cosine_mean"], group["cosine_of_sum"], *group["cosine_per_batch"]]:
                    assert v is None or -1.0 - 1e-9 <= v <= 1.0 + 1e-9
    hard = runs["hard"]
    assert hard["model"]["encoder"] == "conformer" and hard["expert_shares"] == {}
    for family in ("task", "bandwidth"):
        groups = hard["gradient_cosine"][family]["groups"]
        assert not any("expert" in g for g in groups)
        # hard sharing: every group is shared, so every one has a cosine
        assert all(g["cosine_mean"] is not None for g in groups.values())
        assert "encoder.encoders.0.feed_forward" in groups
    # the comparison plot takes several JSONs
    interference_main(["--plot", str(tmp_path / "hard/interference.json"), str(tmp_path / "smoe/interference.json"),
                       "--names", "hard sharing", "S-MoE", "--out_dir", str(tmp_path / "cmp")])
    assert (tmp_path / "cmp/interference_compare.png").read_bytes().startswith(PNG_MAGIC)


def test_default_data_is_the_configs_validation_set(smoe, an4_data, tmp_path):
    conf = yaml.safe_load(smoe["config"].read_text())
    triplets = [[str(an4_data["data"] / "train" / f), name, kind] for f, name, kind in DATA_DIR_FILES]
    conf["valid_data_path_and_name_and_type"] = triplets
    shapes = {k: len(smoe["dataset"][k][1]["speech"]) for k in smoe["keys"]}
    shape_file = tmp_path / "speech_shape"
    conf["valid_shape_file"] = [str(shape_file)]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(conf, sort_keys=False))
    args = ["--config", str(config), "--model_file", str(smoe["model_file"]), "--batch_size", "8",
            "--num_batches", "1", "--out_dir", str(tmp_path / "out")]
    shape_file.write_text("".join(f"{k} {n}\n" for k, n in list(shapes.items())[1:]))
    with pytest.raises(ValueError, match="no length for 1 utterances"):  # it reads the config's shape file
        interference_main(args)
    shape_file.write_text("".join(f"{k} {n}\n" for k, n in shapes.items()))
    interference_main(args)
    result = json.loads((tmp_path / "out/interference.json").read_text())
    assert result["data"]["files"] == triplets and result["data"]["utterances"] == 8


def test_loss_part_att_leaves_ctc_without_gradient(smoe, an4_data, tmp_path):
    result = run_tool(smoe, an4_data, tmp_path / "out", "--batch_size", "8", "--num_batches", "1",
                      "--batch_order", "random", "--loss_part", "att")
    ctc = result["gradient_cosine"]["task"]["groups"]["ctc.ctc_lo"]
    assert ctc["used_by"] == [] and ctc["cosine_mean"] is None
    assert result["loss"]["part"] == "att"
    assert smoe["model"].ctc_weight > 0  # the fixture's model is another instance


def test_errors_name_what_is_missing(smoe, tmp_path):
    keys = mixed_keys(smoe["keys"])[:2]
    utt_ids, batch = smoe["collate"]([smoe["dataset"][k] for k in keys])
    token_list = list(smoe["args"].token_list)
    tasks = {token_list.index("<asr>"): "<asr>", token_list.index("<st_fra>"): "<st_fra>"}
    bws = {token_list.index("<nb>"): "<nb>", token_list.index("<wb>"): "<wb>"}
    labels = row_labels(batch, utt_ids, tasks, bws)
    assert labels["task"] == ["<asr>" if k.endswith("_asr") else "<st_fra>" for k in keys]
    no_bw = {k: v for k, v in batch.items() if not k.startswith("bandwidth")}
    with pytest.raises(ValueError, match="utt2bw"):
        row_labels(no_bw, utt_ids, tasks, bws)
    with pytest.raises(ValueError, match=keys[0]):
        row_labels(batch, utt_ids, {token_list.index("<eng>") + 10**6: "<x>"}, bws)
    with pytest.raises(FileNotFoundError, match="utt2bw"):
        interference_main(["--config", str(smoe["config"]), "--model_file", str(smoe["model_file"]),
                           "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o")])


def test_plot_without_matplotlib_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot([], [], tmp_path / "x.png")
