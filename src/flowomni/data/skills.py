"""The skills of the synthetic spoken-QA corpus, each a phrasing grammar over its content.

A skill enumerates its *combinations* (the content of a question: an operand pair, a day, a
phrase) and its *templates* (ways to ask, see grammar.py), and answers with a short sentence
that is a function of the content and of what was asked (e.g. "after" or "before").

What is held out, and why (the test split measures what users do, who ask in their own words):
- phrasings, in every skill: valid and test questions use templates (constructions, word
  orders) that no training question used, plus fillers and wrappers training never heard;
- combinations, where a model can generalise to them: counting ranges, number comparisons
  and repeated phrases (new combinations of known words);
- a share of the world facts ("facts_heldout"): the model cannot infer a capital it never
  heard, so these measure honesty about that limit and are left out of the accuracy target.
Table skills (arithmetic up to ten, days, months, letters, numbers to 99, calendar facts) are
finite content that users ask about all of: every combination is trained, and the test asks
them in held-out phrasings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from flowomni.data import facts as F
from flowomni.data.facts import number_words as w
from flowomni.data.grammar import Surface, Template, split_list

SPLITS = ("train", "valid", "test")
SPLIT_SALT = "flowomni-spoken-qa-v2"  # fixed, not the build seed: every build holds out the same things
HELD_OUT_FACTS = "facts_heldout"  # the pseudo-skill of held-out world facts (outside the accuracy target)


@dataclass(frozen=True)
class Combo:
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
    template: str = ""  # the phrasing pattern asked with (held out per split)
    skill: str = ""  # reporting name: the combo's skill, or HELD_OUT_FACTS

    @property
    def key(self) -> str:
        return self.combo.key


Answer = Callable[[Combo, str, dict[str, str]], str]  # (combo, mode, slots) -> answer


@dataclass(frozen=True)
class Skill:
    name: str
    weight: float  # share of items
    combos: Callable[[], list[Combo]]
    templates: dict[str, list[Template]]  # group -> templates (each with its answer mode)
    slots: Callable[[Combo, str, random.Random], dict[str, str]]  # (combo, mode, rng) -> slot values
    answer: Answer
    hold_out_combos: float = 0.0  # share of combinations held out for valid + test
    # group -> always-trained templates that teach an operator phrase a held-out template uses
    # in a training construction (assign_splits(taught=True)); outside the split, so adding one
    # leaves the held-out templates as they were
    taught: dict[str, list[Template]] = field(default_factory=dict)


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def T(text: str, kind: str = "q", mode: str = "") -> Template:
    return Template(text, kind, mode)


# --- arithmetic: "What is seven plus two?" -> "Seven plus two is nine." ------------------------

_ARITH = {
    "plus": [
        T("(what is|what's|how much is) {a} plus {b}"),
        T("what (does|do) {a} plus {b} (equal|make|come to)"),
        T("add {a} and {b}", "imp"),
        T("what is the (sum|total) of {a} and {b}"),
        T("what do you get (if|when) you add {a} (and|to) {b}"),
        T("{a} plus {b} (equals|is) what"),
        T("(work out|calculate|figure out) {a} plus {b}", "imp"),
        T("how much (is|are) {a} and {b} (together|in total)"),
        T("if you add {a} and {b}, what do you get"),
        T("(tell me|give me) the (sum|total) of {a} and {b}", "imp"),
        T("what's {a} added to {b}"),
        T("what number is {a} plus {b}"),
    ],
    "minus": [
        T("(what is|what's|how much is) {a} minus {b}"),
        T("what (does|do) {a} minus {b} (equal|make|come to)"),
        T("(take|subtract) {b} (from|away from) {a}", "imp"),
        T("what do you get (if|when) you (take|subtract) {b} from {a}"),
        T("{a} minus {b} (equals|is) what"),
        T("(work out|calculate|figure out) {a} minus {b}", "imp"),
        T("what is {a} take away {b}"),
        T("what is the difference between {a} and {b}"),
        T("if you take {b} away from {a}, what is left"),
        T("how much is left (if|when) you take {b} from {a}"),
        T("(tell me|give me) {a} minus {b}", "imp"),
        T("what number is {a} minus {b}"),
    ],
    "times": [
        T("(what is|what's|how much is) {a} times {b}"),
        T("what (does|do) {a} times {b} (equal|make|come to)"),
        T("multiply {a} (by|and) {b}", "imp"),
        T("what do you get (if|when) you multiply {a} by {b}"),
        T("{a} times {b} (equals|is) what"),
        T("(work out|calculate|figure out) {a} times {b}", "imp"),
        T("what is {a} multiplied by {b}"),
        T("what is the product of {a} and {b}"),
        T("how much is {a} lots of {b}"),
        T("(tell me|give me) {a} times {b}", "imp"),
        T("what number is {a} times {b}"),
        T("if you multiply {a} (by|and) {b}, what do you get"),
    ],
}


# "what is {a} take away {b}" is held out, and no training question says "take away" between
# two numbers (benchmarks/template_accuracy.py): taught in a construction training has
_ARITH_TAUGHT = {"minus": [T("(work out|calculate|figure out) {a} take away {b}", "imp")]}


def _arith_combos() -> list[Combo]:
    out = [Combo("arithmetic", "plus", (a, b)) for a in range(11) for b in range(11)]
    out += [Combo("arithmetic", "minus", (a, b)) for a in range(21) for b in range(min(a, 10) + 1)]
    out += [Combo("arithmetic", "times", (a, b)) for a in range(11) for b in range(11)]
    return out


def _arith_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    a, b = c.values
    return {"a": w(int(a)), "b": w(int(b))}


def _arith_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    a, b = map(int, c.values)
    result = {"plus": a + b, "minus": a - b, "times": a * b}[c.group]
    return f"{cap(w(a))} {c.group} {w(b)} is {w(result)}."


# --- counting: "Count from three to six." -> "Three, four, five, six." ----------------------------

_COUNT = {
    "up": [
        T("count from {a} to {b}", "imp"),
        T("count up from {a} to {b}", "imp"),
        T("start at {a} and count [up ]to {b}", "imp"),
        T("count to {b} starting (at|from) {a}", "imp"),
        T("(list|say) the numbers from {a} (to|up to) {b}", "imp"),
        T("what are the numbers from {a} to {b}"),
        T("count (upwards|forwards) from {a} to {b}", "imp"),
        T("how do you count from {a} to {b}"),
    ],
    "down": [
        T("count down from {a} to {b}", "imp"),
        T("count backwards from {a} to {b}", "imp"),
        T("start at {a} and count (down|back) to {b}", "imp"),
        T("count down to {b} starting (at|from) {a}", "imp"),
        T("(list|say) the numbers from {a} down to {b}", "imp"),
        T("what are the numbers from {a} down to {b}"),
        T("how do you count (down|backwards) from {a} to {b}"),
    ],
}


def _count_combos() -> list[Combo]:
    pairs = [(a, a + span) for a in range(1, 18) for span in (2, 3)]  # <= 4 numbers, up to twenty: short answers
    return [Combo("counting", "up", p) for p in pairs] + [Combo("counting", "down", p[::-1]) for p in pairs]


def count_answer(a: int, b: int) -> str:
    """ "Three, four, five." for 3 -> 5 (down when b < a)."""
    step = 1 if b > a else -1
    return cap(", ".join(w(n) for n in range(a, b + step, step))) + "."


def _count_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    return count_answer(*map(int, c.values))


# --- comparison: "Which is bigger, four or nine?" -> "Nine is bigger than four." ------------------

_BIG, _SMALL = "(bigger|larger|greater)", "(smaller|less|lower)"
_COMPARE = {
    "pair": [
        T(f"which is {_BIG}, {{x}} or {{y}}", mode="bigger"),
        T(f"which number is {_BIG}, {{x}} or {{y}}", mode="bigger"),
        T("which of {x} and {y} is (bigger|larger|greater|more)", mode="bigger"),
        T("{x} or {y}, which is (bigger|larger|more)", mode="bigger"),
        T(f"what is the {_BIG} number, {{x}} or {{y}}", mode="bigger"),
        T(f"tell me the {_BIG} (number|one) of {{x}} and {{y}}", "imp", "bigger"),
        T(f"is {{x}} or {{y}} {_BIG}", mode="bigger"),
        T(f"(pick|choose) the {_BIG} number: {{x}} or {{y}}", "imp", "bigger"),
        T(f"which is {_SMALL}, {{x}} or {{y}}", mode="smaller"),
        T(f"which number is {_SMALL}, {{x}} or {{y}}", mode="smaller"),
        T(f"which of {{x}} and {{y}} is {_SMALL}", mode="smaller"),
        T(f"{{x}} or {{y}}, which is {_SMALL}", mode="smaller"),
        T("what is the (smaller|lower) number, {x} or {y}", mode="smaller"),
        T("tell me the (smaller|lower) (number|one) of {x} and {y}", "imp", "smaller"),
        T("is {x} or {y} (smaller|less)", mode="smaller"),
        T("(pick|choose) the (smaller|lower) number: {x} or {y}", "imp", "smaller"),
        T(f"is {{x}} {_BIG} than {{y}}", mode="is_bigger"),
        T("is {x} more than {y}", mode="is_bigger"),
        T(f"would you say {{x}} is {_BIG} than {{y}}", mode="is_bigger"),
        T(f"{{x}} is {_BIG} than {{y}}, (right|true)", mode="is_bigger"),
        T(f"is it true that {{x}} is {_BIG} than {{y}}", mode="is_bigger"),
        T(f"is {{x}} {_SMALL} than {{y}}", mode="is_smaller"),
        T("is {x} lower than {y}", mode="is_smaller"),
        T("would you say {x} is (smaller|less) than {y}", mode="is_smaller"),
        T("{x} is (smaller|less) than {y}, (right|true)", mode="is_smaller"),
        T("is it true that {x} is (smaller|less) than {y}", mode="is_smaller"),
    ],
}


# "is {x} more than {y}" is held out, and "more than" is in no training question
_COMPARE_TAUGHT = {"pair": [T("would you say {x} is more than {y}", mode="is_bigger")]}


def _compare_combos() -> list[Combo]:
    return [Combo("comparison", "pair", (a, b)) for a in range(21) for b in range(a + 1, 21)]


def _compare_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    x, y = c.values if rng.random() < 0.5 else c.values[::-1]
    return {"x": w(int(x)), "y": w(int(y))}


def _compare_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    small, big = w(int(c.values[0])), w(int(c.values[1]))
    x, y = slots["x"], slots["y"]
    if mode == "bigger":
        return f"{cap(big)} is bigger than {small}."
    if mode == "smaller":
        return f"{cap(small)} is smaller than {big}."
    x_big = x == big
    if mode == "is_bigger":
        return f"Yes, {x} is bigger than {y}." if x_big else f"No, {x} is smaller than {y}."
    return f"Yes, {x} is smaller than {y}." if not x_big else f"No, {x} is bigger than {y}."


# --- what comes next / before: numbers, days, months, letters ------------------------------------

_SEQ_ITEMS: dict[str, list[str]] = {
    "number": [w(n) for n in range(100)],
    "day": F.DAYS,
    "month": F.MONTHS,
    "letter": F.LETTERS,
}
_SEQ_WRAPS = {"day", "month"}  # Sunday -> Monday, December -> January
_SEQ_TEMPLATES = [
    T("what comes after {x}", mode="after"),
    T("what {unit} comes after {x}", mode="after"),
    T("what is the {unit} after {x}", mode="after"),
    T("what's the next {unit} after {x}", mode="after"),
    T("which {unit} (follows|comes right after|is right after) {x}", mode="after"),
    T("what follows {x}", mode="after"),
    T("(name|say) the {unit} (after|that follows) {x}", "imp", "after"),
    T("after {x}, what comes next", mode="after"),
    T("what is one {unit} after {x}", mode="after"),
    T("what comes before {x}", mode="before"),
    T("what {unit} comes before {x}", mode="before"),
    T("what is the {unit} before {x}", mode="before"),
    T("what's the {unit} just before {x}", mode="before"),
    T("which {unit} (precedes|comes right before|is right before) {x}", mode="before"),
    T("what (precedes|is before) {x}", mode="before"),
    T("(name|say) the {unit} (before|that comes before) {x}", "imp", "before"),
    T("{x} comes after what", mode="before"),
    T("what is one {unit} before {x}", mode="before"),
]
_SEQ = {g: _SEQ_TEMPLATES for g in _SEQ_ITEMS}


def _seq_combos() -> list[Combo]:
    out = []
    for group, seq in _SEQ_ITEMS.items():
        n = len(seq) if group in _SEQ_WRAPS else len(seq) - 1
        out += [Combo("sequence", group, (i,)) for i in range(n)]  # the adjacent pair (i, i+1)
    return out


def _seq_pair(c: Combo) -> tuple[str, str]:
    seq = _SEQ_ITEMS[c.group]
    (i,) = c.values
    return seq[int(i)], seq[(int(i) + 1) % len(seq)]


def _seq_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    first, second = _seq_pair(c)
    return {"x": first if mode == "after" else second, "unit": c.group}


def _seq_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    first, second = _seq_pair(c)
    return f"{cap(second)} comes after {first}." if mode == "after" else f"{cap(first)} comes before {second}."


# --- days and months ------------------------------------------------------------------------------

_COUNT_FACTS = {  # unit, period, number
    "week": ("days", "a week", 7),
    "year": ("months", "a year", 12),
    "day": ("hours", "a day", 24),
    "hour": ("minutes", "an hour", 60),
    "minute": ("seconds", "a minute", 60),
}
_CAL = {
    "month_ordinal": [
        T("what is the {o} month of the year"),
        T("which month is the {o} month[ of the year]"),
        T("name the {o} month[ of the year]", "imp"),
        T("what month (comes|is) {o} in the year"),
        T("tell me the {o} month of the year", "imp"),
        T("what's the {o} month"),
    ],
    "day_ordinal": [
        T("what is the {o} day of the week"),
        T("which day is the {o} day[ of the week]"),
        T("name the {o} day[ of the week]", "imp"),
        T("what day (comes|is) {o} in the week"),
        T("tell me the {o} day of the week", "imp"),
        T("what's the {o} day"),
    ],
    "month_length": [
        T("how many days (are|are there) in {m}"),
        T("how many days does {m} have"),
        T("how many days are in the month of {m}"),
        T("{m} has how many days"),
        T("tell me how many days {m} has", "imp"),
        T("what is the number of days in {m}"),
    ],
    "weekend": [
        T("is {d} a weekend day", mode="weekend"),
        T("is {d} on the weekend", mode="weekend"),
        T("does {d} fall on the weekend", mode="weekend"),
        T("is {d} in the weekend", mode="weekend"),
        T("would {d} be a weekend day", mode="weekend"),
        T("is {d} a (weekday|week day)", mode="weekday"),
        T("is {d} a (working|work) day", mode="weekday"),
        T("is {d} one of the (weekdays|working days)", mode="weekday"),
        T("is {d} one of the days you work", mode="weekday"),
        T("would {d} be a weekday", mode="weekday"),
        T("is {d} during the week", mode="weekday"),
    ],
    "count": [
        T("how many {u} are (in|there in) {p}"),
        T("how many {u} does {p} have"),
        T("{p} has how many {u}"),
        T("how many {u} make {p}"),
        T("tell me how many {u} are in {p}", "imp"),
        T("what is the number of {u} in {p}"),
    ],
}


def _cal_combos() -> list[Combo]:
    out = [Combo("calendar", "month_ordinal", (i,)) for i in range(12)]
    out += [Combo("calendar", "day_ordinal", (i,)) for i in range(7)]
    out += [Combo("calendar", "month_length", (i,)) for i in range(12)]
    out += [Combo("calendar", "weekend", (i,)) for i in range(7)]
    out += [Combo("calendar", "count", (k,)) for k in _COUNT_FACTS]
    return out


def _cal_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    (v,) = c.values
    if c.group == "count":
        unit, period, _ = _COUNT_FACTS[str(v)]
        return {"u": unit, "p": period}
    i = int(v)
    if c.group in ("month_ordinal", "day_ordinal"):
        return {"o": F.ORDINALS[i]}
    return {"m": F.MONTHS[i]} if c.group == "month_length" else {"d": F.DAYS[i]}


def _cal_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    (v,) = c.values
    if c.group == "count":
        unit, period, n = _COUNT_FACTS[str(v)]
        return f"There are {w(n)} {unit} in {period}."
    i = int(v)
    if c.group == "month_ordinal":
        return f"The {F.ORDINALS[i]} month of the year is {F.MONTHS[i]}."
    if c.group == "day_ordinal":
        return f"The {F.ORDINALS[i]} day of the week is {F.DAYS[i]}."
    if c.group == "month_length":
        return f"{F.MONTHS[i]} has {w(F.MONTH_DAYS[i])} days."
    day, weekend = F.DAYS[i], i >= 5
    if mode == "weekend":
        return f"Yes, {day} is a weekend day." if weekend else f"No, {day} is a weekday."
    return f"Yes, {day} is a weekday." if not weekend else f"No, {day} is a weekend day."


# --- facts from the bundled tables ----------------------------------------------------------------

_FACTS = {
    "capital": [
        T("what is the capital of {x}"),
        T("what's the capital city of {x}"),
        T("which city is the capital of {x}"),
        T("what is {x}'s capital[ city]"),
        T("name the capital of {x}", "imp"),
        T("tell me the capital[ city] of {x}", "imp"),
        T("the capital of {x} is what"),
        T("what city is {x}'s capital"),
    ],
    "colour": [
        T("what colour is {x}"),
        T("what is the colour of {x}"),
        T("tell me the colour of {x}", "imp"),
        T("which colour is {x}"),
        T("what colour does {x} have"),
        T("name the colour of {x}", "imp"),
        T("{x} is what colour"),
    ],
    "opposite": [
        T("what is the opposite of {x}"),
        T("what's the opposite of {x}"),
        T("tell me the opposite of {x}", "imp"),
        T("what word means the opposite of {x}"),
        T("give me the opposite of {x}", "imp"),
        T("the opposite of {x} is what"),
        T("name the opposite of {x}", "imp"),
    ],
    "sound": [
        T("what sound does {x} make"),
        T("what does {x} say"),
        T("what noise does {x} make"),
        T("how does {x} go"),
        T("which sound does {x} make"),
        T("tell me what {x} says", "imp"),
        T("{x} says what"),
    ],
    "legs": [
        T("how many legs does {x} have"),
        T("how many legs has {x} got"),
        T("{x} has how many legs"),
        T("tell me how many legs {x} has", "imp"),
        T("what is the number of legs on {x}"),
        T("how many legs are there on {x}"),
    ],
}


def _fact_combos() -> list[Combo]:
    out = [Combo("facts", "capital", (k,)) for k in F.CAPITALS]
    out += [Combo("facts", "colour", (k,)) for k in F.COLOURS]
    out += [Combo("facts", "opposite", pair) for pair in F.OPPOSITES]  # both directions held out together
    out += [Combo("facts", "sound", (k,)) for k in F.ANIMAL_SOUNDS]
    out += [Combo("facts", "legs", (k,)) for k in F.ANIMAL_LEGS]
    return out


def _fact_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    if c.group == "opposite":
        x, y = c.values if rng.random() < 0.5 else c.values[::-1]
        return {"x": str(x), "y": str(y)}
    (v,) = c.values
    return {"x": F.article(str(v)) if c.group in ("sound", "legs") else str(v)}


def _fact_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    x = slots["x"]
    if c.group == "capital":
        return f"The capital of {x} is {F.CAPITALS[x]}."
    if c.group == "colour":
        return f"{cap(x)} is {F.COLOURS[x]}."
    if c.group == "opposite":
        return f"The opposite of {x} is {slots['y']}."
    (animal,) = c.values
    if c.group == "sound":
        return f"{cap(x)} says {F.ANIMAL_SOUNDS[str(animal)]}."
    legs = F.ANIMAL_LEGS[str(animal)]
    return f"{cap(x)} has {w(legs) if legs else 'no'} legs."


# --- repeat after me ------------------------------------------------------------------------------

_REPEAT = {
    g: [
        T(t, "imp")
        for t in (
            "repeat after me: {p}",
            "say {p}",
            "repeat this: {p}",
            "say the (words|phrase) {p}",
            "repeat the phrase {p}",
            "just say {p}",
            "say after me: {p}",
            "repeat the (words|phrase) {p}",
            "say this: {p}",
            "just repeat {p}",
        )
    ]
    for g in ("two", "three")
}


def _repeat_combos() -> list[Combo]:
    out = [Combo("repeat", "two", (a, n)) for a in F.SIZES + F.COLOUR_WORDS for n in F.NOUNS]
    out += [Combo("repeat", "three", (s, c, n)) for s in F.SIZES for c in F.COLOUR_WORDS for n in F.NOUNS]
    return out


def _repeat_slots(c: Combo, mode: str, rng: random.Random) -> dict[str, str]:
    return {"p": " ".join(map(str, c.values))}


def _repeat_answer(c: Combo, mode: str, slots: dict[str, str]) -> str:
    return cap(slots["p"]) + "."


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill("arithmetic", 0.25, _arith_combos, _ARITH, _arith_slots, _arith_answer, taught=_ARITH_TAUGHT),
        Skill("counting", 0.08, _count_combos, _COUNT, _arith_slots, _count_answer),
        Skill("comparison", 0.12, _compare_combos, _COMPARE, _compare_slots, _compare_answer, taught=_COMPARE_TAUGHT),
        Skill("sequence", 0.15, _seq_combos, _SEQ, _seq_slots, _seq_answer),
        Skill("calendar", 0.10, _cal_combos, _CAL, _cal_slots, _cal_answer),
        Skill("facts", 0.15, _fact_combos, _FACTS, _fact_slots, _fact_answer, hold_out_combos=0.15),
        Skill("repeat", 0.15, _repeat_combos, _REPEAT, _repeat_slots, _repeat_answer, hold_out_combos=0.15),
    ]
}


# --- the held-out split rule ----------------------------------------------------------------------


@dataclass
class Pools:
    """What each split may draw: combinations per skill and group, templates per group, and the
    wrappers and fillers (grammar.Surface). Held-out world facts form their own pseudo-skill."""

    combos: dict[str, dict[str, dict[str, list[Combo]]]]  # split -> skill -> group -> combos
    templates: dict[str, dict[str, dict[str, list[Template]]]]  # split -> skill -> group -> templates
    surface: Surface

    def skill_of(self, skill: str) -> Skill:
        return SKILLS["facts" if skill == HELD_OUT_FACTS else skill]


def assign_splits(valid_frac: float = 0.1, test_frac: float = 0.2, taught: bool = False) -> Pools:
    """Split templates (valid_frac / test_frac of each group's) and, where the skill holds them
    out, combinations (half to valid, half to test), by a salted hash rank: every build holds
    out the same phrasings and contents. `taught` adds each skill's taught templates to
    training (valid and test stay as they are; training draws change in those groups)."""
    combos: dict[str, dict[str, dict[str, list[Combo]]]] = {s: {} for s in SPLITS}
    templates: dict[str, dict[str, dict[str, list[Template]]]] = {s: {} for s in SPLITS}
    for skill in SKILLS.values():
        groups: dict[str, list[Combo]] = {}
        for c in skill.combos():
            groups.setdefault(c.group, []).append(c)
        for group, cs in groups.items():
            modes = sorted({t.mode for t in skill.templates[group]})
            by_split: dict[str, list[Template]] = {s: [] for s in SPLITS}
            for mode in modes:  # every answer mode keeps training templates
                ts = [t for t in skill.templates[group] if t.mode == mode]
                # keyed without the group: a template shared by groups is held out in all of them
                for split, part in split_list(ts, SPLIT_SALT, f"{skill.name}/{mode}", valid_frac, test_frac).items():
                    by_split[split] += part
            if taught:
                by_split["train"] += skill.taught.get(group, [])
            for split in SPLITS:
                templates[split].setdefault(skill.name, {})[group] = by_split[split]
            frac = skill.hold_out_combos
            if not frac:
                for split in SPLITS:
                    combos[split].setdefault(skill.name, {})[group] = cs
                continue
            parts = split_list(cs, SPLIT_SALT, f"combo/{skill.name}/{group}", frac / 2, frac / 2)
            held_name = HELD_OUT_FACTS if skill.name == "facts" else skill.name
            combos["train"].setdefault(skill.name, {})[group] = parts["train"]
            for split in ("valid", "test"):
                # held-out phrasings of trained combinations, and held-out combinations
                own = parts["train"] if held_name != skill.name else parts[split]
                combos[split].setdefault(skill.name, {})[group] = own
                if held_name != skill.name:
                    combos[split].setdefault(held_name, {})[group] = parts[split]
    for split in ("valid", "test"):
        templates[split][HELD_OUT_FACTS] = templates[split]["facts"]
    return Pools(combos, templates, Surface.make(SPLIT_SALT))


def render(pools: Pools, split: str, skill_name: str, combo: Combo, rng: random.Random) -> QA:
    skill = pools.skill_of(skill_name)
    template = rng.choice(pools.templates[split][skill_name][combo.group])
    slots = skill.slots(combo, template.mode, rng)
    question = pools.surface.phrase(split, template, slots, rng)
    return QA(question, skill.answer(combo, template.mode, slots), combo, template.text, skill_name)


def sample_qa(pools: Pools, split: str, rng: random.Random) -> QA:
    """One question of `split`: a skill by weight, a group by sqrt(size), a combination uniformly,
    then a template of that split. sqrt weighting keeps small tables (the seven days) from being
    drowned by big ones (1,280 three-word phrases) without repeating them endlessly."""
    by_skill = pools.combos[split]
    names = sorted(by_skill)
    weights = [pools.skill_of(n).weight * (0.25 if n == HELD_OUT_FACTS else 1.0) for n in names]
    skill = rng.choices(names, weights=weights)[0]
    groups = sorted(g for g, cs in by_skill[skill].items() if cs)
    group = rng.choices(groups, weights=[math.sqrt(len(by_skill[skill][g])) for g in groups])[0]
    return render(pools, split, skill, rng.choice(by_skill[skill][group]), rng)


def item_rng(seed: int, split: str, index: int) -> random.Random:
    """The random stream of one item: independent of size and worker count (string seeds
    are hashed with SHA-512, so they do not depend on PYTHONHASHSEED)."""
    return random.Random(f"{seed}/{split}/{index}")


def generate(split: str, n: int, seed: int = 0, pools: Pools | None = None) -> list[QA]:
    """The first `n` questions of `split` for `seed`, without audio (as the corpus builder draws them)."""
    pools = pools or assign_splits()
    return [sample_qa(pools, split, item_rng(seed, split, j)) for j in range(n)]


def grammar_size(pools: Pools | None = None) -> dict[str, dict[str, int]]:
    """Distinct phrasings per skill and split (templates x their expansions x wrappers x fillers,
    before the content is filled in): the README's table."""
    pools = pools or assign_splits()
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        for skill, groups in pools.templates[split].items():
            if skill == HELD_OUT_FACTS:
                continue
            seen = {t for ts in groups.values() for t in ts}
            row = out.setdefault(skill, {})
            row[f"{split}_templates"] = len(seen)
            row[f"{split}_phrasings"] = sum(pools.surface.count(split, t) for t in seen)
    return out
