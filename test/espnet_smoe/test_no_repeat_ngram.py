"""NoRepeatNgramScorer against a plain-Python rule, and inside ESPnet's own beam search."""

import pytest
import torch
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from espnet2.legacy.nets.beam_search import BeamSearch
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface

from espnet_smoe.no_repeat_ngram import NoRepeatNgramScorer, add_full_scorer

VOCAB, SOS, EOS = 12, 10, 11


def reference_banned(tokens: list, n: int, sos: int) -> set:
    """The rule written out: after the last <sos>, every token that ends a seen n-gram whose
    first n-1 tokens are the hypothesis's last n-1."""
    if sos in tokens:
        tokens = tokens[len(tokens) - tokens[::-1].index(sos):]
    tail = tokens[len(tokens) - n + 1:] if n > 1 else []
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i:i + n - 1] == tail}


def repeats_an_ngram(tokens: list, n: int) -> bool:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_tokens_follow_the_rule(n):
    gen = torch.Generator().manual_seed(n)
    scorer = NoRepeatNgramScorer(n, VOCAB, SOS)
    for _ in range(300):
        # few distinct tokens so that repeats are common; an <sos> now and then, as a
        # previous-text prompt puts one in the middle of the sequence
        y = torch.randint(0, 4, (int(torch.randint(0, 14, (1,), generator=gen)),), generator=gen)
        if len(y) > 3 and torch.rand(1, generator=gen) < 0.3:
            y[int(torch.randint(0, len(y), (1,), generator=gen))] = SOS
        got = set(scorer.banned_tokens(y).tolist())
        assert got == reference_banned(y.tolist(), n, SOS), (n, y.tolist(), got)


def test_batch_score_is_score_per_row():
    scorer = NoRepeatNgramScorer(2, VOCAB, SOS)
    ys = torch.tensor([[SOS, 1, 2, 1, 2, 1], [SOS, 3, 3, 3, 3, 3], [SOS, 1, 2, 3, 4, 5], [1, 2, SOS, 1, 2, 1]])
    batch, states = scorer.batch_score(ys, [None] * 4, torch.zeros(4, 3, 2))
    assert states == [None] * 4
    for row, y in zip(batch, ys):
        single, _ = scorer.score(y, None, torch.zeros(3, 2))
        assert torch.equal(row, single)
    # row 0 ends "... 2 1": "1 2" was seen, so 2 is banned; row 1: "3 3" seen; row 2: nothing repeats;
    # row 3: the "1 2" before <sos> does not count, the one after it does
    expected = [{2}, {3}, set(), {2}]
    assert [set(torch.nonzero(torch.isinf(row)).flatten().tolist()) for row in batch] == expected
    assert torch.all((batch == 0) | torch.isneginf(batch))


def test_invalid_size_is_an_error():
    with pytest.raises(ValueError, match="no_repeat_ngram_size must be >= 1"):
        NoRepeatNgramScorer(0, VOCAB, SOS)


class LoopingScorer(BatchScorerInterface, torch.nn.Module):
    """A decoder that always prefers token 5, then 6, then 7: left alone, the search loops on 5."""

    def __init__(self):
        super().__init__()
        logits = torch.full((VOCAB,), -8.0)
        logits[5], logits[6], logits[7], logits[EOS] = 3.0, 2.0, 1.0, -4.0
        self.register_buffer("logp", torch.log_softmax(logits, dim=0))

    def score(self, y, state, x):
        return self.logp.clone(), None

    def batch_score(self, ys, states, xs):
        return self.logp.expand(len(ys), -1).clone(), [None] * len(ys)


def search(no_repeat: int):
    beam = BeamSearch(scorers={"decoder": LoopingScorer()}, weights={"decoder": 1.0}, beam_size=3,
                      vocab_size=VOCAB, sos=SOS, eos=EOS, token_list=[str(i) for i in range(VOCAB)],
                      pre_beam_score_key="full")
    if no_repeat:
        add_full_scorer(beam, "no_repeat_ngram", NoRepeatNgramScorer(no_repeat, VOCAB, SOS), 1.0)
    beam.__class__ = BatchBeamSearch  # as ESPnet's Speech2Text does
    hyps = beam(x=torch.zeros(12, 4), maxlenratio=0.0, minlenratio=0.0)
    return [h.yseq.tolist()[1:-1] for h in hyps]  # without <sos> and <eos>


@pytest.mark.parametrize("n", [1, 2, 3])
def test_espnet_beam_search_with_the_scorer_never_repeats(n):
    looping = search(0)[0]
    assert repeats_an_ngram(looping, n), looping  # without the scorer the search loops
    for tokens in search(n):
        assert tokens and not repeats_an_ngram(tokens, n), (n, tokens)


def test_adding_a_scorer_twice_is_an_error():
    beam = BeamSearch(scorers={"decoder": LoopingScorer()}, weights={"decoder": 1.0}, beam_size=2,
                      vocab_size=VOCAB, sos=SOS, eos=EOS, token_list=[str(i) for i in range(VOCAB)])
    with pytest.raises(ValueError, match="already has a scorer named 'decoder'"):
        add_full_scorer(beam, "decoder", NoRepeatNgramScorer(2, VOCAB, SOS), 1.0)
