"""The recipe's training configs: same but for routing, and they build."""

from pathlib import Path

import pytest
import yaml

from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.task import SMoES2TTask

CONF = Path(__file__).resolve().parents[5] / "egs2/smoe_asr_st/s2t1/conf"
VARIANTS = {  # name -> (S-MoE encoder, S-MoE decoder)
    "hard_sharing": (False, False),
    "smoe_enc": (True, False),
    "smoe_dec": (False, True),
    "smoe_encdec": (True, True),
}


def without_routing(conf):
    conf = {k: (dict(v) if isinstance(v, dict) else v) for k, v in conf.items()}
    for part in ("encoder", "decoder"):
        conf[part] = conf[part].replace("smoe_", "")
        conf[f"{part}_conf"].pop("routing", None)
    return conf


@pytest.mark.parametrize("suffix", ["", "_tiny"])
def test_variants_differ_only_in_routing(suffix):
    folder = CONF / "tuning" if suffix else CONF
    confs = {v: yaml.safe_load((folder / f"train_{v}{suffix}.yaml").read_text()) for v in VARIANTS}
    reference = without_routing(confs["hard_sharing"])
    for name, conf in confs.items():
        assert without_routing(conf) == reference, name
        enc, dec = VARIANTS[name]
        assert (conf["encoder"] == "smoe_conformer") == enc
        assert (conf["decoder"] == "smoe_transformer") == dec


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_variant_builds_with_expected_experts(variant, tmp_path):
    specials = ["<na>", "<nb>", "<wb>", "<asr>", "<st_fra>", "<eng>", "<notimestamps>"]
    tokens = ["<blank>", "<unk>", "a", "b"] + specials + [f"<{i * 0.02:.2f}>" for i in range(1501)]
    tokens += ["<sos>", "<eos>", "<sop>"]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = SMoES2TTask.get_parser().parse_args(
        ["--config", str(CONF / f"tuning/train_{variant}_tiny.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
         "--normalize", "none", "--output_dir", str(tmp_path)]
    )
    model = SMoES2TTask.build_model(args)
    enc_blocks = [m for m in model.encoder.modules() if isinstance(m, SMoEFeedForward)]
    dec_blocks = [m for m in model.decoder.modules() if isinstance(m, SMoEFeedForward)]
    enc, dec = VARIANTS[variant]
    assert (len(enc_blocks) == 2 * args.encoder_conf["num_blocks"]) if enc else not enc_blocks
    assert (len(dec_blocks) == args.decoder_conf["num_blocks"]) if dec else not dec_blocks


@pytest.mark.parametrize("suffix", ["", "_tiny"])
def test_fair_baselines_match_smoe_encdec(suffix, tmp_path):
    """Dense-wide has the total parameters of S-MoE enc+dec (within 1 %); gated has as many experts."""
    from espnet_smoe.bin.model_info import count_parameters

    folder = CONF / "tuning" if suffix else CONF
    specials = ["<na>", "<nb>", "<wb>", "<asr>", "<st_fra>", "<eng>", "<notimestamps>"]
    tokens = ["<blank>", "<unk>", "a", "b"] + specials + [f"<{i * 0.02:.2f}>" for i in range(1501)]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens + ["<sos>", "<eos>", "<sop>"]) + "\n")
    counts = {}
    for name in ("smoe_encdec", "dense_wide", "gated_moe", "hard_sharing"):
        args = SMoES2TTask.get_parser().parse_args(
            ["--config", str(folder / f"train_{name}{suffix}.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
             "--normalize", "none", "--output_dir", str(tmp_path)]
        )
        counts[name] = count_parameters(SMoES2TTask.build_model(args))
    smoe, wide = counts["smoe_encdec"]["total_params"], counts["dense_wide"]["total_params"]
    assert abs(wide - smoe) / smoe < 0.01, (wide, smoe)
    # active parameters: S-MoE uses one expert, like the hard-sharing model
    assert counts["smoe_encdec"]["active_params"] == pytest.approx(counts["hard_sharing"]["total_params"], rel=0.01)
    assert counts["gated_moe"]["expert_params"] == counts["smoe_encdec"]["expert_params"]
