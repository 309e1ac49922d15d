"""Tests for local/make_tokens.py (stage 5): sentencepiece model and S2T token list."""

import pytest
import sentencepiece as spm

from local import make_tokens


@pytest.fixture(scope="module")
def tokens_dir(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens") / "bpe_unigram40"
    assert make_tokens.main(["--train_dir", str(pipeline["data"] / "train"), "--vocab_size", "40",
                             "--out_dir", str(out)]) == 0
    return out


def test_training_text_is_plain_and_unique(tokens_dir, pipeline):
    lines = (tokens_dir / "train_text.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines))
    assert not any("<" in line for line in lines)
    assert {"one", "two", "un", "deux"} <= set(lines)  # digits are always train (en + fr)


def test_training_sentences_strip_prefix(tmp_path):
    text = tmp_path / "text"
    text.write_text(
        "u1 <eng><asr><notimestamps> Hello there.\n"
        "u2 <eng><st_fra><notimestamps> Bonjour.\n"
        "u3 <eng><asr><notimestamps> Hello there.\n"
        "u4 <eng><asr><notimestamps> a <b> c\n",
        encoding="utf-8",
    )
    assert make_tokens.training_sentences(text) == ["Hello there.", "Bonjour.", "a <b> c"]


def test_token_list_order(tokens_dir):
    tokens = (tokens_dir / "tokens.txt").read_text(encoding="utf-8").splitlines()
    sp = spm.SentencePieceProcessor(model_file=str(tokens_dir / "bpe.model"))
    assert tokens[:2] == ["<blank>", "<unk>"]
    assert tokens[-3:] == ["<sos>", "<eos>", "<sop>"]
    assert tokens[2:-3] == [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    assert tokens[2:9] == ["<asr>", "<st_fra>", "<nb>", "<wb>", "<na>", "<notimestamps>", "<eng>"]
    assert tokens[9:11] == ["<0.00>", "<30.00>"]  # the untimed recipe needs only the range's ends
    assert not any(t.startswith("<1") for t in tokens)
    assert len(tokens) == len(set(tokens))
    # --vocab_size 40 is below the corpus' distinct characters: raised to that count
    corpus = (tokens_dir / "train_text.txt").read_text(encoding="utf-8").splitlines()
    n_chars = len(set("".join(corpus).replace(" ", "\u2581")) | {"\u2581"})
    assert n_chars > 40
    assert len(tokens) == 2 + 7 + 2 + n_chars + 3


def test_all_timestamps_on_request(pipeline, tmp_path):
    out = tmp_path / "owsm"
    assert make_tokens.main(["--train_dir", str(pipeline["data"] / "train"), "--vocab_size", "40",
                             "--out_dir", str(out), "--timestamps", "all"]) == 0
    tokens = (out / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[9] == "<0.00>" and tokens[9 + 750] == "<15.00>" and tokens[9 + 1500] == "<30.00>"
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    assert "<0.02>" in sp.encode_as_pieces("a<0.02>b")


def test_first_piece_is_the_lone_space(tokens_dir):
    sp = spm.SentencePieceProcessor(model_file=str(tokens_dir / "bpe.model"))
    pieces = sp.encode_as_pieces("<eng><asr><notimestamps> hello")
    assert pieces[:4] == ["\u2581", "<eng>", "<asr>", "<notimestamps>"]
    assert sp.encode_as_pieces("<eng><st_fra><notimestamps> merci")[:4] == ["\u2581", "<eng>", "<st_fra>",
                                                                           "<notimestamps>"]
    assert sp.encode_as_pieces("<nb>") == ["\u2581", "<nb>"]
    assert "<30.00>" in sp.encode_as_pieces("a<30.00>b")


def test_check_token_list_can_fail(tokens_dir):
    sp = spm.SentencePieceProcessor(model_file=str(tokens_dir / "bpe.model"))
    tokens = make_tokens.build_token_list(sp)
    make_tokens.check_token_list(tokens, sp)
    swapped = list(tokens)
    i = swapped.index("<0.00>")
    swapped[i + 1], swapped[i + 2] = swapped[i + 2], swapped[i + 1]  # <30.00> no longer next to <0.00>
    with pytest.raises(AssertionError, match="contiguous"):
        make_tokens.check_token_list(swapped, sp)
    with pytest.raises(AssertionError, match="lacks <sop>"):
        make_tokens.check_token_list(tokens[:-1], sp)


def test_vocab_larger_than_corpus_is_soft(pipeline, tmp_path):
    out = tmp_path / "big"
    assert make_tokens.main(["--train_dir", str(pipeline["data"] / "train"), "--vocab_size", "5000",
                             "--out_dir", str(out)]) == 0
    tokens = (out / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert 2 + 9 < len(tokens) - 3 < 2 + 9 + 5000
