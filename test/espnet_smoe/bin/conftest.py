"""A tiny S-MoE experiment on real speech, run through the launchers once per session.

The espnet wheel ships 7 AN4 utterances (16 kHz .sph). Each becomes a
wideband and a narrowband (8 kHz round trip) version and an ASR and an "ST"
sample (the ST target is the transcript's words reversed: enough to train the
mechanics of a second task). Stats, training and decoding run through
``python -m espnet_smoe.bin.*`` exactly as the recipe calls them.
"""

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Optional

import espnet2
import numpy as np
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


# the files of an S2T data dir that add_row fills
DATA_FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2bw", "utt2spk")


def add_row(files: dict, utt: str, wav: Path, bw: str, task: str, target: str, words: str) -> None:
    """One utterance of an S2T data dir: audio, prompt + target, CTC transcript, bandwidth, own speaker."""
    files["wav.scp"][utt] = str(wav)
    files["text"][utt] = f"<eng><{task}><notimestamps> {target}"
    files["text.ctc"][utt] = words
    files["text.prev"][utt] = "<na>"
    files["utt2bw"][utt] = f"<{bw}>"
    files["utt2spk"][utt] = utt


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
        files = {n: {} for n in DATA_FILES}
        for base, (bw, words, _) in rows.items():
            translation = " ".join(reversed(words.split()))
            for task, target in (("asr", words), ("st_fra", translation)):
                utt = f"{base}_{task}" if split == "train" else base
                add_row(files, utt, wav_dir / f"{base}.wav", bw, task, target, words)
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


# --- a model that decodes its prompts wherever a segmenter cuts them ---------------------------------------------
OVERFIT_TEST = REPO / "test/egs2/smoe_asr_st/s2t1/test_overfit.py"
PAUSE_NOISE = 3e-4  # std of the noise between prompts: about the AN4 clips' own floor (-70 dBFS)
MARGIN_VARIANTS = 2  # randomly re-cut copies of every clip, besides the clip itself
RECUT_EPOCHS = 25  # 275 steps of 8: the training loss has levelled off by then (0.1, from 60 at the start)


def overfit_helpers():
    """test_overfit.py as a module: its AN4 data, lexicon, config and runners (one source for both tests)."""
    spec = importlib.util.spec_from_file_location("_smoe_overfit_helpers", OVERFIT_TEST)
    if spec is None or not OVERFIT_TEST.is_file():
        raise FileNotFoundError(f"{OVERFIT_TEST}: the overfit test whose helpers the transcription tests use")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pause(rng: np.random.Generator, seconds: float, fs: int = 16000) -> np.ndarray:
    """Low noise, as between two sentences of a recording (digital zeros are rare in real audio)."""
    return (rng.standard_normal(int(seconds * fs)) * PAUSE_NOISE).astype(np.float32)


def speech_bounds(wave: np.ndarray, fs: int = 16000) -> tuple:
    """(first, last) sample of a clip's speech: 10 ms frames within 25 dB of the loudest."""
    hop = fs // 100
    frames = np.square(wave[: len(wave) // hop * hop]).reshape(-1, hop).mean(axis=1)
    db = 10 * np.log10(np.convolve(frames, np.ones(5) / 5, mode="same") + 1e-10)
    active = np.nonzero(db > db.max() - 25)[0]
    return int(active[0]) * hop, min(len(wave), (int(active[-1]) + 1) * hop)


def recut(wave: np.ndarray, rng: np.random.Generator, fs: int = 16000) -> np.ndarray:
    """The clip with a random share of its silent margins cut off and up to 0.5 s of pause added on each side.

    A segmenter's cut never matches the clip's own: trained on the clip alone, a tiny model learns
    its margins along with its words, and a segment cut 0.1 s later reads as another clip.
    """
    first, last = speech_bounds(wave, fs)
    lead = int(rng.uniform(0, max(0, first - 0.05 * fs)))
    tail = int(rng.uniform(0, max(0, len(wave) - last - 0.05 * fs)))
    core = wave[lead : len(wave) - tail]
    return np.concatenate([pause(rng, rng.uniform(0, 0.5), fs), core, pause(rng, rng.uniform(0, 0.5), fs)])


def write_recut_data(root: Path, helpers) -> tuple:
    """data/train: the 7 AN4 clips and MARGIN_VARIANTS re-cuts of each, x {nb, wb} x {asr, st_fra}.

    Returns:
        The data dir, and {clip: ((Samples,) 16 kHz wideband waveform, transcript)}.
    """
    rng = np.random.default_rng(7)
    clips = helpers.an4_utterances(root)
    wav_dir, train = root / "wav", root / "data/train"
    wav_dir.mkdir(exist_ok=True)  # SMOE_TEST_RECUT_MODEL may name a folder a stopped run left
    train.mkdir(parents=True, exist_ok=True)
    files = {name: {} for name in DATA_FILES}
    for clip, (wide, words) in clips.items():
        for variant in range(1 + MARGIN_VARIANTS):
            wave = wide.numpy() if variant == 0 else recut(wide.numpy(), rng)
            wave = torch.from_numpy(wave)
            narrow = AF.resample(AF.resample(wave, 16000, 8000), 8000, 16000)
            for bw, w in (("wb", wave), ("nb", narrow)):
                rec = f"{bw}_{clip}_v{variant}"
                sf.write(wav_dir / f"{rec}.wav", w.numpy(), 16000, subtype="PCM_16")
                for task, target in (("asr", words), ("st_fra", helpers.french(words))):
                    add_row(files, f"{rec}_{task}", wav_dir / f"{rec}.wav", bw, task, target, words)
    for name, rows in files.items():
        write_kaldi(train / name, rows)
    return root / "data", clips


def train_recut_model(root: Path) -> dict:
    """Train test_overfit's model on the re-cut data through the launchers, and pack it.

    Returns:
        ``packed`` (zip), ``config`` and ``model_file``, ``clips`` ({clip: (waveform, transcript)})
        and ``french`` (transcript -> its translation).
    """
    helpers = overfit_helpers()
    data, clips = write_recut_data(root, helpers)
    train, tokens, py = data / "train", root / "tokens", sys.executable
    helpers.run([py, "-m", "local.make_tokens", "--train_dir", train, "--vocab_size", "100", "--out_dir", tokens],
                root, "tokens")
    config = helpers.overfit_config(root)
    conf = yaml.safe_load(config.read_text())
    conf.update(batch_size=8, max_epoch=RECUT_EPOCHS)
    config.write_text(yaml.safe_dump(conf))
    common = ["--config", config, "--use_preprocessor", "true", "--token_type", "bpe",
              "--bpemodel", tokens / "bpe.model", "--token_list", tokens / "tokens.txt",
              "--ngpu", "0", "--num_workers", "0", *helpers.data_args(train, "train_data_path_and_name_and_type"),
              *helpers.data_args(train, "valid_data_path_and_name_and_type")]
    helpers.run([py, "-m", "espnet_smoe.bin.s2t_train", *common, "--collect_stats", "true", "--normalize", "none",
                 "--train_shape_file", train / "wav.scp", "--valid_shape_file", train / "wav.scp",
                 "--output_dir", root / "stats"], root, "stats")
    exp = root / "exp"
    helpers.run([py, "-m", "espnet_smoe.bin.s2t_train", *common,
                 "--normalize_conf", f"stats_file={root / 'stats/train/feats_stats.npz'}",
                 "--train_shape_file", root / "stats/train/speech_shape",
                 "--valid_shape_file", root / "stats/valid/speech_shape", "--output_dir", exp], root, "train")
    helpers.run([py, "-m", "espnet2.bin.pack", "s2t", "--s2t_train_config", exp / "config.yaml",
                 "--s2t_model_file", exp / "train.loss.best.pth", "--option", tokens / "bpe.model",
                 "--option", root / "stats/train/feats_stats.npz", "--outpath", exp / "packed.zip"], root, "pack")
    return {"packed": exp / "packed.zip", "config": exp / "config.yaml", "model_file": exp / "train.loss.best.pth",
            "clips": clips, "french": helpers.french}


@pytest.fixture(scope="session")
def recut_model(tmp_path_factory):
    """A tiny model that has memorised 7 AN4 utterances (both bandwidths, ASR and ST) however they are cut.

    ``SMOE_TEST_RECUT_MODEL=DIR``: train into DIR once and reuse it in later sessions (for working on the
    transcription tests; CI trains afresh).
    """
    keep = os.environ.get("SMOE_TEST_RECUT_MODEL")
    if keep and (Path(keep) / "exp/packed.zip").is_file():
        helpers = overfit_helpers()
        root = Path(keep)
        return {"packed": root / "exp/packed.zip", "config": root / "exp/config.yaml",
                "model_file": root / "exp/train.loss.best.pth",
                "clips": helpers.an4_utterances(tmp_path_factory.mktemp("an4")), "french": helpers.french}
    root = Path(keep) if keep else tmp_path_factory.mktemp("recut_model")
    root.mkdir(parents=True, exist_ok=True)
    return train_recut_model(root)


def build_long_recording(clips: dict, rounds: int = 5, seed: int = 11) -> tuple:
    """About two minutes of the clips with pauses, at 16 kHz, and where each clip lies.

    Each round holds every clip once, in a new order, 0.6-1.8 s apart. In every second round the
    four longest clips come first as one run: cut to their speech and 0.1 s apart, so that the
    VAD hears one stretch of speech longer than the model's window, which must be split between
    two clips rather than inside one.

    Returns:
        The (Samples,) waveform, and per placed clip ``{"clip", "words", "start", "end",
        "speech_start", "speech_end"}`` in seconds, in order.
    """
    rng = np.random.default_rng(seed)
    longest = set(sorted(clips, key=lambda k: -len(clips[k][0]))[:4])
    parts, placed, t = [], [], 0

    def put(wave: np.ndarray, clip: str, run: Optional[int] = None):
        nonlocal t
        first, last = speech_bounds(wave)
        placed.append({"clip": clip, "words": clips[clip][1], "start": t / 16000, "end": (t + len(wave)) / 16000,
                       "speech_start": (t + first) / 16000, "speech_end": (t + last) / 16000, "run": run})
        parts.append(wave)
        t += len(wave)

    def gap(seconds: float):
        nonlocal t
        parts.append(pause(rng, seconds))
        t += len(parts[-1])

    for r in range(rounds):
        order = [str(k) for k in rng.permutation(sorted(clips))]
        run = [k for k in order if k in longest] if r % 2 else []
        gap(rng.uniform(0.6, 1.8))
        for clip in run:
            wave = clips[clip][0].numpy()
            first, last = speech_bounds(wave)
            put(wave[max(0, first - 800) : last + 800], clip, run=r)
            gap(0.1)
        for clip in (k for k in order if k not in run):
            gap(rng.uniform(0.6, 1.8))
            put(clips[clip][0].numpy(), clip)
    gap(1.0)
    return np.concatenate(parts), placed


@pytest.fixture(scope="session")
def long_recordings(recut_model, tmp_path_factory):
    """The long recording as a 44.1 kHz stereo FLAC (wideband) and an 8 kHz mu-law WAV (telephone).

    Returns:
        ``{"wb": path, "nb": path, "placed": [...]}`` (see :func:`build_long_recording`).
    """
    root = tmp_path_factory.mktemp("long_recordings")
    wave, placed = build_long_recording(recut_model["clips"])
    x = torch.from_numpy(wave)
    wide = AF.resample(x, 16000, 44100).numpy()
    sf.write(root / "meeting_wb.flac", np.stack([wide, 0.7 * wide], axis=1), 44100, subtype="PCM_16")
    sf.write(root / "call_nb.wav", AF.resample(x, 16000, 8000).numpy(), 8000, subtype="ULAW")
    return {"wb": root / "meeting_wb.flac", "nb": root / "call_nb.wav", "placed": placed}
