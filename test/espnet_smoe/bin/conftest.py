"""A tiny S-MoE experiment on real speech, run through the launchers once per session.

The espnet wheel ships 7 AN4 utterances (16 kHz .sph). Each becomes a
wideband and a narrowband (8 kHz round trip) version and an ASR and an "ST"
sample (the ST target is the transcript's words reversed: enough to train the
mechanics of a second task). Stats, training and decoding run through
``python -m espnet_smoe.bin.*`` exactly as the recipe calls them.
"""

import subprocess
import sys
import tarfile
from pathlib import Path

import espnet2
import pytest
import sentencepiece as spm
import soundfile as sf
import torch
import torchaudio.functional as AF
import yaml

REPO = Path(__file__).resolve().parents[3]
TINY_CONFIG = REPO / "egs2/smoe_asr_st/s2t1/conf/tuning/train_smoe_encdec_tiny.yaml"
GUIDING = ["<asr>", "<st_fra>", "<nb>", "<wb>"]
S2T_SPECIALS = ["<na>", "<notimestamps>", "<eng>"] + [f"<{i * 0.02:.2f}>" for i in range(1501)]


def _run(args, cwd, log_name, env=None):
    """Run a command, keep its log, and show the log's end if it fails."""
    log = Path(cwd) / f"{log_name}.log"
    with open(log, "w") as f:
        proc = subprocess.run(args, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log.read_text()[-4000:]
        raise AssertionError(f"{' '.join(map(str, args[:4]))} ... failed ({proc.returncode}):\n{tail}")
    return log


def write_kaldi(path: Path, rows):
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())))


def make_dataset(root: Path):
    tarball = Path(espnet2.__file__).parents[1] / "egs3/mini_an4/esp2_asr/downloads.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    an4 = root / "downloads/an4"
    transcripts = {}
    for split in ("train", "test"):
        for line in (an4 / f"etc/an4_{split}.transcription").read_text().splitlines():
            words, utt = line.rsplit("(", 1)
            transcripts[utt.rstrip(")").strip()] = words.replace("<s>", "").replace("</s>", "").strip().lower()
    wav_dir = root / "wav"
    wav_dir.mkdir()
    utts = {}
    for sph in sorted(an4.glob("wav/*/*/*.sph")):
        if sph.stem not in transcripts:
            continue  # the archive holds one clip with no transcript
        audio, fs = sf.read(sph, dtype="float32")
        assert fs == 16000, (sph, fs)
        wide = torch.from_numpy(audio)
        narrow = AF.resample(AF.resample(wide, 16000, 8000), 8000, 16000)
        for bw, wave in (("wb", wide), ("nb", narrow)):
            base = f"an4_{bw}_{sph.stem}"
            sf.write(wav_dir / f"{base}.wav", wave.numpy(), 16000, subtype="PCM_16")
            utts[base] = (bw, transcripts[sph.stem], "an4test" in str(sph))
    data = root / "data"
    for split in ("train", "test"):
        d = data / split
        d.mkdir(parents=True)
        rows = {k: v for k, v in utts.items() if split == "train" or v[2]}
        files = {n: {} for n in ("wav.scp", "text", "text.ctc", "text.prev", "utt2bw", "utt2spk")}
        for base, (bw, words, _) in rows.items():
            translation = " ".join(reversed(words.split()))
            for task, target in (("asr", words), ("st_fra", translation)):
                utt = f"{base}_{task}" if split == "train" else base
                files["wav.scp"][utt] = str(wav_dir / f"{base}.wav")
                files["text"][utt] = f"<eng><{task}><notimestamps> {target}"
                files["text.ctc"][utt] = words
                files["text.prev"][utt] = "<na>"
                files["utt2bw"][utt] = f"<{bw}>"
                files["utt2spk"][utt] = utt
                if split == "test":
                    break
        for name, content in files.items():
            write_kaldi(d / name, content)
    # token list in ESPnet's S2T order
    corpus = root / "spm_input.txt"
    corpus.write_text("".join(f"{w}\n{' '.join(reversed(w.split()))}\n" for _, w, _ in utts.values()))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "bpe"), vocab_size=len(GUIDING) + len(S2T_SPECIALS) + 60,
        model_type="unigram", character_coverage=1.0, user_defined_symbols=GUIDING + S2T_SPECIALS,
        hard_vocab_limit=False, bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(root / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = ["<blank>", "<unk>"] + [p for p in pieces if p != "<unk>"] + ["<sos>", "<eos>", "<sop>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return data


def tiny_config(root: Path) -> Path:
    """The recipe's tiny config, shrunk further so a test trains in seconds."""
    conf = yaml.safe_load(TINY_CONFIG.read_text())
    conf["encoder_conf"].update(output_size=32, attention_heads=2, linear_units=64, num_blocks=2, cnn_module_kernel=3)
    conf["decoder_conf"].update(attention_heads=2, linear_units=64, num_blocks=1)
    conf["frontend_conf"]["n_mels"] = 40
    conf["preprocessor_conf"]["speech_length"] = 4
    conf.update(max_epoch=2, batch_size=4, keep_nbest_models=1)
    conf["scheduler_conf"]["warmup_steps"] = 10
    conf["specaug"] = None
    path = root / "train_tiny.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def data_args(data: Path, split: str, flag: str):
    names = [("wav.scp", "speech", "sound"), ("text", "text", "text"), ("text.prev", "text_prev", "text"),
             ("text.ctc", "text_ctc", "text"), ("utt2bw", "bandwidth", "text")]
    out = []
    for fname, name, kind in names:
        out += [f"--{flag}", f"{data / split / fname},{name},{kind}"]
    return out


@pytest.fixture(scope="session")
def an4_data(tmp_path_factory):
    """The AN4 data set and the tiny config, without training: root holds data/, tokens.txt, bpe.model."""
    root = tmp_path_factory.mktemp("an4_data")
    return {"root": root, "data": make_dataset(root), "config": tiny_config(root)}


@pytest.fixture
def decode():
    return _decode


@pytest.fixture
def run():
    """The command runner, for tests that call other binaries."""
    return _run


def _common_args(root: Path, data: Path):
    return [
        "--use_preprocessor", "true", "--token_type", "bpe", "--bpemodel", str(root / "bpe.model"),
        "--token_list", str(root / "tokens.txt"), "--ngpu", "0", "--num_workers", "0",
        *data_args(data, "train", "train_data_path_and_name_and_type"),
        *data_args(data, "train", "valid_data_path_and_name_and_type"),
    ]


@pytest.fixture(scope="session")
def experiment(tmp_path_factory):
    """Collect stats and train the tiny model 2 epochs through the launcher."""
    root = tmp_path_factory.mktemp("an4_smoe")
    data = make_dataset(root)
    config = tiny_config(root)
    py = sys.executable
    _run([py, "-m", "espnet_smoe.bin.s2t_train", "--collect_stats", "true", "--config", str(config),
         "--normalize", "none", *_common_args(root, data), "--train_shape_file", str(data / "train/wav.scp"),
         "--valid_shape_file", str(data / "train/wav.scp"), "--output_dir", str(root / "stats")],
        root, "stats")
    exp = root / "exp"
    _run([py, "-m", "espnet_smoe.bin.s2t_train", "--config", str(config), *_common_args(root, data),
         "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
         "--train_shape_file", str(root / "stats/train/speech_shape"),
         "--valid_shape_file", str(root / "stats/valid/speech_shape"), "--output_dir", str(exp)],
        root, "train")
    return {"root": root, "data": data, "exp": exp, "config": config}


def _decode(experiment, out_name, *extra, model_args=None):
    exp, data, root = experiment["exp"], experiment["data"], experiment["root"]
    if model_args is None:
        model_args = ["--s2t_train_config", str(exp / "config.yaml"),
                      "--s2t_model_file", str(exp / "valid.acc.best.pth")]
    out = root / out_name
    _run([sys.executable, "-m", "espnet_smoe.bin.s2t_inference", *model_args, "--output_dir", str(out),
         "--data_path_and_name_and_type", f"{data / 'test/wav.scp'},speech,sound", "--ngpu", "0",
         "--beam_size", "2", "--maxlenratio", "0.3", "--lang_sym", "eng", *extra], root, out_name)
    return out


@pytest.fixture
def common_args():
    return _common_args
