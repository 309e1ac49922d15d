"""espnet_smoe: Supervised Mixture of Experts (S-MoE) speech-to-text for ESPnet2."""

from setuptools import find_packages, setup

# The stack is pinned on purpose: the plugin registers classes inside ESPnet's
# module-level ClassChoices, which moves between releases (see
# espnet_smoe/registration.py, which refuses to run against a moved layout).
install_requires = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    # "train": ESPnet's trainer plots curves with matplotlib and logs to tensorboard by default
    "espnet[s2t,train]==202611",
    "sentencepiece==0.2.1",
    # espnet_smoe.transcribe (long recordings): reading any audio file, cutting it at pauses
    # (the silero-vad wheel ships its model: nothing is downloaded at run time), progress bars
    "soundfile>=0.12",
    "silero-vad>=6.2,<7",
    "tqdm>=4.66",
    "av>=12",  # FFmpeg, for the containers libsndfile does not read (M4A/AAC, WMA, WebM)
]

# What only the recipe (egs2/smoe_asr_st/s2t1/local) and its tests use; the plugin
# itself (`import espnet_smoe`, training, decoding, packing) needs none of it.
# tools/setup_venv.sh installs it.
recipe_requires = [
    "soundfile>=0.12",
    "tqdm>=4.66",
    "scipy>=1.11",
    "matplotlib>=3.8",  # result tables' charts
    "sacrebleu>=2.4",  # scoring: BLEU/chrF
    "jiwer>=3.0",  # scoring: WER/CER
    "G722>=1.2.8",  # stage 1: the Asterisk G.722 recordings
    # tts_ui corpus: gettext catalogs, room responses
    "polib>=1.2",
    "pyroomacoustics>=0.10",
    "submitit>=1.5",  # cmd_backend=slurm: local/launch.py submits and waits through it
]

setup(
    name="espnet_smoe",
    version="0.1.0",
    description="Supervised Mixture of Experts (S-MoE) for ESPnet2 speech-to-text",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.12,<3.14",
    packages=find_packages(include=["espnet_smoe", "espnet_smoe.*"]),
    install_requires=install_requires,
    # ruff's rules move between minor releases: one minor line keeps `ruff check` reproducible.
    extras_require={
        "recipe": recipe_requires,
        # onnx*: the export_route test checks the ONNX export against PyTorch
        # srt, webvtt-py: the transcription tests parse the caption files with other people's parsers
        "test": ["pytest>=8.0", "ruff~=0.17.0", "onnx", "onnxruntime", "onnxscript", "srt>=3.5", "webvtt-py>=0.5"],
    },
)
