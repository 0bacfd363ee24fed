"""Bounds on what one answer may cost: the conversation history a request brings or a
session keeps (the prompt grows with it, and the prefill's cost about quadratically)."""

from __future__ import annotations

from collections.abc import Iterable

Turn = tuple[str, str]


def history_chars(turns: Iterable[Turn]) -> int:
    return sum(len(q) + len(a) for q, a in turns)


def fit_history(turns: Iterable[Turn], max_chars: int) -> list[Turn]:
    """The latest turns whose questions and answers hold at most `max_chars` characters
    together (a session's own history: older turns are dropped, never an error)."""
    kept: list[Turn] = []
    total = 0
    for q, a in reversed(list(turns)):
        total += len(q) + len(a)
        if total > max_chars:
            break
        kept.append((q, a))
    return kept[::-1]
