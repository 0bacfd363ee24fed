"""Why an answer about two numbers is wrong: the skill, the ear, the copy, or the reasoning.

Arithmetic and comparison answers restate the question's numbers ("Two times six is twelve.",
"Yes, nine is smaller than seventeen."), so a wrong answer says where it went wrong. An answer in
another skill's form ("Nine plus five is fourteen." to "the smaller of nine and five") mistook
the question; numbers the question never said mean the model misheard it (or, written, misread
it); one of the question's numbers twice or left out is a copying slip; the question's own
numbers with a wrong result, relation or yes/no is an error of reasoning. Counted per condition
(clean, noise, written...), the split shows whether a skill is held back by hearing or by what
the backbone has learnt.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from flowomni.data.facts import ONES, TENS
from flowomni.evaluation.text import exact_match, normalize

SKILLS = ("arithmetic", "comparison")
KINDS = ("right", "other skill", "numbers not asked", "copied wrong", "reasoned wrong")
# the words an answer of each skill has, whatever its numbers
_FORM = {
    "arithmetic": re.compile(r"\b(plus|minus|times|divided by)\b"),
    "comparison": re.compile(r"\b(bigger|smaller) than\b"),
}
_UNITS = {w: i for i, w in enumerate(ONES)}
_TENS = {w: 10 * i for i, w in enumerate(TENS) if w != "_"}


def numbers(text: str) -> list[int]:
    """The numbers a sentence says, in order: "twenty one plus two is twenty three" -> [21, 2, 23]."""
    out: list[int] = []
    current: int | None = None
    for word in normalize(text).split():
        value = _TENS.get(word, _UNITS.get(word))
        hundreds = current is not None and current >= 100 and current % 100 == 0
        if value is not None and current is not None:
            tens_open = current % 100 >= 20 and current % 10 == 0 and 0 < value < 10
            if hundreds or tens_open:  # "one hundred" "forty", "twenty" "one"
                current += value
                continue
        if value is not None:
            if current is not None:
                out.append(current)
            current = value
        elif word == "hundred" and current is not None and current < 10:
            current *= 100
        elif not (word == "and" and hundreds):  # "one hundred and four" goes on
            if current is not None:
                out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return out


def operands(skill: str, reference_numbers: list[int]) -> list[int]:
    """The reference's numbers that restate the question: all of a comparison's, all but the
    result of a sum's."""
    return reference_numbers if skill == "comparison" else reference_numbers[:-1]


def error_kind(skill: str, reference: str, answer: str) -> str:
    """One of KINDS for an answer to a question of `skill` (one of SKILLS)."""
    if skill not in SKILLS:
        raise ValueError(f"error_kind: skill {skill!r} does not restate its question's numbers; use one of {SKILLS}")
    if exact_match(reference, answer):
        return "right"
    asked = operands(skill, numbers(reference))
    said = numbers(answer)[: len(asked)]
    if not _FORM[skill].search(normalize(answer)) or len(said) < len(asked):
        return "other skill"
    if sorted(said) == sorted(asked):
        return "reasoned wrong"
    if set(said) <= set(asked):
        return "copied wrong"
    return "numbers not asked"


def count_kinds(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per skill of SKILLS: how many rows of each kind, and their shares (rows need skill,
    reference and text, as `flowomni eval` writes them)."""
    out: dict[str, dict[str, Any]] = {}
    for skill in SKILLS:
        kinds = Counter(error_kind(skill, r["reference"], r["text"]) for r in rows if r["skill"] == skill)
        n = sum(kinds.values())
        if n:
            out[skill] = {"questions": n, **{k: {"n": kinds[k], "share": kinds[k] / n} for k in KINDS}}
    return out
