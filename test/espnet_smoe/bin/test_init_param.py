"""--init_param <dense>.pth through the training launcher upcycles the experts.

A hard-sharing (dense) twin of the tiny S-MoE config trains two steps; an
S-MoE run then starts from its checkpoint. The S-MoE run uses lr 0 for its one
step, so its saved weights are exactly what --init_param loaded.
"""

import sys

import pytest
import torch
import yaml

DENSE_FFN = {"w_1": "w_1.weight", "b_1": "w_1.bias", "w_2": "w_2.weight", "b_2": "w_2.bias"}


def write_config(experiment, name, dense: bool, **overrides):
    conf = yaml.safe_load(experiment["config"].read_text())
    if dense:
        conf["encoder"], conf["decoder"] = "conformer", "transformer"
        del conf["encoder_conf"]["routing"], conf["decoder_conf"]["routing"]
    conf.update(overrides)
    path = experiment["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def train(experiment, run, common_args, config, out, *extra, log_name):
    root, data = experiment["root"], experiment["data"]
    return run([sys.executable, "-m", "espnet_smoe.bin.s2t_train", "--config", str(config),
                *common_args(root, data), "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
                "--train_shape_file", str(root / "stats/train/speech_shape"),
                "--valid_shape_file", str(root / "stats/valid/speech_shape"), "--output_dir", str(out), *extra],
               root, log_name)


@pytest.fixture
def dense_checkpoint(experiment, run, common_args):
    """A hard-sharing model trained 2 steps through the launcher (once per session)."""
    out = experiment["root"] / "exp_dense"
    if not (out / "1epoch.pth").exists():
        config = write_config(experiment, "train_dense", dense=True, max_epoch=1, num_iters_per_epoch=2)
        train(experiment, run, common_args, config, out, log_name="train_dense")
    return out / "1epoch.pth"


def test_launcher_upcycles_a_dense_checkpoint(experiment, run, common_args, dense_checkpoint):
    config = write_config(experiment, "train_upcycled", dense=False, max_epoch=1, num_iters_per_epoch=1,
                          optim_conf={"lr": 0.0})
    out = experiment["root"] / "exp_upcycled"
    log = train(experiment, run, common_args, config, out, "--init_param", str(dense_checkpoint),
                log_name="train_upcycled")
    text = log.read_text()
    assert "S-MoE: upcycled 4 dense FFNs, each copied into the 2 experts" in text  # 2 blocks x macaron pair
    assert "S-MoE: upcycled 1 dense FFNs, each copied into the 2 experts" in text  # 1 decoder block
    dense = torch.load(dense_checkpoint, map_location="cpu")
    smoe = torch.load(out / "1epoch.pth", map_location="cpu")
    n_experts = 0
    for name, value in smoe.items():
        prefix, _, kind = name.rpartition(".")
        if kind in DENSE_FFN and f"{prefix}.{DENSE_FFN[kind]}" in dense:
            assert value.shape[0] == 2
            for e in range(2):  # every expert is the dense FFN of its layer
                assert torch.equal(value[e], dense[f"{prefix}.{DENSE_FFN[kind]}"]), (name, e)
            n_experts += 1
        elif not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            # everything else as ESPnet loads it (batch-norm statistics move in the step)
            assert torch.equal(value, dense[name]), name
    assert n_experts == 5 * 4


def test_launcher_names_a_misshaped_dense_parameter(experiment, run, common_args, dense_checkpoint):
    state = torch.load(dense_checkpoint, map_location="cpu")
    name = "decoder.decoders.0.feed_forward.w_2.weight"
    state[name] = state[name][:, :10]
    bad = experiment["root"] / "dense_bad.pth"
    torch.save(state, bad)
    config = write_config(experiment, "train_upcycled_bad", dense=False, max_epoch=1, num_iters_per_epoch=1)
    with pytest.raises(AssertionError, match=rf"{name} has shape \(32, 10\), the experts need \(32, 64\)"):
        train(experiment, run, common_args, config, experiment["root"] / "exp_bad", "--init_param", str(bad),
              log_name="train_upcycled_bad")
