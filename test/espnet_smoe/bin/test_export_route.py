"""export_route: one route of a tiny S-MoE model as a dense model.

The source is a tiny S-MoE encoder+decoder model with random weights (its two
experts per layer differ), written and packed the way training and run.sh
stage 11 write them. Random weights are enough for identity checks: the
hypotheses are long strings of arbitrary tokens, and another route gives
other ones.
"""

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.bin.s2t_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import pack, unpack
from espnet2.tasks.s2t import S2TTask

import espnet_smoe  # noqa: F401
from espnet_smoe.bin.export_route import main as export_main
from espnet_smoe.export import RouteError, export_route
from espnet_smoe.inference import SMoESpeech2Text
from espnet_smoe.task import SMoES2TTask

FS = 16000
SPEECH_LENGTH = 1.0  # seconds: the window ESPnet's Speech2Text pads/trims to
DECODE = dict(beam_size=3, ctc_weight=0.3, maxlenratio=0.0, lang_sym="<eng>", device="cpu")

TINY = {
    "frontend": "default",
    "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 20},
    "specaug": None,
    "normalize": "global_mvn",
    "encoder": "smoe_conformer",
    "encoder_conf": {
        "routing": {"<nb>": 0, "<wb>": 1}, "output_size": 16, "attention_heads": 2, "linear_units": 24,
        "num_blocks": 2, "input_layer": "conv2d", "macaron_style": True, "rel_pos_type": "latest",
        "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
        "activation_type": "swish", "use_cnn_module": True, "cnn_module_kernel": 3,
    },
    "decoder": "smoe_transformer",
    "decoder_conf": {"routing": {"<asr>": 0, "<st_fra>": 1}, "attention_heads": 2, "linear_units": 24,
                     "num_blocks": 2},
    "model": "smoe",
    "model_conf": {"ctc_weight": 0.3, "mask_guiding_targets": True, "share_encoder_passes": True,
                   "moe_aux_loss_weight": 0.01},
    "preprocessor": "smoe_s2t",
    "preprocessor_conf": {"fs": FS, "speech_length": SPEECH_LENGTH, "time_apply_prob": 1.0,
                          "text_prev_apply_prob": 0.0, "notime_symbol": "<notimestamps>",
                          "first_time_symbol": "<0.00>", "last_time_symbol": "<30.00>"},
    "token_type": "word",
    "use_preprocessor": True,
}


def write_source(root: Path, token_list, pad_speech: bool, seed: int = 0) -> dict:
    """A tiny S-MoE experiment dir and its packed zip, as training and run.sh write them.

    Paths in config.yaml are relative to ``root``, the "recipe dir", and the
    zip is packed from there, like run.sh stage 11.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "data/tokens.txt").write_text("\n".join(token_list) + "\n")
    rng = np.random.default_rng(seed)
    np.savez(root / "data/feats_stats.npz", count=np.array(100.0),
             sum=rng.normal(size=20) * 100, sum_square=np.full(20, 300.0))
    conf = copy.deepcopy(TINY)
    conf["preprocessor_conf"]["pad_speech"] = pad_speech
    conf["normalize_conf"] = {"stats_file": "data/feats_stats.npz"}
    with contextlib.chdir(root):
        args = SMoES2TTask.get_parser().parse_args(
            ["--output_dir", "exp/smoe", "--token_list", "data/tokens.txt"]
        )
        vars(args).update(copy.deepcopy(conf))
        torch.manual_seed(seed)
        model = SMoES2TTask.build_model(args)  # turns token_list into the list, as training does
        exp = Path("exp/smoe")
        exp.mkdir(parents=True)
        (exp / "config.yaml").write_text(yaml.safe_dump(vars(args), sort_keys=False))
        torch.save(model.state_dict(), exp / "valid.acc.ave.pth")
        pack(files={"s2t_model_file": "exp/smoe/valid.acc.ave.pth"},
             yaml_files={"s2t_train_config": "exp/smoe/config.yaml"},
             option=["data/feats_stats.npz"], outpath="packed.zip")
    # ESPnet's unpack points the config at the unpacked files (absolute paths):
    # usable from any directory, and the --config/--model_file form of the export
    files = unpack(root / "packed.zip", root / "unpacked")
    return {"root": root, "zip": root / "packed.zip", "config": Path(files["s2t_train_config"]),
            "model_file": Path(files["s2t_model_file"]), "conf": conf}


@pytest.fixture(scope="module")
def source(tmp_path_factory, token_list):
    """Trained like run.sh's models: pad_speech false."""
    return write_source(tmp_path_factory.mktemp("smoe_unpadded"), token_list, pad_speech=False)


@pytest.fixture(scope="module")
def padded_source(tmp_path_factory, token_list):
    """Trained with ESPnet's padding (pad_speech true, ESPnet's default)."""
    return write_source(tmp_path_factory.mktemp("smoe_padded"), token_list, pad_speech=True, seed=1)


@pytest.fixture(scope="module")
def exported(source, padded_source, tmp_path_factory):
    """Every export the tests look at, made once."""
    out = tmp_path_factory.mktemp("exported")
    runs = {
        "nb_asr": dict(model_zip=source["zip"], bandwidth="nb", task="asr"),
        "wb_st": dict(model_zip=source["zip"], bandwidth="<wb>", task="<st_fra>"),
        "nb": dict(model_zip=source["zip"], bandwidth="nb"),
        "padded_nb_st": dict(config=padded_source["config"], model_file=padded_source["model_file"],
                             bandwidth="nb", task="st_fra"),
    }
    result = {}
    for name, kwargs in runs.items():
        summary = export_route(out / f"{name}.zip", **kwargs)
        files = unpack(out / f"{name}.zip", out / name)
        result[name] = {"summary": summary, **files}
    return result


def smoe_decoder(src, **kw) -> SMoESpeech2Text:
    return SMoESpeech2Text(src["config"], src["model_file"], **{**DECODE, **kw})


def plain_decoder(files, **kw) -> Speech2Text:
    return Speech2Text(files["s2t_train_config"], files["s2t_model_file"], **{**DECODE, **kw})


def random_speech(n, min_s, max_s, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(int(min_s * FS), int(max_s * FS), (n,), generator=g)
    return [0.1 * torch.randn(int(n_), generator=g) for n_ in lengths]


def words(result):
    """The hypothesis tokens after the prompt (language, task, <notimestamps>)."""
    return [t for t in result[1] if not (t.startswith("<") and t.endswith(">"))]


def test_plain_export_config_is_espnet_only(exported, source):
    conf = yaml.safe_load(Path(exported["nb_asr"]["s2t_train_config"]).read_text())
    assert (conf["encoder"], conf["decoder"], conf["model"], conf["preprocessor"]) == (
        "conformer", "transformer", "espnet", "s2t")
    for key in ("routing", "num_experts", "smoe_layers"):
        assert key not in conf["encoder_conf"] and key not in conf["decoder_conf"]
    assert set(conf["model_conf"]) == {"ctc_weight"}
    assert "pad_speech" not in conf["preprocessor_conf"]
    assert conf["preprocessor_conf"]["speech_length"] == SPEECH_LENGTH
    # the statistics file is packed and the unpacked config points at the copy
    assert Path(conf["normalize_conf"]["stats_file"]).is_relative_to(
        Path(exported["nb_asr"]["s2t_train_config"]).parents[2])
    summary = exported["nb_asr"]["summary"]
    assert summary["plain_espnet"] and (summary["encoder_expert"], summary["decoder_expert"]) == (0, 0)
    assert any("pad_speech: false" in c for c in summary["changes"])  # said, not hidden
    assert exported["wb_st"]["summary"]["encoder_expert"] == 1
    assert exported["wb_st"]["summary"]["decoder_expert"] == 1


def test_weights_are_the_routes_experts(exported, source):
    state = torch.load(source["model_file"], map_location="cpu")
    for name, e_enc, e_dec in (("nb_asr", 0, 0), ("wb_st", 1, 1)):
        out = torch.load(exported[name]["s2t_model_file"], map_location="cpu")
        for part, e in (("encoder.encoders.1.feed_forward_macaron", e_enc), ("decoder.decoders.0.feed_forward", e_dec)):
            assert torch.equal(out[f"{part}.w_1.weight"], state[f"{part}.w_1"][e])
            assert torch.equal(out[f"{part}.w_2.bias"], state[f"{part}.b_2"][e])
        assert torch.equal(out["decoder.output_layer.weight"], state["decoder.output_layer.weight"])


def test_parameter_count_equals_hard_sharing(exported, source, token_list):
    """(c) the route is the size of the dense model of the same config."""
    conf = copy.deepcopy(source["conf"])
    conf["encoder"], conf["decoder"] = "conformer", "transformer"
    del conf["encoder_conf"]["routing"], conf["decoder_conf"]["routing"]
    conf["normalize_conf"] = {"stats_file": str(source["root"] / "data/feats_stats.npz")}
    args = SMoES2TTask.get_parser().parse_args(
        ["--output_dir", "x", "--token_list", str(source["root"] / "data/tokens.txt")]
    )
    vars(args).update(conf)
    dense = SMoES2TTask.build_model(args)
    n_dense = sum(p.numel() for p in dense.parameters())
    plain, _ = S2TTask.build_model_from_file(exported["nb_asr"]["s2t_train_config"],
                                             exported["nb_asr"]["s2t_model_file"], "cpu")
    assert sum(p.numel() for p in plain.parameters()) == n_dense == exported["nb_asr"]["summary"]["params"]
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in dense.state_dict().items()}
    assert exported["nb_asr"]["summary"]["source_params"] > n_dense


@pytest.mark.parametrize("name,bandwidth,task", [("nb_asr", "<nb>", "<asr>"), ("wb_st", "<wb>", "<st_fra>")])
def test_encoder_output_and_logits_match_the_route(exported, source, token_list, name, bandwidth, task):
    """(a) encoder output (and decoder logits) within 1e-5 on a batch of mixed lengths."""
    smoe, _ = SMoES2TTask.build_model_from_file(source["config"], source["model_file"], "cpu")
    plain, _ = S2TTask.build_model_from_file(exported[name]["s2t_train_config"],
                                             exported[name]["s2t_model_file"], "cpu")
    smoe.eval(), plain.eval()
    waves = random_speech(4, 0.3, 1.0, seed=5)
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    t = token_list.index
    with torch.no_grad():
        enc_s, lens_s = smoe.encode(speech, lengths, bandwidth=torch.full((4,), t(bandwidth)))
        enc_p, lens_p = plain.encode(speech, lengths)
        assert torch.equal(lens_s, lens_p)
        mask = (torch.arange(enc_s.size(1))[None, :] < lens_s[:, None]).unsqueeze(-1)
        enc_diff = ((enc_s - enc_p) * mask).abs().max().item()
        ys = torch.tensor([[t("<sos>"), t("<eng>"), t(task), t("<notimestamps>"), t("w3"), t("w7")]] * 4)
        ys_lens = torch.full((4,), 6)
        logits_s, _ = smoe.decoder(enc_s, lens_s, ys, ys_lens)
        logits_p, _ = plain.decoder(enc_p, lens_p, ys, ys_lens)
        other = {"<nb>": "<wb>", "<wb>": "<nb>"}[bandwidth]
        enc_other, _ = smoe.encode(speech, lengths, bandwidth=torch.full((4,), t(other)))
    print(f"{name}: encoder max abs diff {enc_diff:.3g}, logits {(logits_s - logits_p).abs().max().item():.3g}")
    assert enc_diff <= 1e-5
    assert (logits_s - logits_p).abs().max().item() <= 1e-5
    # the comparison can fail: the other bandwidth's experts give another output
    assert ((enc_other - enc_p) * mask).abs().max().item() > 1e-2


def test_beam_search_identical_to_smoe(exported, source, padded_source):
    """(b) ESPnet's Speech2Text on the export == ours on the S-MoE model, token for token.

    pad_speech false: ESPnet pads every input to speech_length, the S-MoE model
    decodes unpadded, so they agree on inputs of at least speech_length (both
    trim). A model trained with padding agrees at every length.
    """
    cases = [
        (source, exported["nb_asr"], "nb", "<asr>", random_speech(3, SPEECH_LENGTH, 1.6, seed=1)),
        (source, exported["wb_st"], "wb", "<st_fra>", random_speech(3, SPEECH_LENGTH, 1.6, seed=2)),
        (padded_source, exported["padded_nb_st"], "nb", "<st_fra>", random_speech(3, 0.3, SPEECH_LENGTH, seed=3)),
    ]
    for src, files, bw, task, inputs in cases:
        smoe = smoe_decoder(src, task_sym=task)
        plain = plain_decoder(files, task_sym=task)
        other_bw = {"nb": "wb", "wb": "nb"}[bw]
        differs = False
        for speech in inputs:
            ours = smoe(speech, task_sym=task, bandwidth_sym=bw)[0]
            theirs = plain(speech, task_sym=task)[0]
            print(f"{bw} {task}: {len(words(ours))} tokens {ours[2][:12]}")
            assert theirs[2] == ours[2]  # token ids
            assert len(words(ours)) >= 5  # a real hypothesis, not a prompt and <eos>
            differs |= smoe(speech, task_sym=task, bandwidth_sym=other_bw)[0][2] != ours[2]
        assert differs, "the other bandwidth's experts decode the same: the check could not fail"


def test_bandwidth_only_keeps_the_task_experts(exported, source):
    conf = yaml.safe_load(Path(exported["nb"]["s2t_train_config"]).read_text())
    assert (conf["encoder"], conf["decoder"], conf["model"], conf["preprocessor"]) == (
        "conformer", "smoe_transformer", "smoe", "smoe_s2t")
    assert "routing" not in conf["encoder_conf"] and conf["decoder_conf"]["routing"] == {"<asr>": 0, "<st_fra>": 1}
    assert conf["preprocessor_conf"]["pad_speech"] is False  # still decoded by espnet_smoe, unpadded
    smoe = smoe_decoder(source)
    routed = SMoESpeech2Text(exported["nb"]["s2t_train_config"], exported["nb"]["s2t_model_file"], **DECODE)
    for speech in random_speech(2, 0.4, 1.4, seed=4):
        for task in ("<asr>", "<st_fra>"):
            assert routed(speech, task_sym=task)[0][2] == smoe(speech, task_sym=task, bandwidth_sym="nb")[0][2]


def test_unknown_tokens_name_the_token_and_the_known_ones(source, tmp_path):
    with pytest.raises(RouteError, match=r"bandwidth token <swb> .*known bandwidth tokens: \['<nb>', '<wb>'\]"):
        export_main(["--model", str(source["zip"]), "--bandwidth", "swb", "--out", str(tmp_path / "x.zip")])
    with pytest.raises(RouteError, match=r"task token <st_deu> .*known task tokens: \['<asr>', '<st_fra>'\]"):
        export_main(["--config", str(source["config"]), "--model_file", str(source["model_file"]),
                     "--bandwidth", "nb", "--task", "st_deu", "--out", str(tmp_path / "x.zip")])
    with pytest.raises(SystemExit):
        export_main(["--model", str(source["zip"]), "--out", str(tmp_path / "x.zip")])  # no route given
    assert not (tmp_path / "x.zip").exists()


def test_clean_espnet_cli_decodes_the_export(exported, source, tmp_path):
    """espnet2.bin.s2t_inference --model_tag nb_asr.zip with espnet_smoe unimportable."""
    wav_scp = []
    inputs = random_speech(2, SPEECH_LENGTH, 1.5, seed=7)
    for i, speech in enumerate(inputs):
        path = tmp_path / f"utt{i}.wav"
        sf.write(path, speech.clamp(-1, 1).numpy(), FS, subtype="FLOAT")
        wav_scp.append(f"utt{i} {path}")
    (tmp_path / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    blocker = (
        "import sys\n"
        "class NoPlugin:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'espnet_smoe': raise ImportError('espnet_smoe is blocked')\n"
        "sys.meta_path.insert(0, NoPlugin())\n"
        "from espnet2.bin.s2t_inference import main\n"
        "main(sys.argv[1:])\n"
    )
    zip_path = Path(exported["nb_asr"]["summary"]["out"])
    cmd = [sys.executable, "-c", blocker, "--model_tag", str(zip_path), "--output_dir", str(tmp_path / "out"),
           "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound", "--ngpu", "0",
           "--beam_size", "3", "--ctc_weight", "0.3", "--maxlenratio", "0.0", "--lang_sym", "eng", "--task_sym", "asr"]
    # espnet_model_zoo unpacks a local zip under ~/.cache: keep it in tmp_path
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(line.split(" ", 1) for line in (tmp_path / "out/1best_recog/token_int").read_text().splitlines())
    smoe = smoe_decoder(source, task_sym="<asr>")
    for i, speech in enumerate(inputs):
        data, _ = sf.read(tmp_path / f"utt{i}.wav", dtype="float32")
        ours = smoe(torch.from_numpy(data), task_sym="<asr>", bandwidth_sym="nb")[0]
        assert got[f"utt{i}"] == " ".join(map(str, ours[2]))
        assert len(words(ours)) >= 5



def test_onnx_encoder_and_decoder_step_match_pytorch(source, tmp_path):
    """Stretch: the route's encoder and one decoder step under onnxruntime, other lengths than exported."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    export_main(["--model", str(source["zip"]), "--bandwidth", "wb", "--task", "st_fra",
                 "--out", str(tmp_path / "wb_st.zip"), "--onnx_dir", str(tmp_path / "onnx")])
    files = unpack(tmp_path / "wb_st.zip", tmp_path / "wb_st")
    plain, _ = S2TTask.build_model_from_file(files["s2t_train_config"], files["s2t_model_file"], "cpu")
    plain.eval()
    encoder = ort.InferenceSession(str(tmp_path / "onnx/encoder.onnx"))
    step = ort.InferenceSession(str(tmp_path / "onnx/decoder_step.onnx"))
    waves = random_speech(2, 0.4, 1.7, seed=9)  # a padded batch of two lengths
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, feats_lengths = plain._extract_feats(speech, torch.tensor([len(w) for w in waves]))
    with torch.no_grad():
        ref, ref_lengths = plain.encode(speech, torch.tensor([len(w) for w in waves]))
    enc, enc_lengths = encoder.run(None, {"feats": feats.numpy(), "feats_lengths": feats_lengths.numpy()})
    assert enc_lengths.tolist() == ref_lengths.tolist()
    enc_diff = max(np.abs(enc[b, :n] - ref[b, :n].numpy()).max() for b, n in enumerate(ref_lengths.tolist()))
    t = plain.token_list.index
    memory = ref[:1, : ref_lengths[0]]
    step_diff = 0.0
    prompt = [t("<sos>"), t("<eng>"), t("<st_fra>")]
    for ys in (prompt, prompt + [t("<notimestamps>"), 7, 9, 4]):
        ys = torch.tensor([ys, ys])
        with torch.no_grad():
            mask = torch.tril(torch.ones(ys.size(1), ys.size(1), dtype=torch.bool)).unsqueeze(0)
            want, _ = plain.decoder.forward_one_step(ys, mask, memory.expand(2, -1, -1))
        (got,) = step.run(None, {"ys": ys.numpy(), "memory": memory.expand(2, -1, -1).numpy()})
        step_diff = max(step_diff, np.abs(got - want.numpy()).max())
    print(f"onnx: encoder max abs diff {enc_diff:.3g}, decoder step {step_diff:.3g}")
    assert enc_diff <= 1e-4 and step_diff <= 1e-4
