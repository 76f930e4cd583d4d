"""Text-only scorers: how well the captions alone, without the image, tell the true caption from the foil.

SugarCrepe (arXiv 2306.14610, Sec. 3) requires that no text-only model prefers the positives: otherwise a
benchmark rewards plausible sentences, not vision. :class:`BigramScorer` is an add-one smoothed word bigram model
fitted on the training captions (a model of everything the training text could teach);
:func:`text_only_accuracy` scores a benchmark's rows with any text-only scorer (ties count half).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Sequence


def words(text: str) -> list[str]:
    return text.replace(",", " ,").split()


class BigramScorer:
    """log P(caption) under an add-one smoothed bigram model of ``captions``."""

    def __init__(self, captions: Iterable[str]) -> None:
        self.uni: Counter[str] = Counter()
        self.bi: Counter[tuple[str, str]] = Counter()
        for c in captions:
            w = ["<s>", *words(c), "</s>"]
            self.uni.update(w[:-1])
            self.bi.update(zip(w[:-1], w[1:]))
        self.vocab = len(set(self.uni) | {"</s>"}) + 1

    def __call__(self, caption: str) -> float:
        w = ["<s>", *words(caption), "</s>"]
        return sum(math.log((self.bi[(a, b)] + 1) / (self.uni[a] + self.vocab)) for a, b in zip(w[:-1], w[1:]))


def unigram_scorer(captions: Iterable[str]) -> Callable[[str], float]:
    """Mean log frequency of a caption's words in ``captions`` (add-one): a length-free text prior."""
    counts: Counter[str] = Counter(w for c in captions for w in words(c))
    total, vocab = sum(counts.values()), len(counts) + 1
    return lambda text: sum(math.log((counts[w] + 1) / (total + vocab)) for w in words(text)) / max(1, len(words(text)))


def text_only_accuracy(rows: Sequence[dict], score: Callable[[str], float]) -> float:
    """Percent of rows whose caption outscores its negative caption (ties count half)."""
    if not rows:
        raise ValueError("text_only_accuracy: no rows")
    credit = 0.0
    for r in rows:
        sp, sn = score(r["caption"]), score(r["negative_caption"])
        credit += 1.0 if sp > sn else 0.5 if sp == sn else 0.0
    return 100.0 * credit / len(rows)
