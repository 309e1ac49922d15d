"""A beam-search scorer that forbids repeating an n-gram: ``no_repeat_ngram_size``.

A small attention decoder that has lost track of the audio tends to loop
("votre votre votre ...", one BPE piece over and over) until the length limit;
the search has no way to leave the loop, because every step of it is likely
under the decoder. This scorer gives ``-inf`` to each token that would complete
an n-gram the hypothesis already holds, the rule fairseq and Hugging Face call
``no_repeat_ngram_size``. It looks only at what follows the last ``<sos>`` of a
hypothesis, so the previous-text prompt (``<sop> ... <sos>``) is not held
against the output.

Added to ESPnet's ``BeamSearch`` as a full scorer with weight 1, like ESPnet's
own ``ScoreFilter`` (see :func:`add_full_scorer`).
"""

from typing import Any, List, Optional, Tuple

import torch
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface


class NoRepeatNgramScorer(BatchScorerInterface, torch.nn.Module):
    """Scores 0 for every token, ``-inf`` for those that would repeat an n-gram.

    Args:
        ngram_size: n; a hypothesis never holds the same n tokens twice in a row.
        vocab_size: Number of tokens V.
        sos: Id of ``<sos>``: only tokens after its last occurrence count.
    """

    def __init__(self, ngram_size: int, vocab_size: int, sos: int):
        super().__init__()
        if ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1 to build the scorer, got {ngram_size}")
        self.ngram_size, self.vocab_size, self.sos = ngram_size, vocab_size, sos

    def banned_tokens(self, y: torch.Tensor) -> torch.Tensor:
        """Ids that would complete an n-gram already in ``y``.

        Args:
            y: (Length,) token ids of one hypothesis, prompt included.

        Returns:
            (K,) banned ids, possibly repeated, possibly empty.
        """
        n = self.ngram_size
        starts = (y == self.sos).nonzero()
        tokens = y[int(starts[-1]) + 1:] if len(starts) else y
        if len(tokens) < n:
            return tokens.new_empty(0)
        grams = tokens.unfold(0, n, 1)  # (num_grams, n)
        # n-grams whose first n-1 tokens equal the hypothesis's last n-1 tokens
        same_prefix = (grams[:, :-1] == tokens[len(tokens) - n + 1:]).all(dim=1)
        return grams[same_prefix, -1]

    def score(self, y: torch.Tensor, state: Any, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """Scores of the next token: (V,) of 0 and -inf; no state."""
        scores = torch.zeros(self.vocab_size, device=y.device)
        scores[self.banned_tokens(y)] = float("-inf")
        return scores, None

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Optional[Any]]]:
        """Scores of the next token for each hypothesis.

        Args:
            ys: (NBatch, Length) token ids.

        Returns:
            (NBatch, V) scores of 0 and -inf, and one ``None`` state per row.
        """
        scores = torch.zeros(len(ys), self.vocab_size, device=ys.device)
        for i, y in enumerate(ys):
            scores[i, self.banned_tokens(y)] = float("-inf")
        return scores, [None] * len(ys)


def add_full_scorer(beam_search, name: str, scorer, weight: float) -> None:
    """Add a full scorer to a built ESPnet ``BeamSearch`` (or ``BatchBeamSearch``).

    ESPnet's ``Speech2Text`` builds its search from a fixed set of scorers, so
    one of ours joins afterwards, into the same tables its constructor fills.
    """
    if not hasattr(beam_search, "full_scorers"):
        raise ValueError(f"{type(beam_search).__name__} takes no added scorer; ESPnet's BeamSearch does")
    if name in beam_search.scorers:
        raise ValueError(f"the beam search already has a scorer named {name!r}")
    beam_search.weights[name] = weight
    beam_search.scorers[name] = scorer
    beam_search.full_scorers[name] = scorer
    if isinstance(scorer, torch.nn.Module):
        beam_search.nn_dict[name] = scorer
