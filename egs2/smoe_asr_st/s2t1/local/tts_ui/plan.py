"""Voices and the per-utterance plan (voice, prosody, room, noise, level, bandwidth) of tts_ui.

All random choices of the speech and channel stages are drawn here, once, from ``--seed``, and
written to ``<work_dir>/plan/<split>.jsonl``; the parallel stages only execute the plan, so the
corpus does not depend on ``--nj`` or on the order in which workers finish.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from local.file_io import read_tsv, write_lines
from local.tts_ui.common import SPLITS, utt_rng


@dataclass(frozen=True)
class Voice:
    voice_id: str      # speaker id (prefix of the utterance ids)
    engine: str        # "flite" or "espeak-ng"
    name: str          # flite -voice NAME / espeak-ng -v NAME
    f0: float = 0.0    # flite: mean F0 (Hz) that int_f0_target_mean scales; 0 = fixed
    test_only: bool = False


VOICES = (
    # flite 2.2 (16 kHz): kal16 diphone, awb/rms/slt clustergen; rms ignores int_f0_target_mean
    Voice("flite-kal16", "flite", "kal16", 95.0),
    Voice("flite-awb", "flite", "awb", 130.0),
    Voice("flite-slt", "flite", "slt", 174.0),
    Voice("flite-rms", "flite", "rms", 0.0, test_only=True),
    # espeak-ng 1.51 (22.05 kHz): accent + voice variant
    Voice("espeak-enus-m1", "espeak-ng", "en-us+m1"),
    Voice("espeak-enus-m3", "espeak-ng", "en-us+m3"),
    Voice("espeak-enus-f2", "espeak-ng", "en-us+f2"),
    Voice("espeak-en-m2", "espeak-ng", "en+m2"),
    Voice("espeak-en-f1", "espeak-ng", "en+f1"),
    Voice("espeak-engbxrp-m4", "espeak-ng", "en-gb-x-rp+m4"),
    Voice("espeak-engbscotland-f3", "espeak-ng", "en-gb-scotland+f3"),
    Voice("espeak-enus-m7", "espeak-ng", "en-us+m7", test_only=True),
    Voice("espeak-enus-f4", "espeak-ng", "en-us+f4", test_only=True),
    Voice("espeak-engbxrp-f5", "espeak-ng", "en-gb-x-rp+f5", test_only=True),
    Voice("espeak-en029-m5", "espeak-ng", "en-029+m5", test_only=True),
)
VOICE_BY_ID = {v.voice_id: v for v in VOICES}

# text split -> id tag, voices, channel output dirs
SPLIT_TAG = {"train": "train", "dev": "dev", "test": "test", "ddtp_test": "ddtp"}
TEST_SPLITS = ("test", "ddtp_test")


@dataclass
class PlanConfig:
    seed: int = 1
    flite_share: float = 0.7            # fraction of utterances from flite (rest espeak-ng)
    stretch: tuple[float, float] = (0.85, 1.2)   # flite duration_stretch
    f0_scale: tuple[float, float] = (0.85, 1.15)  # flite int_f0_target_mean factor
    rate: tuple[int, int] = (140, 200)  # espeak-ng -s (words per minute)
    pitch: tuple[int, int] = (30, 70)   # espeak-ng -p (0-99)
    nb_share: float = 0.5               # train/dev: fraction narrowband
    room_prob: float = 0.3
    noise_prob: float = 0.3
    babble_share: float = 0.5           # of noisy utterances: babble (rest coloured noise)
    snr: tuple[float, float] = (10.0, 30.0)
    level_db: tuple[float, float] = (-28.0, -18.0)  # active speech level, dBFS
    num_rooms: int = 200                # rooms per room bank (train+dev share one, tests another)
    rt60: tuple[float, float] = (0.15, 0.6)


def add_plan_arguments(parser) -> None:
    """The plan options (shared by prepare.py, synth.py and degrade.py)."""
    d = PlanConfig()
    g = parser.add_argument_group("plan (voices, prosody, channel)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--flite_share", type=float, default=d.flite_share, help="fraction of flite utterances")
    g.add_argument("--nb_share", type=float, default=d.nb_share, help="train/dev: fraction narrowband")
    g.add_argument("--room_prob", type=float, default=d.room_prob, help="fraction with a room response")
    g.add_argument("--noise_prob", type=float, default=d.noise_prob, help="fraction with added noise")
    g.add_argument("--babble_share", type=float, default=d.babble_share, help="of noisy ones: babble")
    g.add_argument("--snr", type=float, nargs=2, default=d.snr, metavar=("MIN", "MAX"), help="dB")
    g.add_argument("--num_rooms", type=int, default=d.num_rooms, help="rooms per room bank")


def plan_config_from_args(args) -> PlanConfig:
    return PlanConfig(seed=args.seed, flite_share=args.flite_share, nb_share=args.nb_share,
                      room_prob=args.room_prob, noise_prob=args.noise_prob, babble_share=args.babble_share,
                      snr=tuple(args.snr), num_rooms=args.num_rooms)


def room_bank(split: str) -> str:
    return "test" if split in TEST_SPLITS else "train"


def draw_rooms(bank: str, cfg: PlanConfig) -> list[dict]:
    """Shoebox rooms of one bank: dimensions, RT60, source and microphone positions."""
    rng = utt_rng(cfg.seed, "rooms", bank)
    rooms = []
    for i in range(cfg.num_rooms):
        dims = [float(rng.uniform(3.0, 9.0)), float(rng.uniform(2.5, 7.0)), float(rng.uniform(2.4, 3.5))]
        mic = [float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [float(rng.uniform(0.8, 1.6))]
        # source 0.5-3 m from the microphone, inside the room
        for _ in range(100):
            dist, az = rng.uniform(0.5, 3.0), rng.uniform(0, 2 * math.pi)
            src = [mic[0] + dist * math.cos(az), mic[1] + dist * math.sin(az), float(rng.uniform(1.1, 1.9))]
            if all(0.3 <= src[k] <= dims[k] - 0.3 for k in range(3)):
                break
        else:
            src = [dims[0] / 2, dims[1] / 2, 1.5]
        rooms.append({"room": f"{bank}{i:04d}", "dims": dims, "rt60": float(rng.uniform(*cfg.rt60)),
                      "mic": mic, "src": [float(x) for x in src]})
    return rooms


def make_plan(text_tsv: Path, split: str, cfg: PlanConfig) -> list[dict]:
    """One dict per utterance of a text split (sorted by utterance id)."""
    rows = read_tsv(text_tsv)
    rng = utt_rng(cfg.seed, "plan", split)
    voices = [v for v in VOICES if v.test_only == (split in TEST_SPLITS)]  # held-out voices for the tests
    flite = [v for v in voices if v.engine == "flite"]
    espeak = [v for v in voices if v.engine == "espeak-ng"]
    n = len(rows)
    # bandwidth: exactly round(nb_share * n) narrowband in train/dev; tests get both
    if split in TEST_SPLITS:
        bws = ["both"] * n
    else:
        n_nb = int(round(cfg.nb_share * n))
        bws = ["nb" if i < n_nb else "wb" for i in rng.permutation(n)]
    plan = []
    for i, row in enumerate(rows):
        use_flite = flite and (not espeak or rng.random() < cfg.flite_share)
        voice = (flite if use_flite else espeak)[int(rng.integers(len(flite if use_flite else espeak)))]
        if voice.engine == "flite":
            tts = {"duration_stretch": round(float(rng.uniform(*cfg.stretch)), 3)}
            if voice.f0:
                tts["int_f0_target_mean"] = round(voice.f0 * float(rng.uniform(*cfg.f0_scale)), 1)
        else:
            tts = {"rate": int(rng.integers(cfg.rate[0], cfg.rate[1] + 1)),
                   "pitch": int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1))}
        room = None
        if rng.random() < cfg.room_prob:
            room = f"{room_bank(split)}{int(rng.integers(cfg.num_rooms)):04d}"
        noise = None
        if rng.random() < cfg.noise_prob:
            snr = round(float(rng.uniform(*cfg.snr)), 2)
            if rng.random() < cfg.babble_share and n > 1:
                k = int(rng.integers(3, 6))
                others = [j for j in rng.choice(n, size=min(n, k + 1), replace=False).tolist() if j != i][:k]
                noise = {"type": "babble", "snr": snr, "others": others}  # indices, resolved below
            else:
                noise = {"type": "coloured", "snr": snr, "alpha": round(float(rng.uniform(0.0, 2.0)), 3)}
        plan.append({
            "utt": f"{voice.voice_id}-{SPLIT_TAG[split]}-{i:06d}",
            "text_id": row["text_id"], "catalog": row["catalog"], "en": row["en"], "fr": row["fr"],
            "voice": voice.voice_id, "engine": voice.engine, "tts": tts, "bw": bws[i], "room": room,
            "noise": noise, "level_db": round(float(rng.uniform(*cfg.level_db)), 2),
        })
    for item in plan:
        if item["noise"] and item["noise"]["type"] == "babble":
            item["noise"]["others"] = [plan[j]["utt"] for j in item["noise"]["others"]]
    plan.sort(key=lambda p: p["utt"])
    return plan


def write_plans(text_dir: Path, plan_dir: Path, cfg: PlanConfig, splits=SPLITS) -> dict[str, list[dict]]:
    """Make (or remake, if text or config changed) the plan of every split with a text list."""
    plan_dir = Path(plan_dir)
    plan_dir.mkdir(parents=True, exist_ok=True)
    plans = {}
    for split in splits:
        tsv = Path(text_dir) / f"{split}.tsv"
        if not tsv.exists():
            continue
        plans[split] = make_plan(tsv, split, cfg)
        lines = (json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n" for item in plans[split])
        write_lines(plan_dir / f"{split}.jsonl", lines)
    rooms = {bank: draw_rooms(bank, cfg) for bank in sorted({room_bank(s) for s in plans})}
    (plan_dir / "rooms.json").write_text(json.dumps(rooms, indent=0) + "\n")
    (plan_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    return plans


def read_plan(plan_dir: Path, split: str) -> list[dict]:
    path = Path(plan_dir) / f"{split}.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

