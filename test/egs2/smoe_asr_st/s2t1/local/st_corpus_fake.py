"""Small MuST-C en-fr and Europarl-ST en->fr corpora in their real layouts, for the tests.

Audio is generated (white noise, so that a cut one sample off is seen; a few known-length
recordings), the texts are real-looking unicode sentences, and every skip reason of
``local.st_corpus`` occurs a known number of times (``MUSTC_SKIPS``, ``EUROPARL_SKIPS``).
Not a test module: the test files load it by path (``load_fake``).

Europarl-ST's audio is AAC in .m4a (encoded here with ffmpeg, which the reader needs too), except
one speech given as .wav, the converted form the reader also takes, whose cuts are compared
sample by sample.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

MAX_DUR = 2.0
MIN_DUR = 0.2

# ------------------------------------------------------------------------- MuST-C
# talk -> (recording seconds, sample rate); ted_7 is at 24 kHz to exercise the resampling
MUSTC_TALKS = {
    "train": {"ted_1": (6.0, 16000), "ted_7": (4.0, 24000), "ted_12": (5.0, 16000)},
    "dev": {"ted_21": (3.0, 16000)},
    "tst-COMMON": {"ted_31": (4.0, 16000)},
    "tst-HE": {"ted_41": (3.0, 16000)},
}
# set -> [(yaml line, en, fr)]; the offsets/durations are written as MuST-C does (6 decimals)
E = "- {{duration: {d:.6f}, offset: {o:.6f}, rel_id: {r}, speaker_id: spk.{s}, wav: {w}.wav}}"
MUSTC_LINES = {
    "train": [
        (E.format(d=1.25, o=0.5, r=0, s=1, w="ted_1"), "So I went to the café in Zürich.",
         "Alors je suis allé au café à Zurich."),
        (E.format(d=0.8, o=2.0, r=1, s=1, w="ted_1"), "It was naïve — really naïve.",
         "C'était naïf — vraiment naïf."),
        # an empty English line: empty_text
        (E.format(d=1.0, o=3.0, r=2, s=1, w="ted_1"), "", "(Rires)"),
        # an empty French line: the ASR utterance stays, its ST side is skipped
        (E.format(d=0.9, o=4.1, r=3, s=1, w="ted_1"), "Thank you.", ""),
        # too long
        (E.format(d=2.5, o=3.2, r=4, s=1, w="ted_1"), "This one goes on and on for far too long.",
         "Celle-ci dure bien trop longtemps."),
        # too short
        (E.format(d=0.1, o=5.5, r=5, s=1, w="ted_1"), "Oh.", "Oh."),
        # the 24 kHz talk, in the quoted form that goes through PyYAML
        ("- {duration: 1.5, offset: 0.25, speaker_id: 'spk.7', wav: 'ted_7.wav'}",
         "Resampled speech of talk seven, 東京 included.", "Parole rééchantillonnée, Tōkyō comprise."),
        # the same segment again: duplicate_segment
        ("- {duration: 1.5, offset: 0.25, speaker_id: 'spk.7', wav: 'ted_7.wav'}",
         "Resampled speech of talk seven again.", "Encore la parole."),
        # ends 0.05 s past the recording's end: cut at the end (4.0 s)
        (E.format(d=1.05, o=3.0, r=2, s=7, w="ted_7"), "The very end of it.", "La toute fin."),
        # a talk whose wav is missing
        (E.format(d=1.0, o=1.0, r=0, s=99, w="ted_99"), "Nobody recorded this.",
         "Personne n'a enregistré ceci."),
        (E.format(d=1.6, o=1.0, r=0, s=12, w="ted_12"), "Twelve is a number.", "Douze est un nombre."),
        # starts past the end of ted_12 (5 s)
        (E.format(d=1.0, o=5.5, r=1, s=12, w="ted_12"), "After the end.", "Après la fin."),
    ],
    "dev": [
        (E.format(d=1.0, o=0.5, r=0, s=21, w="ted_21"), "A development sentence.", "Une phrase de développement."),
        (E.format(d=1.2, o=1.6, r=1, s=21, w="ted_21"), "Another one, with “quotes”.",
         "Une autre, avec « guillemets »."),
    ],
    "tst-COMMON": [
        (E.format(d=1.0, o=0.3, r=0, s=31, w="ted_31"), "Test sentence number one.", "Phrase de test numéro un."),
        (E.format(d=1.4, o=1.5, r=1, s=31, w="ted_31"), "Œuvre and façade are French words.",
         "Œuvre et façade sont des mots français."),
        # a test segment without French: no_translation_test
        (E.format(d=0.7, o=3.0, r=2, s=31, w="ted_31"), "Untranslated test sentence.", ""),
    ],
    "tst-HE": [
        (E.format(d=1.1, o=0.4, r=0, s=41, w="ted_41"), "High effort test.", "Test à effort élevé."),
    ],
}
MUSTC_SKIPS = {
    "mustc_train": {"empty_text": 1, "too_long": 1, "too_short": 1, "duplicate_segment": 1, "missing_audio": 1,
                    "past_end": 1},
    "mustc_dev": {},
    "mustc_tst_common": {"no_translation_test": 1},
    "mustc_tst_he": {},
}
MUSTC_KEPT = {  # set -> ids of the kept utterances
    "mustc_train": ["ted_00001_0000500_0001750", "ted_00001_0002000_0002800", "ted_00001_0004100_0005000",
                    "ted_00007_0000250_0001750", "ted_00007_0003000_0004050", "ted_00012_0001000_0002600"],
    "mustc_dev": ["ted_00021_0000500_0001500", "ted_00021_0001600_0002800"],
    "mustc_tst_common": ["ted_00031_0000300_0001300", "ted_00031_0001500_0002900"],
    "mustc_tst_he": ["ted_00041_0000400_0001500"],
}
MUSTC_ASR_ONLY = {"ted_00001_0004100_0005000"}


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    """White noise at -12 dBFS, quantised to PCM16 (what a 16-bit file gives back exactly)."""
    x = np.random.default_rng(seed).uniform(-0.25, 0.25, int(round(seconds * rate)))
    return (np.round(x * 32768) / 32768).astype(np.float32)


def build_mustc(root: Path) -> Path:
    """``<root>/en-fr/data/<set>/{wav,txt}``; returns root (what MUSTC in db.sh names)."""
    seed = 0
    for name, lines in MUSTC_LINES.items():
        data = root / "en-fr" / "data" / name
        (data / "txt").mkdir(parents=True)
        (data / "wav").mkdir()
        for talk, (seconds, rate) in MUSTC_TALKS[name].items():
            seed += 1
            sf.write(data / "wav" / f"{talk}.wav", noise(seconds, rate, seed), rate, subtype="PCM_16")
        (data / "txt" / f"{name}.yaml").write_text("".join(y + "\n" for y, _, _ in lines), encoding="utf-8")
        (data / "txt" / f"{name}.en").write_text("".join(e + "\n" for _, e, _ in lines), encoding="utf-8")
        (data / "txt" / f"{name}.fr").write_text("".join(f + "\n" for _, _, f in lines), encoding="utf-8")
    return root


def mustc_source(root: Path, set_name: str, talk: str) -> tuple[np.ndarray, int]:
    data, rate = sf.read(root / "en-fr" / "data" / set_name / "wav" / f"{talk}.wav", dtype="float32")
    return data, rate


# ------------------------------------------------------------------------- Europarl-ST
# speech -> recording seconds; the .wav one is read with soundfile, "broken" is not AAC at all
EP_SPEECHES = {"en.20081117.22.1-063": 5.0, "en.20090114.13.3-143": 4.0, "en.20100505.7.3-021": 4.0,
               "en.20110118.18.3-331": 3.0, "en.20120912.4.3-077": 3.0}
EP_WAV = "en.20090114.13.3-143"
EP_BROKEN = "en.20100505.7.3-021"
EP_MISSING = "en.20121022.15.3-200"
EP_SPLITS = {  # split -> [(speech, start, end, en, fr)]
    "train": [
        ("en.20081117.22.1-063", 0.50, 1.70, "Madam President, I welcome this report.",
         "Madame la Présidente, je salue ce rapport."),
        ("en.20081117.22.1-063", 1.90, 3.25, "The Commission’s proposal is too weak.",
         "La proposition de la Commission est trop faible."),
        ("en.20081117.22.1-063", 3.40, 4.90, "", "Texte sans transcription."),
        ("en.20090114.13.3-143", 0.25, 1.75, "We need jobs in Europe.", "Nous avons besoin d'emplois en Europe."),
        ("en.20090114.13.3-143", 1.80, 3.95, "A segment that is much too long to keep.",
         "Un segment bien trop long pour être gardé."),
        ("en.20100505.7.3-021", 0.5, 1.5, "The audio of this speech is broken.", "L'audio est cassé."),
        ("en.20121022.15.3-200", 0.5, 1.5, "This speech has no audio file.", "Ce discours n'a pas d'audio."),
    ],
    "dev": [
        ("en.20110118.18.3-331", 0.30, 1.40, "Thank you, Mr President.", "Merci, Monsieur le Président."),
    ],
    "test": [
        ("en.20120912.4.3-077", 0.20, 1.20, "I voted in favour.", "J'ai voté pour."),
        ("en.20120912.4.3-077", 1.30, 2.80, "The Council must act now.", "Le Conseil doit agir maintenant."),
    ],
    # never read by default
    "train-noisy": [
        ("en.20081117.22.1-063", 0.5, 1.7, "Noisy alignment.", "Alignement bruité."),
    ],
}
EP_SPEAKERS = {"en.20081117.22.1-063": "Jane_DOE_96766", "en.20090114.13.3-143": "John_SMITH_4521",
               "en.20100505.7.3-021": "Ann_LEE_1200", "en.20110118.18.3-331": "Paul_MÜLLER_28160",
               "en.20120912.4.3-077": "Marie_DUPONT_1892", "en.20121022.15.3-200": "Bo_NILSSON_97030"}
EUROPARL_SKIPS = {
    "europarl_st_train": {"empty_text": 1, "too_long": 1, "unreadable_audio": 1, "missing_audio": 1},
    "europarl_st_dev": {},
    "europarl_st_test": {},
}
EUROPARL_KEPT = {
    "europarl_st_train": ["96766_en.20081117.22.1-063_0000500_0001700",
                          "96766_en.20081117.22.1-063_0001900_0003250",
                          "4521_en.20090114.13.3-143_0000250_0001750"],
    "europarl_st_dev": ["28160_en.20110118.18.3-331_0000300_0001400"],
    "europarl_st_test": ["1892_en.20120912.4.3-077_0000200_0001200", "1892_en.20120912.4.3-077_0001300_0002800"],
}


def require_ffmpeg() -> str:
    """ffmpeg's path; the Europarl-ST .m4a cannot be made or read without it.

    The test set-up installs Debian's ffmpeg when it is missing and this is root (as on CI);
    otherwise the tests fail, saying what to install.
    """
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")) and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ffmpeg"], check=False, **quiet)
    path = shutil.which("ffmpeg")
    assert path and shutil.which("ffprobe"), (
        "ffmpeg/ffprobe not found: Europarl-ST's .m4a audio needs them (apt-get install ffmpeg)")
    return path


def build_europarl_st(root: Path) -> Path:
    """``<root>/en/{audios,fr/<split>}``; returns root (what EUROPARL_ST in db.sh names)."""
    ffmpeg = require_ffmpeg()
    audios = root / "en" / "audios"
    audios.mkdir(parents=True)
    for i, (speech, seconds) in enumerate(sorted(EP_SPEECHES.items())):
        if speech == EP_BROKEN:
            (audios / f"{speech}.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A not really AAC")
        elif speech == EP_WAV:
            sf.write(audios / f"{speech}.wav", noise(seconds, 16000, 100 + i), 16000, subtype="PCM_16")
        else:  # 44.1 kHz stereo AAC, as the corpus ships
            tmp = audios / f"{speech}.tmp.wav"
            left, right = noise(seconds, 44100, 100 + i), noise(seconds, 44100, 200 + i)
            sf.write(tmp, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(tmp), "-c:a", "aac", "-b:a", "128k",
                            str(audios / f"{speech}.m4a")], check=True)
            tmp.unlink()
    for split, rows in EP_SPLITS.items():
        d = root / "en" / "fr" / split
        d.mkdir(parents=True)
        (d / "segments.lst").write_text("".join(f"{s} {a:.2f} {b:.2f}\n" for s, a, b, _, _ in rows))
        (d / "segments.en").write_text("".join(f"{e}\n" for *_, e, _ in rows), encoding="utf-8")
        (d / "segments.fr").write_text("".join(f"{f}\n" for *_, f in rows), encoding="utf-8")
        speeches = sorted({s for s, *_ in rows})
        (d / "speeches.lst").write_text("".join(f"{s}\n" for s in speeches))
        (d / "speakers.lst").write_text("".join(f"{EP_SPEAKERS[s]}\n" for s in speeches), encoding="utf-8")
    return root
