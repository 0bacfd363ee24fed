"""Question/answer generators for the synthetic spoken-QA corpus, and the held-out split rule.

Each skill enumerates its *combinations* (the content of a question: an operand pair, a
fact, a phrase) and renders one as a question in one of several phrasings, with a short,
full-sentence answer that is a deterministic function of the question. Splits are made
over combinations, never over rendered questions: every combination belongs to exactly
one of train/valid/test, so a test question asks about number pairs, facts and phrases
the model never heard in training (phrasing templates and voices are shared).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from flowomni.data import facts as F
from flowomni.data.facts import number_words as w

SPLITS = ("train", "valid", "test")
SPLIT_SALT = "flowomni-spoken-qa-v1"  # fixed, not the build seed: every build holds out the same combinations


@dataclass(frozen=True)
class Combo:
    """One held-out unit. Held-out fractions are applied per (skill, group)."""

    skill: str
    group: str
    values: tuple[int | str, ...]

    @property
    def key(self) -> str:
        return "/".join([self.skill, self.group, *map(str, self.values)])


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    combo: Combo


Render = Callable[[Combo, random.Random], tuple[str, str]]


@dataclass(frozen=True)
class Skill:
    name: str
    weight: float  # share of items
    combos: Callable[[], list[Combo]]
    render: Render


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# --- arithmetic: "What is seven plus two?" -> "Seven plus two is nine." ------------------------

_ARITH_Q = {
    "plus": ["What is {a} plus {b}?", "What's {a} plus {b}?", "How much is {a} plus {b}?", "Add {a} and {b}.",
             "What do you get if you add {a} and {b}?", "Tell me {a} plus {b}."],
    "minus": ["What is {a} minus {b}?", "What's {a} minus {b}?", "How much is {a} minus {b}?",
              "Take {b} away from {a}.", "What do you get if you take {b} from {a}?", "Tell me {a} minus {b}."],
    "times": ["What is {a} times {b}?", "What's {a} times {b}?", "How much is {a} times {b}?",
              "Multiply {a} by {b}.", "What do you get if you multiply {a} by {b}?", "Tell me {a} times {b}."],
}
_COMMUTATIVE = {"plus", "times"}  # a+b and b+a are one combination: both orders are held out together


def _arith_combos() -> list[Combo]:
    out = [Combo("arithmetic", "plus", (a, b)) for a in range(11) for b in range(a, 11)]
    out += [Combo("arithmetic", "minus", (a, b)) for a in range(21) for b in range(min(a, 10) + 1)]
    out += [Combo("arithmetic", "times", (a, b)) for a in range(11) for b in range(a, 11)]
    return out


def _arith_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    a, b = c.values
    if c.group in _COMMUTATIVE and rng.random() < 0.5:
        a, b = b, a
    result = {"plus": a + b, "minus": a - b, "times": a * b}[c.group]
    q = cap(rng.choice(_ARITH_Q[c.group]).format(a=w(a), b=w(b)))
    return q, f"{cap(w(a))} {c.group} {w(b)} is {w(result)}."


# --- counting: "Count from three to six." -> "Three, four, five, six." ----------------------------

_COUNT_Q = {
    "up": ["Count from {a} to {b}.", "Please count from {a} to {b}.", "Can you count from {a} to {b}?",
           "Count up from {a} to {b}."],
    "down": ["Count down from {a} to {b}.", "Please count down from {a} to {b}.",
             "Can you count backwards from {a} to {b}?"],
}


def _count_combos() -> list[Combo]:
    pairs = [(a, a + span) for a in range(1, 18) for span in (2, 3)]  # <= 4 numbers, up to twenty: short answers
    return [Combo("counting", "up", p) for p in pairs] + [Combo("counting", "down", p[::-1]) for p in pairs]


def _count_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    a, b = c.values
    step = 1 if b > a else -1
    q = cap(rng.choice(_COUNT_Q[c.group]).format(a=w(a), b=w(b)))
    return q, cap(", ".join(w(n) for n in range(a, b + step, step))) + "."


# --- comparison: "Which is bigger, four or nine?" -> "Nine is bigger than four." ------------------

_BIGGER_Q = ["Which is bigger, {x} or {y}?", "Which number is bigger, {x} or {y}?", "Which is larger, {x} or {y}?"]
_SMALLER_Q = ["Which is smaller, {x} or {y}?", "Which number is smaller, {x} or {y}?"]


def _compare_combos() -> list[Combo]:
    return [Combo("comparison", "pair", (a, b)) for a in range(21) for b in range(a + 1, 21)]


def _compare_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    small, big = c.values
    x, y = (small, big) if rng.random() < 0.5 else (big, small)
    form = rng.random()
    if form < 0.45:
        return rng.choice(_BIGGER_Q).format(x=w(x), y=w(y)), f"{cap(w(big))} is bigger than {w(small)}."
    if form < 0.8:
        return rng.choice(_SMALLER_Q).format(x=w(x), y=w(y)), f"{cap(w(small))} is smaller than {w(big)}."
    q = f"Is {w(x)} bigger than {w(y)}?"
    return q, (f"Yes, {w(x)} is bigger than {w(y)}." if x > y else f"No, {w(x)} is smaller than {w(y)}.")


# --- what comes next / before: numbers, days, months, letters ------------------------------------

_SEQ_ITEMS: dict[str, list[str]] = {
    "number": [w(n) for n in range(100)],
    "day": F.DAYS,
    "month": F.MONTHS,
    "letter": F.LETTERS,
}
_SEQ_WRAPS = {"day", "month"}  # Sunday -> Monday, December -> January
_SEQ_Q = {
    "number": (["What comes after {x}?", "What number comes after {x}?", "What is the number after {x}?"],
               ["What comes before {x}?", "What number comes before {x}?", "What is the number before {x}?"]),
    "day": (["What comes after {x}?", "What day comes after {x}?", "Which day is after {x}?"],
            ["What comes before {x}?", "What day comes before {x}?", "Which day is before {x}?"]),
    "month": (["What comes after {x}?", "Which month comes after {x}?", "What month is after {x}?"],
              ["What comes before {x}?", "Which month comes before {x}?", "What month is before {x}?"]),
    "letter": (["What letter comes after {x}?", "Which letter is after {x}?"],
               ["What letter comes before {x}?", "Which letter is before {x}?"]),
}


def _seq_combos() -> list[Combo]:
    out = []
    for group, seq in _SEQ_ITEMS.items():
        n = len(seq) if group in _SEQ_WRAPS else len(seq) - 1
        out += [Combo("sequence", group, (i,)) for i in range(n)]  # the adjacent pair (i, i+1)
    return out


def _seq_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    seq = _SEQ_ITEMS[c.group]
    (i,) = c.values
    first, second = seq[i], seq[(i + 1) % len(seq)]
    after, before = _SEQ_Q[c.group]
    if rng.random() < 0.6:
        return rng.choice(after).format(x=first), f"{cap(second)} comes after {first}."
    return rng.choice(before).format(x=second), f"{cap(first)} comes before {second}."


# --- days and months ------------------------------------------------------------------------------

_COUNT_FACTS = {  # unit, period, number
    "week": ("days", "a week", 7), "year": ("months", "a year", 12), "day": ("hours", "a day", 24),
    "hour": ("minutes", "an hour", 60), "minute": ("seconds", "a minute", 60),
}
_CAL_Q = {
    "month_ordinal": ["What is the {o} month of the year?", "Which month is the {o} month of the year?",
                      "Name the {o} month of the year."],
    "day_ordinal": ["What is the {o} day of the week?", "Which day is the {o} day of the week?",
                    "Name the {o} day of the week."],
    "month_length": ["How many days are in {m}?", "How many days does {m} have?"],
    "weekend": ["Is {d} a weekend day?", "Is {d} part of the weekend?"],
    "count": ["How many {u} are in {p}?", "How many {u} does {p} have?"],
}


def _cal_combos() -> list[Combo]:
    out = [Combo("calendar", "month_ordinal", (i,)) for i in range(12)]
    out += [Combo("calendar", "day_ordinal", (i,)) for i in range(7)]
    out += [Combo("calendar", "month_length", (i,)) for i in range(12)]
    out += [Combo("calendar", "weekend", (i,)) for i in range(7)]
    out += [Combo("calendar", "count", (k,)) for k in _COUNT_FACTS]
    return out


def _cal_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    (v,) = c.values
    t = rng.choice(_CAL_Q[c.group])
    if c.group == "month_ordinal":
        return t.format(o=F.ORDINALS[v]), f"The {F.ORDINALS[v]} month of the year is {F.MONTHS[v]}."
    if c.group == "day_ordinal":
        return t.format(o=F.ORDINALS[v]), f"The {F.ORDINALS[v]} day of the week is {F.DAYS[v]}."
    if c.group == "month_length":
        return t.format(m=F.MONTHS[v]), f"{F.MONTHS[v]} has {w(F.MONTH_DAYS[v])} days."
    if c.group == "weekend":
        day = F.DAYS[v]
        return t.format(d=day), (f"Yes, {day} is a weekend day." if v >= 5 else f"No, {day} is a weekday.")
    unit, period, n = _COUNT_FACTS[str(v)]
    return t.format(u=unit, p=period), f"There are {w(n)} {unit} in {period}."


# --- facts from the bundled tables ----------------------------------------------------------------

_FACT_Q = {
    "capital": ["What is the capital of {x}?", "What's the capital of {x}?", "Which city is the capital of {x}?",
                "Tell me the capital of {x}."],
    "colour": ["What colour is {x}?", "What is the colour of {x}?", "Tell me the colour of {x}."],
    "opposite": ["What is the opposite of {x}?", "What's the opposite of {x}?", "Tell me the opposite of {x}."],
    "sound": ["What sound does {x} make?", "What does {x} say?", "What noise does {x} make?"],
    "legs": ["How many legs does {x} have?", "How many legs has {x} got?"],
}


def _fact_combos() -> list[Combo]:
    out = [Combo("facts", "capital", (k,)) for k in F.CAPITALS]
    out += [Combo("facts", "colour", (k,)) for k in F.COLOURS]
    out += [Combo("facts", "opposite", pair) for pair in F.OPPOSITES]  # both directions held out together
    out += [Combo("facts", "sound", (k,)) for k in F.ANIMAL_SOUNDS]
    out += [Combo("facts", "legs", (k,)) for k in F.ANIMAL_LEGS]
    return out


def _fact_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    t = rng.choice(_FACT_Q[c.group])
    if c.group == "capital":
        (country,) = c.values
        return t.format(x=country), f"The capital of {country} is {F.CAPITALS[str(country)]}."
    if c.group == "colour":
        (thing,) = c.values
        return t.format(x=thing), f"{cap(str(thing))} is {F.COLOURS[str(thing)]}."
    if c.group == "opposite":
        x, y = c.values if rng.random() < 0.5 else c.values[::-1]
        return t.format(x=x), f"The opposite of {x} is {y}."
    (animal,) = c.values
    a = F.article(str(animal))
    if c.group == "sound":
        return t.format(x=a), f"{cap(a)} says {F.ANIMAL_SOUNDS[str(animal)]}."
    legs = F.ANIMAL_LEGS[str(animal)]
    return t.format(x=a), f"{cap(a)} has {w(legs) if legs else 'no'} legs."


# --- repeat after me ------------------------------------------------------------------------------

_REPEAT_Q = ["Repeat after me: {p}.", "Say {p}.", "Please say {p}.", "Can you say {p}?", "Repeat this: {p}."]


def _repeat_combos() -> list[Combo]:
    out = [Combo("repeat", "two", (a, n)) for a in F.SIZES + F.COLOUR_WORDS for n in F.NOUNS]
    out += [Combo("repeat", "three", (s, c, n)) for s in F.SIZES for c in F.COLOUR_WORDS for n in F.NOUNS]
    return out


def _repeat_render(c: Combo, rng: random.Random) -> tuple[str, str]:
    phrase = " ".join(map(str, c.values))
    return rng.choice(_REPEAT_Q).format(p=phrase), cap(phrase) + "."


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill("arithmetic", 0.25, _arith_combos, _arith_render),
        Skill("counting", 0.08, _count_combos, _count_render),
        Skill("comparison", 0.12, _compare_combos, _compare_render),
        Skill("sequence", 0.15, _seq_combos, _seq_render),
        Skill("calendar", 0.10, _cal_combos, _cal_render),
        Skill("facts", 0.15, _fact_combos, _fact_render),
        Skill("repeat", 0.15, _repeat_combos, _repeat_render),
    ]
}


def render(combo: Combo, rng: random.Random) -> QA:
    q, a = SKILLS[combo.skill].render(combo, rng)
    return QA(q, a, combo)


# --- the held-out split rule ----------------------------------------------------------------------

Pools = dict[str, dict[str, dict[str, list[Combo]]]]  # split -> skill -> group -> combos


def _rank(combo: Combo) -> str:
    return hashlib.sha1(f"{SPLIT_SALT}/{combo.key}".encode()).hexdigest()


def assign_splits(valid_frac: float = 0.05, test_frac: float = 0.10) -> Pools:
    """Every combination -> exactly one split, by a salted hash rank within its (skill, group).

    Ranking (rather than thresholding a hash) guarantees each group of >= 5 combinations
    gives valid and test at least one combination each.
    """
    pools: Pools = {s: {} for s in SPLITS}
    for skill in SKILLS.values():
        groups: dict[str, list[Combo]] = {}
        for c in skill.combos():
            groups.setdefault(c.group, []).append(c)
        for group, combos in groups.items():
            combos = sorted(combos, key=_rank)
            n = len(combos)
            n_test = max(1, round(n * test_frac)) if n >= 5 else 0
            n_valid = max(1, round(n * valid_frac)) if n >= 5 else 0
            parts = {"test": combos[:n_test], "valid": combos[n_test : n_test + n_valid],
                     "train": combos[n_test + n_valid :]}
            for split, part in parts.items():
                if part:
                    pools[split].setdefault(skill.name, {})[group] = part
    return pools


def sample_qa(pools: Pools, split: str, rng: random.Random) -> QA:
    """One question of `split`: a skill by weight, a group by sqrt(size), a combination uniformly.

    sqrt weighting keeps small tables (the seven days) from being drowned by big ones
    (1,280 three-word phrases) without repeating them endlessly.
    """
    by_skill = pools[split]
    names = sorted(by_skill)
    skill = rng.choices(names, weights=[SKILLS[n].weight for n in names])[0]
    groups = sorted(by_skill[skill])
    group = rng.choices(groups, weights=[math.sqrt(len(by_skill[skill][g])) for g in groups])[0]
    return render(rng.choice(by_skill[skill][group]), rng)


def item_rng(seed: int, split: str, index: int) -> random.Random:
    """The random stream of one item: independent of size and worker count (string seeds
    are hashed with SHA-512, so they do not depend on PYTHONHASHSEED)."""
    return random.Random(f"{seed}/{split}/{index}")


def generate(split: str, n: int, seed: int = 0, pools: Pools | None = None) -> list[QA]:
    """The first `n` questions of `split` for `seed`, without audio (as the corpus builder draws them)."""
    pools = pools or assign_splits()
    return [sample_qa(pools, split, item_rng(seed, split, j)) for j in range(n)]
