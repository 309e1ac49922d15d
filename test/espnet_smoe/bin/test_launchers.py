"""Train, decode and pack a tiny S-MoE model through ESPnet's binaries."""

import re
import sys

import pytest
import torch
import yaml

from espnet_smoe.smoe_feed_forward import SMoEFeedForward


def read_kaldi(path):
    rows = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        rows[key] = value
    return rows


def test_training_wrote_smoe_config_and_checkpoints(experiment, decode, run):
    exp = experiment["exp"]
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["encoder"] == "smoe_conformer" and conf["decoder"] == "smoe_transformer"
    assert conf["encoder_conf"]["routing"] == {"<nb>": 0, "<wb>": 1}
    assert (exp / "2epoch.pth").exists() and (exp / "valid.acc.best.pth").exists()
    state = torch.load(exp / "valid.acc.best.pth", map_location="cpu")
    w = state["encoder.encoders.0.feed_forward.w_1"]
    assert w.shape == (2, 64, 32)
    # both bandwidths were in every epoch, so the two experts moved apart
    assert not torch.equal(w[0], w[1])


def test_config_rebuilds_identical_model(experiment, decode, run):
    from espnet2.tasks.s2t import S2TTask

    import espnet_smoe  # noqa: F401

    exp = experiment["exp"]
    model, _ = S2TTask.build_model_from_file(exp / "config.yaml", exp / "valid.acc.best.pth", "cpu")
    state = torch.load(exp / "valid.acc.best.pth", map_location="cpu")
    assert set(model.state_dict()) == set(state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    n_blocks = sum(isinstance(m, SMoEFeedForward) for m in model.modules())
    assert n_blocks == 2 * 2 + 1  # two macaron FFNs per encoder block, one per decoder block


@pytest.mark.parametrize("task", ["asr", "st_fra"])
@pytest.mark.parametrize("bandwidth", ["nb", "wb"])
def test_decode_every_task_and_bandwidth(experiment, decode, run, task, bandwidth):
    out = decode(experiment, f"dec_{task}_{bandwidth}", "--task_sym", task, "--bandwidth_sym", bandwidth)
    keys = set(read_kaldi(experiment["data"] / "test/wav.scp"))
    tokens = read_kaldi(out / "1best_recog/token")
    assert set(tokens) == keys
    # ESPnet writes the score as "tensor(-54.6)"; a log-probability is < 0
    score = read_kaldi(out / "1best_recog/score")
    assert all(float(s.removeprefix("tensor(").rstrip(")")) < 0 for s in score.values())


def test_batched_beam_search_equals_single(experiment, decode, run):
    """Per-utterance bandwidth from the data file, batched search == one by one."""
    data = experiment["data"]
    bw_file = ["--data_path_and_name_and_type", f"{data / 'test/utt2bw'},bandwidth,text", "--task_sym", "st_fra"]
    single = decode(experiment, "dec_single", *bw_file, "--batch_size", "1")
    batched = decode(experiment, "dec_batched", *bw_file, "--batch_size", "4")
    s = read_kaldi(single / "1best_recog/token_int")
    b = read_kaldi(batched / "1best_recog/token_int")
    assert s == b
    # and the per-utterance file routes each utterance like --bandwidth_sym does
    nb_only = decode(experiment, "dec_nb_sym", "--task_sym", "st_fra", "--bandwidth_sym", "nb")
    nb_keys = [k for k, v in read_kaldi(data / "test/utt2bw").items() if v == "<nb>"]
    n = read_kaldi(nb_only / "1best_recog/token_int")
    assert {k: s[k] for k in nb_keys} == {k: n[k] for k in nb_keys}


def test_pack_and_decode_from_zip(experiment, decode, run):
    exp, root = experiment["exp"], experiment["root"]
    zip_path = root / "packed.zip"
    run([sys.executable, "-m", "espnet2.bin.pack", "s2t", "--s2t_train_config", str(exp / "config.yaml"),
         "--s2t_model_file", str(exp / "valid.acc.best.pth"), "--option", str(root / "bpe.model"),
         "--option", str(root / "stats/train/feats_stats.npz"), "--outpath", str(zip_path)], root, "pack")
    from_zip = decode(experiment, "dec_zip", "--task_sym", "asr", "--bandwidth_sym", "wb",
                      model_args=["--model_tag", str(zip_path)])
    direct = decode(experiment, "dec_direct", "--task_sym", "asr", "--bandwidth_sym", "wb")
    assert read_kaldi(from_zip / "1best_recog/token_int") == read_kaldi(direct / "1best_recog/token_int")


def test_missing_bandwidth_is_a_clear_error(experiment, decode, run):
    with pytest.raises(AssertionError, match=r"routes its encoder by bandwidth \['<nb>', '<wb>'\]"):
        decode(experiment, "dec_no_bw", "--task_sym", "asr")


def test_two_process_cpu_ddp_training(experiment, run, common_args):
    """torchrun + gloo: both ranks train an epoch with stacked experts and exit 0."""
    import yaml as _yaml

    root, data = experiment["root"], experiment["data"]
    conf = _yaml.safe_load(experiment["config"].read_text())
    conf["max_epoch"] = 1
    config = root / "train_ddp.yaml"
    config.write_text(_yaml.safe_dump(conf))
    out = root / "exp_ddp"
    args = common_args(root, data)
    log = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "espnet_smoe.bin.s2t_train", "--config", str(config), *args,
               "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
               "--train_shape_file", str(root / "stats/train/speech_shape"),
               "--valid_shape_file", str(root / "stats/valid/speech_shape"),
               "--dist_backend", "gloo", "--output_dir", str(out)], root, "train_ddp")
    text = log.read_text()
    # ESPnet prefixes rank 0's lines with [host:0/2]: a world of two processes; gloo's
    # init_process_group returns only once both ranks joined, and torchrun exits 0 only
    # when both ranks did
    assert re.search(r"^\[[^\]:]+:0/2\] .*INFO: 1epoch results", text, re.M), text[-2000:]
    assert (out / "1epoch.pth").exists()
    state = torch.load(out / "1epoch.pth", map_location="cpu")
    assert state["decoder.decoders.0.feed_forward.w_1"].shape[0] == 2


def test_python_api_equals_cli(experiment, decode):
    """SMoESpeech2Text(task_sym=..., bandwidth_sym=...) gives the CLI's hypotheses."""
    import soundfile as sf

    from espnet_smoe.inference import SMoESpeech2Text

    exp, data = experiment["exp"], experiment["data"]
    cli = decode(experiment, "dec_api_ref", "--task_sym", "st_fra", "--bandwidth_sym", "nb")
    cli_wb = decode(experiment, "dec_api_ref_wb", "--task_sym", "asr", "--bandwidth_sym", "wb")
    s2t = SMoESpeech2Text(exp / "config.yaml", exp / "valid.acc.best.pth", beam_size=2,
                          maxlenratio=0.3, lang_sym="<eng>")
    expected = read_kaldi(cli / "1best_recog/token_int")
    expected_wb = read_kaldi(cli_wb / "1best_recog/token_int")
    for utt, path in read_kaldi(data / "test/wav.scp").items():
        speech, _ = sf.read(path, dtype="float32")
        best = s2t(speech, task_sym="<st_fra>", bandwidth_sym="nb")[0]
        assert " ".join(map(str, best[2])) == expected[utt]
        # a bandwidth token string given as `bandwidth` routes like the CLI's --bandwidth_sym wb
        best_wb = s2t(speech, task_sym="<asr>", bandwidth="<wb>")[0]
        assert " ".join(map(str, best_wb[2])) == expected_wb[utt]
    with pytest.raises(ValueError, match="give bandwidth_sym"):
        s2t(speech, task_sym="<asr>")


def test_auto_bandwidth_detects_each_utterance_like_the_data_file(experiment, decode):
    """--bandwidth_sym auto: every test utterance gets its utt2bw token, and decodes as with the file."""
    import soundfile as sf

    from espnet_smoe.inference import SMoESpeech2Text

    exp, data = experiment["exp"], experiment["data"]
    utt2bw = read_kaldi(data / "test/utt2bw")
    s2t = SMoESpeech2Text(exp / "config.yaml", exp / "valid.acc.best.pth", beam_size=2, maxlenratio=0.3,
                          lang_sym="<eng>", bandwidth_sym="auto")
    waves = {utt: sf.read(path, dtype="float32")[0] for utt, path in read_kaldi(data / "test/wav.scp").items()}
    assert {utt: f"<{bw}>" for utt, bw in zip(waves, s2t.detect_bandwidths(list(waves.values())))} == utt2bw
    ids = s2t._bandwidth_ids(len(waves), None, None, list(waves.values()))
    assert [s2t.converter.token2id[utt2bw[u]] for u in waves] == ids.tolist()

    by_file = decode(experiment, "dec_bw_file", "--task_sym", "asr",
                     "--data_path_and_name_and_type", f"{data / 'test/utt2bw'},bandwidth,text")
    auto = decode(experiment, "dec_bw_auto", "--task_sym", "asr", "--bandwidth_sym", "auto", "--batch_size", "3")
    assert read_kaldi(auto / "1best_recog/token_int") == read_kaldi(by_file / "1best_recog/token_int")


def test_task_runs_split_outputs_and_keep_ctc_to_its_tasks():
    from espnet_smoe.bin.s2t_inference import get_parser, task_runs

    assert task_runs("out", ["asr"], ["asr"], 0.3) == [("asr", "out", 0.3)]
    assert task_runs("out", ["<asr>", "st_fra"], ["asr"], 0.3) == [
        ("asr", "out/asr", 0.3), ("st_fra", "out/st_fra", 0.0)]
    assert task_runs("out", ["st_fra"], ["asr", "st_fra"], 0.5) == [("st_fra", "out", 0.5)]
    with pytest.raises(ValueError, match="twice"):
        task_runs("out", ["asr", "<asr>"], ["asr"], 0.3)
    args = get_parser().parse_args(["--output_dir", "o", "--data_path_and_name_and_type", "a,speech,sound",
                                    "--task_sym", "asr", "st_fra"])
    assert args.task_sym == ["asr", "st_fra"] and args.ctc_tasks == ["asr"]


def test_no_repeat_ngram_size_reaches_the_search(experiment, decode):
    """--no_repeat_ngram_size joins ESPnet's search as a scorer; hypotheses that repeat nothing stay as they were.

    The behaviour on loops is tested in test_no_repeat_ngram.py, inside ESPnet's beam search."""
    import soundfile as sf

    from espnet_smoe.inference import SMoESpeech2Text
    from espnet_smoe.no_repeat_ngram import NoRepeatNgramScorer

    args = ["--task_sym", "st_fra", "--bandwidth_sym", "nb"]
    free_dir, limited_dir = decode(experiment, "dec_free", *args), decode(
        experiment, "dec_no_repeat", *args, "--no_repeat_ngram_size", "2")
    free = read_kaldi(free_dir / "1best_recog/token_int")
    limited = read_kaldi(limited_dir / "1best_recog/token_int")
    log = experiment["root"] / "dec_no_repeat.log"
    assert "no_repeat_ngram_size 2: scorer no_repeat_ngram added" in log.read_text()
    assert "scorer no_repeat_ngram" not in (experiment["root"] / "dec_free.log").read_text()

    def repeats(ids: list) -> bool:
        pairs = list(zip(ids, ids[1:]))
        return len(pairs) != len(set(pairs))

    assert limited.keys() == free.keys()
    assert all(limited[k] == v for k, v in free.items() if not repeats(v.split())), (free, limited)
    assert not any(repeats(v.split()) for v in limited.values()), limited

    exp, data = experiment["exp"], experiment["data"]
    s2t = SMoESpeech2Text(exp / "config.yaml", exp / "valid.acc.best.pth", beam_size=2, maxlenratio=0.3,
                          lang_sym="<eng>", no_repeat_ngram_size=2)
    scorer = s2t.beam_search.full_scorers["no_repeat_ngram"]
    assert isinstance(scorer, NoRepeatNgramScorer) and scorer.ngram_size == 2
    assert s2t.beam_search.weights["no_repeat_ngram"] == 1.0
    for utt, path in read_kaldi(data / "test/wav.scp").items():
        best = s2t(sf.read(path, dtype="float32")[0], task_sym="<st_fra>", bandwidth_sym="nb")[0]
        assert " ".join(map(str, best[2])) == limited[utt]
    with pytest.raises(ValueError, match="no_repeat_ngram_size must be >= 0"):
        SMoESpeech2Text(exp / "config.yaml", exp / "valid.acc.best.pth", no_repeat_ngram_size=-1)
