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


def wer_with_interval(references: list[str], hypotheses: list[str], **kw: int) -> tuple[float, tuple[float, float]]:
    """Corpus WER and its 95 % interval from one alignment of every item."""
    edits, words = word_edits(references, hypotheses)
    return float(edits.sum() / words.sum()), ratio_interval(edits, words, **kw)


def wer_fields(references: list[str], hypotheses: list[str], key: str = "wer", **kw: int) -> dict[str, object]:
    """`{key: WER, key_ci95: interval}`, the pair every report row carries, from one alignment."""
    value, ci = wer_with_interval(references, hypotheses, **kw)
    return {key: value, f"{key}_ci95": ci}


def paired_difference(
    num_a: np.ndarray, num_b: np.ndarray, den: np.ndarray, *, rounds: int = 2000, seed: int = 0
) -> dict[str, float]:
    """(sum(num_a) - sum(num_b)) / sum(den) over the same items, with a 95 % paired bootstrap
    interval: both models are resampled on the same items, so item difficulty cancels out."""
    lo, hi = ratio_interval(num_a - num_b, den, rounds=rounds, seed=seed)
    return {"difference": float((num_a - num_b).sum() / max(den.sum(), 1e-12)), "ci95_low": lo, "ci95_high": hi}


def paired_wer_difference(texts: list[str], heard_a: list[str], heard_b: list[str], **kw: int) -> dict[str, float]:
    """WER(a) - WER(b) against the same references."""
    edits_a, words = word_edits(texts, heard_a)
    edits_b, _ = word_edits(texts, heard_b)
    return paired_difference(edits_a, edits_b, words, **kw)


def paired_accuracy_difference(correct_a: list[bool], correct_b: list[bool], **kw: int) -> dict[str, float]:
    """accuracy(a) - accuracy(b) on the same items."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    return paired_difference(a, b, np.ones_like(a), **kw)
