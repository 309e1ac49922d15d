"""Tests for local/base_model.py: the shipped base is checked, unpacked and described."""

import json

import numpy as np
import pytest
import yaml
from espnet2.main_funcs.pack_funcs import pack

from local import base_model
from local.data_dir import add_recording, new_files, write_data_dir

TOKENS = ["<blank>", "<unk>", "<na>", "▁press", "▁one", "<sos/eos>"]


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """An S2T archive as espnet2.bin.pack writes it (paths relative to the packing folder)."""
    monkeypatch.chdir(tmp_path)
    for name in ("exp/base", "data/token_list/bpe", "exp/stats/train"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "data/token_list/bpe/bpe.model").write_bytes(b"sentencepiece bytes")
    np.savez(tmp_path / "exp/stats/train/feats_stats.npz", count=np.array(3), sum=np.ones(4))
    (tmp_path / "exp/base/model.pth").write_bytes(b"weights")
    config = {"token_list": TOKENS, "bpemodel": "data/token_list/bpe/bpe.model",
              "normalize": "global_mvn", "normalize_conf": {"stats_file": "exp/stats/train/feats_stats.npz"}}
    (tmp_path / "exp/base/config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "pretrained/base.zip"
    out.parent.mkdir()
    pack(files={"s2t_model_file": "exp/base/model.pth"}, yaml_files={"s2t_train_config": "exp/base/config.yaml"},
         option=["data/token_list/bpe/bpe.model", "exp/stats/train/feats_stats.npz"], outpath=str(out))
    (tmp_path / "pretrained/base.json").write_text(json.dumps({"sha256": base_model.sha256(out)}))
    return out


def test_unpack_gives_run_sh_the_base_files(archive, tmp_path):
    out = tmp_path / "unpacked"
    files = base_model.unpack(archive, out)
    assert files["model"].read_bytes() == b"weights"
    assert files["bpe_model"].read_bytes() == b"sentencepiece bytes"
    assert files["tokens"].read_text(encoding="utf-8").splitlines() == TOKENS
    assert float(np.load(files["stats"])["sum"].sum()) == 4.0
    config = yaml.safe_load(files["config"].read_text(encoding="utf-8"))
    assert config["token_list"] == TOKENS
    assert config["bpemodel"] == str(files["bpe_model"])
    assert config["normalize_conf"]["stats_file"] == str(files["stats"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.yaml", "model.pth", "bpe.model", "tokens.txt", "feats_stats.npz", "unpacked.sha256"])
    # a second call keeps what is there
    files["model"].write_bytes(b"kept")
    base_model.unpack(archive, out)
    assert files["model"].read_bytes() == b"kept"


def test_unpack_refuses_a_damaged_or_undescribed_archive(archive, tmp_path):
    with archive.open("ab") as f:
        f.write(b"x")
    with pytest.raises(base_model.BaseModelError, match=r"base.zip: SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} "
                                                          r"\(from .*base.json\)"):
        base_model.unpack(archive, tmp_path / "out")
    (tmp_path / "pretrained/base.json").unlink()
    with pytest.raises(base_model.BaseModelError, match="base.json: missing"):
        base_model.unpack(archive, tmp_path / "out")
    with pytest.raises(base_model.BaseModelError, match="base model not found.*--init scratch"):
        base_model.unpack(tmp_path / "none.zip", tmp_path / "out")


def data_dir(root, name, pairs, test=False):
    files = new_files()
    for i, (en, fr) in enumerate(pairs):
        add_recording(files, f"{name}{i}", f"/audio/{name}{i}.wav", "nb", en, fr, test=test)
    write_data_dir(root / name, files)
    return root / name


def test_describe_refuses_training_data_with_an_evaluation_sentence(archive, tmp_path):
    train = data_dir(tmp_path, "train", [("Press one.", "Appuyez sur un."), ("Goodbye", "Au revoir")])
    clean_test = data_dir(tmp_path, "test", [("Please hold", "Patientez")], test=True)
    exp = tmp_path / "exp/base"
    (exp / "results.json").write_text(json.dumps({"results": [{"task": "asr", "cer": 30.0}]}))
    info = base_model.describe(archive, exp, train, [clean_test], "./run.sh --init scratch", "two prompts")
    assert info["sha256"] == base_model.sha256(archive) and info["bytes"] == archive.stat().st_size
    assert (info["training_utterances"], info["training_recordings"]) == (4, 2)
    assert (info["training_sentences"], info["evaluation_sentences_kept_out"]) == (4, 2)
    assert info["results"] == [{"task": "asr", "cer": 30.0}]
    # "au revoir!" in a test set is "Au revoir" of training, whatever the case and punctuation
    leaky_test = data_dir(tmp_path, "test2", [("Hello", "au revoir!")], test=True)
    with pytest.raises(base_model.BaseModelError, match=r"1 training sentences are in .*test2, e.g. \['au revoir'\]"):
        base_model.describe(archive, exp, train, [clean_test, leaky_test], "", "")
