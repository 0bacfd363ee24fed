"""A small phrasing grammar: templates with alternatives, held-out patterns, fillers and wrappers.

A *template* is one way of asking, written with alternatives and options:
    "what (does|do) {a} plus {b} (equal|make|come to)"   "[please ]count from {a} to {b}"
`(x|y)` picks one alternative, `[x]` is optional, `{slot}` is filled from the question's
content. A template is the unit that is held out: a test question uses a template (a word
order, a construction) that training never used in any of its expansions, so the test split
measures what users do, who ask in their own words. Templates are wrapped (`can you tell me
...?`, `..., please.`) and prefixed with fillers (`um, so`), which are held out in part too.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\(([^()\[\]]*)\)|\[([^()\[\]]*)\]")


@dataclass(frozen=True)
class Template:
    text: str
    kind: str = "q"  # "q": a question ("what is ..."), "imp": a request ("add ... and ...")
    mode: str = ""  # which answer the skill gives (e.g. "after" / "before")

    def choices(self) -> list[list[str]]:
        """The template as a list of parts, each a list of alternatives."""
        parts: list[list[str]] = []
        pos = 0
        for m in _TOKEN.finditer(self.text):
            parts.append([self.text[pos : m.start()]])
            parts.append(m.group(1).split("|") if m.group(1) is not None else [m.group(2), ""])
            pos = m.end()
        parts.append([self.text[pos:]])
        return parts

    def expand(self, rng: random.Random) -> str:
        return _tidy("".join(rng.choice(p) for p in self.choices()))

    def expansions(self) -> list[str]:
        return [_tidy("".join(c)) for c in itertools.product(*self.choices())]


def _tidy(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().replace(" ,", ",")


# Wrappers turn a template into a sentence; fillers go in front (spoken questions start so).
WRAPPERS = {
    "q": [
        "{}?",
        "{}, please?",
        "so {}?",
        "can you tell me {}?",
        "do you know {}?",
        "I'd like to know {}.",
        "I was wondering, {}?",
        "tell me, {}?",
        "could you tell me {}?",
        "any idea {}?",
        "I want to know {}.",
    ],
    "imp": [
        "{}.",
        "please {}.",
        "{}, please.",
        "could you {}?",
        "can you {}?",
        "would you {}?",
        "I'd like you to {}.",
        "go ahead and {}.",
        "now {}.",
        "will you {}?",
    ],
}
FILLERS = [
    "",
    "",
    "",
    "um, ",
    "uh, ",
    "so, ",
    "okay, ",
    "hey, ",
    "well, ",
    "hmm, ",
    "alright, ",
    "right, ",
    "quick question, ",
    "excuse me, ",
    "oh, ",
    "hey there, ",
    "okay so, ",
]


def rank(salt: str, key: str) -> str:
    return hashlib.sha1(f"{salt}/{key}".encode()).hexdigest()


def split_list(items: list, salt: str, key: str, valid_frac: float, test_frac: float) -> dict[str, list]:
    """Held-out split of a list by salted hash rank: each list of >= 3 gives valid and test at
    least one item each and training the rest (a shorter list stays whole in training)."""
    order = sorted(items, key=lambda x: rank(salt, f"{key}/{x}"))
    n = len(order)
    if n < 3:
        return {"train": order, "valid": [], "test": []}
    n_test = max(1, round(n * test_frac))
    n_valid = max(1, round(n * valid_frac))
    return {"test": order[:n_test], "valid": order[n_test : n_test + n_valid], "train": order[n_test + n_valid :]}


@dataclass(frozen=True)
class Surface:
    """The held-out split of the wrappers and fillers (templates are split per skill)."""

    wrappers: dict[str, dict[str, list[str]]]  # split -> kind -> wrappers
    fillers: dict[str, list[str]]  # split -> fillers

    @classmethod
    def make(cls, salt: str, held_out: float = 0.25) -> Surface:
        wrappers: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}, "test": {}}
        for kind, ws in WRAPPERS.items():
            parts = split_list(ws, salt, f"wrapper/{kind}", 0.0, held_out)
            wrappers["train"][kind] = parts["train"]
            wrappers["valid"][kind] = wrappers["test"][kind] = ws  # held-out questions may use any
        fill = split_list(sorted(set(FILLERS) - {""}), salt, "filler", 0.0, held_out)
        plain = [f for f in FILLERS if f == ""]
        fillers = {"train": plain + fill["train"], "valid": FILLERS, "test": FILLERS}
        return cls(wrappers, fillers)

    def phrase(self, split: str, template: Template, slots: dict[str, str], rng: random.Random) -> str:
        """A full question: filler + wrapped template, slots filled, first letter capitalised."""
        core = template.expand(rng).format(**slots)
        text = rng.choice(self.fillers[split]) + rng.choice(self.wrappers[split][template.kind]).format(core)
        return text[:1].upper() + text[1:]

    def count(self, split: str, template: Template) -> int:
        """Distinct surface forms of a template in a split (before slots are filled)."""
        return len(template.expansions()) * len(self.wrappers[split][template.kind]) * len(set(self.fillers[split]))
