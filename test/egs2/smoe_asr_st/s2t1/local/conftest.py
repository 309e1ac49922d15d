"""Shared set-up for the tests of egs2/smoe_asr_st/s2t1/local/.

Tests import the recipe's modules as ``from local import score`` (pytest.ini puts
the recipe dir on ``sys.path``, as ``python -m local.<module>`` does from it).
Fixtures for the data-preparation tests (stages 1-3 and 5): a tiny fake Asterisk
   core-sounds corpus synthesised in a temp dir: 8 kHz PCM16 .wav files and
   G.722 files encoded from the 16 kHz version of the same signal (sample-exact
   pairs, like the real packages), and transcripts in the real ``name: text``
   format with annotations, empty entries, entries without audio, audio without
   entries and corrupt files.  No real audio is used.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf

RECIPE_DIR = Path(__file__).resolve().parents[5] / "egs2" / "smoe_asr_st" / "s2t1"

SOUNDS_SUBDIR = Path("usr/share/asterisk/sounds/en_US_f_Allison")
EN_DOC = Path("usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
FR_DOC = Path("usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz")

EN_TRANSCRIPT = """; Core Asterisk Sounds in English

vm-tocallback: press 2 to call the person who sent this message
vm-goodbye: Goodbye!
vm-intro: Please leave your message after the tone.  When done hang up. (simple tone sound plays)
conf-locked: The conference is locked.
conf-muted: You are now muted.
agent-pass: Please enter your password followed by the pound key.
agent-user: Agent login.
auth-thankyou: Thank you.
privacy-thankyou: Thank you.
queue-hold: Please hold.
queue-seconds: Seconds.
tt-weasels: Weasels have eaten our phone system
hello-world: Hello world.
call-waiting: Call waiting.
pbx-transfer: Transfer.
spy-sip: SIP
spy-iax2: IAX (note: does not say "2")
dir-welcome: Welcome to the directory.
beep: [this is a simple beep tone]
digits/1: one
digits/2: two
letters/a: a
letters/dot: dot [.]
phonetic/a_p: alpha
silence/1: (1 second of silence)
missing-audio: This entry has no audio.
corrupt-wav: This wav file is corrupt.
corrupt-g722: This g722 file is empty.
long-prompt: A prompt that is too long.
short-prompt: Hi.
"""

FR_TRANSCRIPT = """; Core Asterisk Sounds in French

vm-tocallback: pour joindre la personne qui a envoyé ce message, appuyez sur 2
vm-goodbye: Au revoir!
vm-intro: Laissez votre message après le bip. (ne m'appelez plus) Merci.
conf-locked: La conférence est verrouillée.
conf-muted: Vous êtes en sourdine.
agent-pass: Composez votre mot de passe suivi du dièse.
auth-thankyou: Merci.
privacy-thankyou: Merci.
queue-hold: Veuillez patienter.
queue-seconds: secondes
tt-weasels: Des belettes ont mangé notre système téléphonique
hello-world: Bonjour le monde.
call-waiting: Appel en attente.
pbx-transfer: Transfert.
spy-sip: SIP
spy-iax2: IAX
dir-welcome:
beep: (beep)
digits/1: un
digits/2: deux
letters/a: a
letters/dot: point
phonetic/a_p: alpha
fr-only: seulement en français
long-prompt: Une invite trop longue.
short-prompt: Salut.
"""

# prompts with audio; durations in seconds (16 kHz sample counts are even)
AUDIO_DURATIONS: Dict[str, float] = {
    "vm-tocallback": 0.8, "vm-goodbye": 0.4, "vm-intro": 0.9, "conf-locked": 0.5,
    "conf-muted": 0.5, "agent-pass": 0.7, "agent-user": 0.4, "auth-thankyou": 0.3,
    "privacy-thankyou": 0.3, "queue-hold": 0.4, "queue-seconds": 0.3, "tt-weasels": 0.6,
    "hello-world": 0.4, "call-waiting": 0.4, "pbx-transfer": 0.3, "spy-sip": 0.3,
    "spy-iax2": 0.3, "dir-welcome": 0.5, "beep": 0.3, "digits/1": 0.3, "digits/2": 0.3,
    "letters/a": 0.3, "letters/dot": 0.3, "phonetic/a_p": 0.3, "silence/1": 0.5,
    "corrupt-wav": 0.4, "corrupt-g722": 0.4, "long-prompt": 3.0, "short-prompt": 0.1,
    "orphan-audio": 0.4,  # audio without a transcript entry
}
MAX_DUR = 2.5  # long-prompt (3.0 s) is over it
MIN_DUR = 0.2  # short-prompt (0.1 s) is under it

# expected stage-3 outcome for the prompts that are skipped as a whole
EXPECTED_PROMPT_SKIPS = {
    "silence/1": "silence",
    "orphan-audio": "audio_without_transcript",
    "fr-only": "translation_only",
    "missing-audio": "missing_audio",
    "corrupt-wav": "corrupt_audio",
    "corrupt-g722": "corrupt_audio",
    "beep": "empty_text",
    "long-prompt": "too_long",
    "short-prompt": "too_short",
}
NO_FRENCH = {"agent-user", "dir-welcome"}  # no entry / empty French text


def synth_wideband(duration: float, seed: int) -> np.ndarray:
    """16 kHz test signal with energy below and above 4 kHz (float, |x| < 0.6)."""
    n = int(round(duration * 16000))
    n -= n % 2
    t = np.arange(n) / 16000.0
    rng = np.random.default_rng(seed)
    x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
            for a, f in ((0.15, 440.0), (0.12, 1500.0), (0.1, 5000.0), (0.08, 6500.0)))
    return (x + 0.02 * rng.standard_normal(n)).astype(np.float32)


def write_prompt_audio(sounds: Path, name: str, duration: float, seed: int) -> None:
    import G722
    import torch
    import torchaudio.functional as taf

    wide = synth_wideband(duration, seed)
    pcm16 = np.round(wide * 32767).astype(np.int16)
    narrow = taf.resample(torch.from_numpy(wide), 16000, 8000).numpy()
    pcm8 = np.round(np.clip(narrow, -1, 1) * 32767).astype(np.int16)
    assert pcm8.size * 2 == pcm16.size
    wav = sounds / f"{name}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav), pcm8, 8000, subtype="PCM_16")
    (sounds / f"{name}.g722").write_bytes(G722.G722(16000, 64000).encode(pcm16))


def build_fake_tree(root: Path) -> Path:
    """Debian-like unpacked tree (what the four .debs hold) under root; returns root."""
    sounds = root / SOUNDS_SUBDIR
    for i, (name, duration) in enumerate(sorted(AUDIO_DURATIONS.items())):
        write_prompt_audio(sounds, name, duration, seed=i)
    (sounds / "corrupt-wav.wav").write_bytes(b"RIFF\x00\x00garbage, not a wav file")
    (sounds / "corrupt-g722.g722").write_bytes(b"")
    for path, text in ((EN_DOC, EN_TRANSCRIPT), (FR_DOC, FR_TRANSCRIPT)):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(gzip.compress(text.encode("utf-8")))
    return root


def build_debs(tree: Path, out: Path) -> Path:
    """Pack the fake tree into the four Debian packages with dpkg-deb --build."""
    out.mkdir(parents=True, exist_ok=True)
    contents = {
        "asterisk-core-sounds-en": lambda p: p.name.endswith(".txt.gz") and "-en" in str(p),
        "asterisk-core-sounds-en-wav": lambda p: p.suffix == ".wav",
        "asterisk-core-sounds-en-g722": lambda p: p.suffix == ".g722",
        "asterisk-core-sounds-fr": lambda p: p.name.endswith(".txt.gz") and "-fr" in str(p),
    }
    files = [p for p in tree.rglob("*") if p.is_file()]
    for pkg, keep in contents.items():
        stage = out / f"stage-{pkg}"
        (stage / "DEBIAN").mkdir(parents=True)
        (stage / "DEBIAN" / "control").write_text(
            f"Package: {pkg}\nVersion: 1.6.1-1\nArchitecture: all\n"
            "Maintainer: Test <test@example.org>\nDescription: fake test package\n"
        )
        for f in files:
            if keep(f):
                dst = stage / f.relative_to(tree)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage),
                        str(out / f"{pkg}_1.6.1-1_all.deb")], check=True, capture_output=True)
        shutil.rmtree(stage)
    return out


def build_tarballs(tree: Path, out: Path, version: str = "1.6.1") -> Path:
    """Upstream-style flat tarballs (files at the top, transcript as plain .txt)."""
    sounds = tree / SOUNDS_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    en_txt = gzip.decompress((tree / EN_DOC).read_bytes())
    fr_txt = gzip.decompress((tree / FR_DOC).read_bytes())
    staging = out / "staging"
    staging.mkdir()
    (staging / "core-sounds-en.txt").write_bytes(en_txt)
    (staging / "core-sounds-fr.txt").write_bytes(fr_txt)
    for part, ext, txt in (("en-wav", ".wav", "core-sounds-en.txt"),
                           ("en-g722", ".g722", "core-sounds-en.txt"),
                           ("fr-wav", ".wav", "core-sounds-fr.txt")):
        with tarfile.open(out / f"asterisk-core-sounds-{part}-{version}.tar.gz", "w:gz") as tar:
            tar.add(staging / txt, arcname=txt)
            if part.startswith("en"):
                for f in sorted(sounds.rglob(f"*{ext}")):
                    tar.add(f, arcname=f.relative_to(sounds).as_posix())
            else:  # a French recording, never used
                tar.add(sounds / "vm-goodbye.wav", arcname="vm-goodbye.wav")
    shutil.rmtree(staging)
    return out


@pytest.fixture(scope="session")
def fake_tree(tmp_path_factory) -> Path:
    return build_fake_tree(tmp_path_factory.mktemp("asterisk_tree"))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, fake_tree) -> Dict[str, Path]:
    """Stages 1-3 run once on the fake tree (absolute paths everywhere)."""
    from local import fetch_asterisk, make_bandwidth, split_data

    work = tmp_path_factory.mktemp("recipe")
    paths = {
        "work": work,
        "tree": fake_tree,
        "asterisk": work / "data/local/asterisk",
        "inventory": work / "data/local/asterisk/prompts.tsv",
        "bandwidth_dir": work / "data/local/bandwidth",
        "bandwidth": work / "data/local/bandwidth/bandwidth.tsv",
        "data": work / "data",
        "local": work / "data/local",
    }
    assert fetch_asterisk.main(["--db", str(fake_tree), "--download_dir", str(work / "downloads"),
                                "--out_dir", str(paths["asterisk"])]) == 0
    assert make_bandwidth.main(["--inventory", str(paths["inventory"]),
                                "--out_dir", str(paths["bandwidth_dir"])]) == 0
    assert split_data.main(["--inventory", str(paths["inventory"]), "--bandwidth", str(paths["bandwidth"]),
                            "--data_dir", str(paths["data"]), "--local_dir", str(paths["local"]),
                            "--min_dur", str(MIN_DUR), "--max_dur", str(MAX_DUR)]) == 0
    return paths


@pytest.fixture(scope="session")
def fake():
    """This module: the fake corpus spec and builders (test modules cannot import conftest)."""
    return sys.modules[__name__]
