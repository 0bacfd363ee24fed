"""Text normalisation, word error rate and exact match for judging spoken answers.

The independent ASR writes "7 plus 2 is 9." where the reference says "Seven plus two is
nine": without normalising both sides, WER would measure spelling conventions, not speech.
`normalize` lowercases, expands common contractions, spells numbers out (integers with
thousands separators, negatives, decimals, ordinals, $ amounts, percentages, clock times),
unifies British/American spellings of common words, and drops punctuation.
"""

from __future__ import annotations

import re

import jiwer

from flowomni.data.facts import ONES, TENS

_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

# Contractions both the references and the ASR use interchangeably with their long forms.
_CONTRACTIONS = [
    (r"\bcan't\b", "cannot"),
    (r"\bwon't\b", "will not"),
    (r"\bshan't\b", "shall not"),
    (r"\blet's\b", "let us"),
    (r"\b(it|that|what|there|here|he|she|who|where|how)'s\b", r"\1 is"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'m\b", " am"),
    (r"'d\b", " would"),
]
_SPELLING = {
    "colour": "color",
    "colours": "colors",
    "favourite": "favorite",
    "grey": "gray",
    "centre": "center",
    "metre": "meter",
    "metres": "meters",
    "litre": "liter",
    "litres": "liters",
    "theatre": "theater",
    "neighbour": "neighbor",
    "honour": "honor",
    "organise": "organize",
    "realise": "realize",
    "okay": "ok",
}


def number_to_words(n: int) -> str:
    """Cardinal words for an integer: 1234 -> "one thousand two hundred thirty four"."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    for value, word in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return number_to_words(head) + " " + word + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth"."""
    *head, last = number_to_words(n).split()
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _number_words(m: re.Match) -> str:
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    words = number_to_words(int(whole))
    if frac is not None:
        words += " point " + " ".join(ONES[int(d)] for d in frac)
    return (" minus " if sign else " ") + words + " "


def _numbers_to_words(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"\$(\d+(?:\.\d+)?)", r"\1 dollars", text)
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = re.sub(r"\b(\d{1,2}):00\b", r"\1 o'clock", text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", r"\1 \2", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: " " + ordinal_words(int(m.group(1))) + " ", text)
    # a minus sign only where it cannot be a hyphen or a range (not after a word character)
    return re.sub(r"(?<![\w.])(-)?(\d+)(?:\.(\d+))?", _number_words, text)


def normalize(text: str) -> str:
    """Lowercase words without punctuation, numbers spelled out: "It's 7." -> "it is seven"."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("o.k.", "ok")
    t = _numbers_to_words(t)
    for pattern, repl in _CONTRACTIONS:
        t = re.sub(pattern, repl, t)
    t = re.sub(r"[^a-z0-9' ]+", " ", t)  # punctuation, hyphens (twenty-one -> twenty one)
    t = t.replace("'", "")  # o'clock -> oclock, france's -> frances (same on both sides)
    return " ".join(_SPELLING.get(w, w) for w in t.split())


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (edits / reference words) on normalised text."""
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    r, h = [normalize(x) for x in refs], [normalize(x) for x in hyps]
    n_ref = sum(len(x.split()) for x in r)
    if n_ref == 0:
        raise ValueError("wer: the references have no words")
    pairs = [(a, b) for a, b in zip(r, h) if a]
    errors = sum(len(b.split()) for a, b in zip(r, h) if not a)  # words said where none were expected
    if pairs:
        out = jiwer.process_words([a for a, _ in pairs], [b for _, b in pairs])
        errors += out.substitutions + out.deletions + out.insertions
    return errors / n_ref


def exact_match(ref: str, hyp: str) -> bool:
    return normalize(ref) == normalize(hyp)
