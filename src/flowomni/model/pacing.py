"""Where the text of a spoken reply goes: written freely ahead of the speech (the paper), or
each token at the time it is spoken ("aligned", as Moshi's inner monologue).

With free pacing the answer's text is written in its first positions and the speech stream
must find, by attention alone, which character it is saying at each step; a small backbone
trained for hours on a CPU mumbles and skips words doing that. With aligned pacing every
text token sits `lead` steps before the mel group where its sound starts, padded with <tpad>
in between, so the step that draws a group has just read the characters it is about to say:
the alignment is given by the data, and the model learns when to write the next character
(a duration model) from the same cross-entropy as the text itself. Word timings come from
the answer voice's own synthesis (piper's per-phoneme durations, see data/voices.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

TEXT_PACINGS = ("free", "aligned")


def char_times(text: str, words: Sequence[Sequence[float]] | None, duration: float) -> list[float]:
    """A time (seconds) per character of `text`: within a word, spread over its [start, end];
    the space before a word at the word's start. Without word timings (or if they do not fit
    the text's words) the characters are spread evenly over `duration`."""
    tokens = text.split(" ")
    if not words or len(words) != len([t for t in tokens if t]):
        return [duration * i / max(len(text), 1) for i in range(len(text))]
    out: list[float] = []
    spans = iter(words)
    for k, token in enumerate(tokens):
        if not token:
            out.append(out[-1] if out else 0.0)  # a double space
            continue
        start, end = next(spans)
        if k > 0:
            out.append(start)  # the space before this word
        out += [start + (end - start) * i / len(token) for i in range(len(token))]
    return out


def token_times(text: str, ids: Sequence[int], decode: object, chars: list[float]) -> list[float]:
    """Per token, the time of its first character (tokens found by decoding each id in turn:
    the char tokenizer is one id per character; subword tokenizers cover several)."""
    if len(ids) == len(text):
        return list(chars)
    out, pos = [], 0
    for i in ids:
        out.append(chars[min(pos, len(chars) - 1)] if chars else 0.0)
        pos += len(decode([i]))  # type: ignore[operator]
    return out


def aligned_slots(times: Sequence[float], group_seconds: float, delay: int, lead: int) -> list[int]:
    """Answer positions (0 = the first after the prompt) of tokens spoken at `times`.

    Mel group g is drawn from the hidden state at position delay + g, so a token whose sound
    starts in group g goes at delay + g - lead: `lead` steps before it is needed. Tokens that
    would share a position move earlier (keeping their lead), and those that would then start
    before the answer move later, in order."""
    target = [delay + int(math.floor(t / group_seconds)) - lead for t in times]
    slots = list(target)
    for i in range(len(slots) - 2, -1, -1):  # backwards: earlier if crowded
        slots[i] = min(slots[i], slots[i + 1] - 1)
    for i in range(len(slots)):  # forwards: never before the answer, strictly increasing
        slots[i] = max(slots[i], 0, slots[i - 1] + 1 if i else 0)
    return slots
