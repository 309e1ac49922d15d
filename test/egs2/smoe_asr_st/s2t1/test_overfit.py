"""The pipeline can learn: a tiny model memorises a few utterances and gives them back.

Seven real AN4 utterances (the espnet wheel ships them), each in both
bandwidths (wideband and an 8 kHz round trip) and both tasks: ASR, and a
word-by-word French "translation" (a fixed lexicon, with accents and hyphens
so tokenisation of French is exercised). 28 training samples. The recipe's
token builder (stage 5) and the recipe's default config (shrunk, no dropout,
no SpecAugment) train through the launchers until the model must reproduce
its training set; then every sample is decoded in its task and bandwidth.

A model that has memorised its data gives it back only if tokenisation,
prompts, routing, loss masking, feature normalisation and decoding agree with
each other: a mismatch anywhere (a shifted prompt, the wrong expert at
inference, stats from other features, a dropped first token) breaks the
reproduction, which no unit test of one part sees.
"""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import espnet2
import jiwer
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
import yaml

from local.data_dir import add_recording, new_files, write_data_dir
from local.file_io import read_kaldi

REPO = Path(__file__).resolve().parents[4]
RECIPE = REPO / "egs2/smoe_asr_st/s2t1"
CONFIG = RECIPE / "conf/tuning/train_smoe_encdec_tiny.yaml"
LEXICON = {
    "eleven": "onze", "twenty": "vingt", "seven": "sept", "fifty": "cinquante", "october": "octobre",
    "four": "quatre", "nineteen": "dix-neuf", "seventy": "soixante-dix", "yes": "oui", "go": "allez",
    "march": "mars", "third": "troisième", "eight": "huit", "start": "démarrer", "seventeen": "dix-sept",
    "one": "un",
}
DATA_NAMES = [("wav.scp", "speech", "sound"), ("text", "text", "text"), ("text.prev", "text_prev", "text"),
              ("text.ctc", "text_ctc", "text"), ("utt2bw", "bandwidth", "text")]


def french(words: str) -> str:
    return " ".join(LEXICON[w] for w in words.split())


def an4_utterances(root: Path):
    """{id: (16 kHz waveform, lower-case transcript)} of every transcribed AN4 clip."""
    tarball = Path(espnet2.__file__).parents[1] / "egs3/mini_an4/esp2_asr/downloads.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    an4 = root / "downloads/an4"
    transcripts = {}
    for path in an4.glob("etc/an4_*.transcription"):
        for line in path.read_text().splitlines():
            words, utt = line.rsplit("(", 1)
            transcripts[utt.rstrip(")").strip()] = words.replace("<s>", "").replace("</s>", "").strip().lower()
    out = {}
    for sph in sorted(an4.glob("wav/*/*/*.sph")):
        if sph.stem in transcripts:  # one clip has no transcript
            audio, fs = sf.read(sph, dtype="float32")
            assert fs == 16000, (sph, fs)
            out[sph.stem] = (torch.from_numpy(audio), transcripts[sph.stem])
    assert len(out) == 7, sorted(out)
    return out


def write_data(root: Path) -> Path:
    """data/train: 7 clips x {nb, wb} x {asr, st_fra}, ids <bw>_<clip>_<task>;
    data/eval: the 14 recordings once each, ids <bw>_<clip>, with references text.asr and text.st_fra.

    Written by the recipe's own data-dir writer, so the rows are the ones the recipe trains on."""
    wav_dir, data = root / "wav", root / "data"
    wav_dir.mkdir()
    train, evaluate = new_files(), new_files()
    for clip, (wide, words) in an4_utterances(root).items():
        narrow = AF.resample(AF.resample(wide, 16000, 8000), 8000, 16000)
        for bw, wave in (("wb", wide), ("nb", narrow)):
            wav = wav_dir / f"{bw}_{clip}.wav"
            sf.write(wav, wave.numpy(), 16000, subtype="PCM_16")
            for files, test in ((train, False), (evaluate, True)):
                add_recording(files, f"{bw}_{clip}", str(wav), bw, words, french(words), test=test)
    assert write_data_dir(data / "train", train) == 28
    assert write_data_dir(data / "eval", evaluate) == 14
    return data


def run(args, cwd: Path, name: str) -> None:
    log = cwd / f"{name}.log"
    # the recipe's helpers are the package local/, run as python -m local.<module> from the recipe dir
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(RECIPE), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as f:
        proc = subprocess.run([str(a) for a in args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{log.read_text()[-4000:]}"


def overfit_config(root: Path) -> Path:
    """The default config, smaller and without regularisation, to memorise fast."""
    conf = yaml.safe_load(CONFIG.read_text())
    conf["encoder_conf"].update(output_size=64, attention_heads=2, linear_units=128, num_blocks=2,
                                dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0)
    conf["decoder_conf"].update(attention_heads=4, linear_units=128, num_blocks=2, dropout_rate=0.0,
                                positional_dropout_rate=0.0, self_attention_dropout_rate=0.0,
                                src_attention_dropout_rate=0.0)
    conf["model_conf"]["lsm_weight"] = 0.0
    conf["specaug"] = None
    conf.pop("num_iters_per_epoch", None)  # an epoch is one pass over the 28 samples
    conf["optim_conf"]["lr"] = 0.004
    conf["scheduler_conf"]["warmup_steps"] = 25
    # 420 steps; no per-epoch plots (they cost more than an epoch of this size)
    conf.update(max_epoch=60, batch_size=4, keep_nbest_models=1, best_model_criterion=[["train", "loss", "min"]],
                num_att_plot=0, use_matplotlib=False, use_tensorboard=False)
    path = root / "overfit.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def data_args(data: Path, flag: str):
    return [arg for fname, name, kind in DATA_NAMES for arg in (f"--{flag}", f"{data / fname},{name},{kind}")]


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """Train to memorisation through the launchers; decode every recording in both tasks."""
    root = tmp_path_factory.mktemp("overfit")
    data = write_data(root)
    train, tokens, py = data / "train", root / "tokens", sys.executable
    run([py, "-m", "local.make_tokens", "--train_dir", train, "--vocab_size", "100", "--out_dir", tokens],
        root, "tokens")
    common = ["--config", overfit_config(root), "--use_preprocessor", "true", "--token_type", "bpe",
              "--bpemodel", tokens / "bpe.model", "--token_list", tokens / "tokens.txt",
              "--ngpu", "0", "--num_workers", "0", *data_args(train, "train_data_path_and_name_and_type"),
              *data_args(train, "valid_data_path_and_name_and_type")]
    run([py, "-m", "espnet_smoe.bin.s2t_train", *common, "--collect_stats", "true", "--normalize", "none",
         "--train_shape_file", train / "wav.scp", "--valid_shape_file", train / "wav.scp",
         "--output_dir", root / "stats"], root, "stats")
    exp = root / "exp"
    run([py, "-m", "espnet_smoe.bin.s2t_train", *common,
         "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
         "--train_shape_file", root / "stats/train/speech_shape",
         "--valid_shape_file", root / "stats/valid/speech_shape", "--output_dir", exp], root, "train")
    # Both tasks in one process, in batches, as the recipe's stage 12 decodes.
    evaluate, out = data / "eval", root / "decode"
    run([py, "-m", "espnet_smoe.bin.s2t_inference", "--s2t_train_config", exp / "config.yaml",
         "--s2t_model_file", exp / "train.loss.best.pth", "--output_dir", out, "--ngpu", "0",
         "--data_path_and_name_and_type", f"{evaluate / 'wav.scp'},speech,sound",
         "--data_path_and_name_and_type", f"{evaluate / 'utt2bw'},bandwidth,text",
         "--batch_size", "5", "--beam_size", "3", "--ctc_weight", "0.3", "--lang_sym", "eng",
         "--task_sym", "asr", "st_fra"], root, "decode")
    hyps = {task: read_kaldi(out / task / "1best_recog/text_nospecial") for task in ("asr", "st_fra")}
    refs = {task: read_kaldi(evaluate / f"text.{task}") for task in ("asr", "st_fra")}
    return refs, hyps


def reference_pairs(memorised, task: str, bandwidth: str):
    """[(reference, hypothesis)] of the 7 recordings of one bandwidth, and their CER."""
    refs, hyps = memorised
    keys = sorted(k for k in refs[task] if k.startswith(f"{bandwidth}_"))
    assert len(keys) == 7 and set(keys) <= set(hyps[task]), sorted(set(keys) - set(hyps[task]))
    pairs = [(refs[task][k], hyps[task][k]) for k in keys]
    return pairs, jiwer.cer([r for r, _ in pairs], [h for _, h in pairs])


@pytest.mark.parametrize("bandwidth", ["nb", "wb"])
def test_asr_reproduces_the_training_transcripts(memorised, bandwidth):
    pairs, cer = reference_pairs(memorised, "asr", bandwidth)
    assert cer <= 0.05, (cer, pairs)


@pytest.mark.parametrize("bandwidth", ["nb", "wb"])
def test_st_reproduces_the_training_translations(memorised, bandwidth):
    pairs, cer = reference_pairs(memorised, "st_fra", bandwidth)
    exact = sum(r == h for r, h in pairs)
    assert exact >= 6 and cer <= 0.05, (exact, cer, pairs)
    # the task token, not the audio alone, chose the output language
    asr, _ = reference_pairs(memorised, "asr", bandwidth)
    assert all(h != h_asr for (_, h), (_, h_asr) in zip(pairs, asr)), (pairs, asr)
