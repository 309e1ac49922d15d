#!/usr/bin/env python3
"""Stage 5: sentencepiece unigram model + ESPnet S2T token list.

Training text: the English transcripts and French translations of the train set,
taken from ``<train_dir>/text`` with the ``<eng><task><notimestamps>`` prefix
removed, de-duplicated (each sentence occurs once per bandwidth and task there).

``--vocab_size N`` counts the LEARNED pieces only.  The special symbols are
user_defined_symbols on top of them (they must be single pieces for ESPnet):
guiding tokens ``<asr> <st_fra> <nb> <wb>``, then ``<na> <notimestamps> <eng>``
and the timestamp range's two ends ``<0.00> <30.00>``.  So sentencepiece is
trained with ``vocab_size = N + 3 + 9`` (``<unk> <s> </s>`` included) and
``hard_vocab_limit=false``: on a corpus too small for N pieces it learns fewer
(logged) instead of failing.  N is raised (logged) to the number of distinct
characters when it is below it (each character needs a piece).

Why only two timestamps: the recipe's text is untimed (``<notimestamps>``),
and ESPnet S2T only needs the range ``first_time_symbol..last_time_symbol`` to
be contiguous ids (its preprocessor and beam search mask that range).  OWSM's
1501 ``<0.00>..<30.00>`` tokens would make 83 % of a 300-piece list tokens no
text uses, yet the output layer, softmax, label smoothing and CTC pay for
them on every frame and token (measured: 19 % of a tiny model's step time,
bench/bench_train_speed.py).  ``--timestamps all`` writes the full OWSM range.

Token list (``tokens.txt``, the order ESPnet S2T recipes use): ``<blank>``,
``<unk>``, the sentencepiece pieces without its first three (``<unk> <s> </s>``),
then ``<sos> <eos> <sop>``.

Checks before writing: the specials are single pieces, the timestamps are
contiguous in the token list, and ``<eng><asr><notimestamps> hello`` encodes to
``['▁', '<eng>', '<asr>', '<notimestamps>', ...]`` (ESPnet's S2T preprocessor
drops the first token of ``text`` unconditionally, so it must be the lone
``▁``, and ``▁`` must be in the vocabulary).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import sentencepiece as spm

from local.data_dir import BANDWIDTH_TOKENS, LANG_TOKEN, NA_TOKEN, NOTIME_TOKEN, PROMPT_RE, TASK_TOKENS, prompt_text
from local.file_io import read_kaldi, write_lines
from local.log import setup_logging

GUIDING_TOKENS = [*TASK_TOKENS.values(), *BANDWIDTH_TOKENS.values()]
S2T_TOKENS = [NA_TOKEN, NOTIME_TOKEN, LANG_TOKEN]
TAIL_TOKENS = ["<sos>", "<eos>", "<sop>"]
SPM_RESERVED = 3  # <unk> <s> </s> at ids 0..2
SPACE = "\u2581"


def timestamp_tokens(which: str = "ends", last: float = 30.0, step: float = 0.02) -> list[str]:
    """``ends``: ``<0.00> <30.00>`` (enough for untimed text); ``all``: OWSM's full range."""
    if which == "ends":
        return [f"<{0:.2f}>", f"<{last:.2f}>"]
    if which != "all":
        raise ValueError(f"timestamps must be 'ends' or 'all', got {which!r}")
    return [f"<{i * step:.2f}>" for i in range(int(round(last / step)) + 1)]


def user_symbols(timestamps: str = "ends") -> list[str]:
    return GUIDING_TOKENS + S2T_TOKENS + timestamp_tokens(timestamps)


def training_sentences(text_file: Path) -> list[str]:
    """Unique plain sentences of a S2T ``text`` file, in first-seen order."""
    sentences = (PROMPT_RE.sub("", text).strip() for text in read_kaldi(text_file).values())
    return list(dict.fromkeys(s for s in sentences if s))


def build_token_list(sp: spm.SentencePieceProcessor) -> list[str]:
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if pieces[:SPM_RESERVED] != ["<unk>", "<s>", "</s>"]:
        raise AssertionError(f"unexpected sentencepiece reserved pieces {pieces[:SPM_RESERVED]}")
    return ["<blank>", "<unk>"] + pieces[SPM_RESERVED:] + TAIL_TOKENS


def check_token_list(tokens: list[str], sp: spm.SentencePieceProcessor, timestamps: str = "ends") -> None:
    if len(set(tokens)) != len(tokens):
        dup = sorted({t for t in tokens if tokens.count(t) > 1})
        raise AssertionError(f"duplicate tokens: {dup[:10]}")
    index = {t: i for i, t in enumerate(tokens)}
    for tok in ["<blank>", "<unk>", "<sos>", "<eos>", "<sop>"] + S2T_TOKENS + GUIDING_TOKENS:
        if tok not in index:
            raise AssertionError(f"token list lacks {tok}")
    stamps = timestamp_tokens(timestamps)
    first = index[stamps[0]]
    if [index.get(t) for t in stamps] != list(range(first, first + len(stamps))):
        raise AssertionError("timestamp tokens are not contiguous")
    for tok in user_symbols(timestamps):
        if sp.encode_as_pieces(tok) not in ([SPACE, tok], [tok]):
            raise AssertionError(f"{tok} is not a single piece: {sp.encode_as_pieces(tok)}")
    if SPACE not in index:
        raise AssertionError("the lone '\u2581' piece is not in the vocabulary")
    probe = prompt_text("asr", "hello")
    pieces = sp.encode_as_pieces(probe)
    if pieces[:4] != [SPACE, LANG_TOKEN, TASK_TOKENS["asr"], NOTIME_TOKEN]:
        raise AssertionError(f"{probe!r} -> {pieces}: first piece must be the lone {SPACE!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_dir", default="data/train", type=Path)
    p.add_argument("--vocab_size", default=300, type=int, help="learned pieces (specials come on top)")
    p.add_argument("--out_dir", default=None, type=Path, help="default data/token_list/bpe_unigram<N>")
    p.add_argument("--character_coverage", default=1.0, type=float)
    p.add_argument("--seed", default=777, type=int)
    p.add_argument("--timestamps", default="ends", choices=["ends", "all"],
                   help="timestamp tokens: the range's two ends (untimed text) or all 1501 (OWSM)")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    start = time.time()
    out_dir = args.out_dir or Path(f"data/token_list/bpe_unigram{args.vocab_size}")
    text_file = args.train_dir / "text"
    if not text_file.exists():
        logging.error("%s not found: run local/split_data.py first", text_file)
        return 1
    sentences = training_sentences(text_file)
    if not sentences:
        logging.error("no training sentences in %s", text_file)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "train_text.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    symbols = user_symbols(args.timestamps)
    # every character needs its own piece (character_coverage 1.0 on a tiny corpus)
    n_chars = len(set("".join(sentences).replace(" ", SPACE)) | {SPACE})
    learned_target = args.vocab_size
    if learned_target < n_chars:
        logging.warning("--vocab_size %d < %d distinct characters: learning %d pieces",
                        args.vocab_size, n_chars, n_chars)
        learned_target = n_chars
    spm_vocab = learned_target + SPM_RESERVED + len(symbols)
    logging.info("%d unique sentences from %s; %d user symbols; sentencepiece vocab_size %d",
                 len(sentences), text_file, len(symbols), spm_vocab)
    spm.set_random_generator_seed(args.seed)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out_dir / "bpe"), model_type="unigram",
                                   vocab_size=spm_vocab, hard_vocab_limit=False,
                                   character_coverage=args.character_coverage, user_defined_symbols=symbols,
                                   shuffle_input_sentence=False, num_threads=1, minloglevel=1)
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    learned = sp.get_piece_size() - SPM_RESERVED - len(symbols)
    if learned < learned_target:
        logging.warning("corpus too small for %d pieces: learned %d", learned_target, learned)
    tokens = build_token_list(sp)
    check_token_list(tokens, sp, args.timestamps)
    write_lines(out_dir / "tokens.txt", (token + "\n" for token in tokens))
    logging.info("token list %s: %d tokens (%d learned pieces + %d specials + <blank> <unk> <sos> <eos> <sop>)",
                 out_dir / "tokens.txt", len(tokens), learned, len(symbols))
    probe = prompt_text("st_fra", "bonjour")
    logging.info("probe %r -> %s", probe, sp.encode_as_pieces(probe))
    logging.info("done in %.1f s", time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
