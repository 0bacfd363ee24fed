"""95 % bootstrap intervals over test items, for accuracies and word error rates.

Scores from a few hundred questions move by several points between test sets: a number
is worth reading with its interval, and a difference between two models only where the
paired interval (the same items resampled for both) excludes zero.
"""

from __future__ import annotations

import numpy as np

from flowomni.evaluation.text import normalize, wer


def word_edits(references: list[str], hypotheses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per item: (edit count, reference word count), so corpus WERs of resamples are sums."""
    words = np.array([len(normalize(r).split()) for r in references], dtype=float)
    edits = np.array([wer([r], [h]) for r, h in zip(references, hypotheses)]) * words
    return edits, words


def ratio_interval(num: np.ndarray, den: np.ndarray, *, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of sum(num) / sum(den) over items resampled with replacement."""
    if len(num) == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(num), size=(rounds, len(num)))
    values = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def accuracy_interval(correct: list[bool], **kw: int) -> tuple[float, float]:
    x = np.asarray(correct, dtype=float)
    return ratio_interval(x, np.ones_like(x), **kw)


def wer_interval(references: list[str], hypotheses: list[str], **kw: int) -> tuple[float, float]:
    return ratio_interval(*word_edits(references, hypotheses), **kw)


def paired_wer_difference(
    texts: list[str], heard_a: list[str], heard_b: list[str], *, rounds: int = 2000, seed: int = 0
) -> dict[str, float]:
    """WER(a) - WER(b) on the same items, with a 95 % paired bootstrap interval over items."""
    edits_a, words = word_edits(texts, heard_a)
    edits_b, _ = word_edits(texts, heard_b)
    lo, hi = ratio_interval(edits_a - edits_b, words, rounds=rounds, seed=seed)
    return {"difference": float((edits_a - edits_b).sum() / words.sum()), "ci95_low": lo, "ci95_high": hi}
