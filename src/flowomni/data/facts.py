"""The bundled word lists and fact tables the synthetic skills draw from.

Kept small on purpose: a tiny model must be able to learn the vocabulary, and every answer
must be short enough (<= ~3 s spoken) to be a cheap training target. ASCII only (the char
tokenizer is printable ASCII).
"""

from __future__ import annotations

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..999 as spoken words, without hyphens or "and": 365 -> "three hundred sixty five".

    One word per token keeps the char vocabulary and WER alignment simple.
    """
    if not 0 <= n <= 999:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f" {ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()  # the week starts on Monday
MONTHS = "January February March April May June July August September October November December".split()
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Greece": "Athens",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Austria": "Vienna",
    "Portugal": "Lisbon",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Cuba": "Havana",
    "Thailand": "Bangkok",
    "England": "London",
    "Scotland": "Edinburgh",
    "Denmark": "Copenhagen",
    "Hungary": "Budapest",
    "India": "New Delhi",
    "Mexico": "Mexico City",
    "Argentina": "Buenos Aires",
    "Chile": "Santiago",
    "Turkey": "Ankara",
    "Australia": "Canberra",
    "Belgium": "Brussels",
}

# thing (as used after "What colour is") -> colour
COLOURS = {
    "the sky": "blue",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "a banana": "yellow",
    "a tomato": "red",
    "a lemon": "yellow",
    "milk": "white",
    "a carrot": "orange",
    "the sun": "yellow",
    "a strawberry": "red",
    "chocolate": "brown",
    "a frog": "green",
    "a crow": "black",
    "the sea": "blue",
    "a pumpkin": "orange",
    "a cherry": "red",
    "a lime": "green",
    "salt": "white",
    "mud": "brown",
    "a flamingo": "pink",
    "a polar bear": "white",
}

# each word appears once, so "the opposite of X" has one answer
OPPOSITES = [
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("young", "old"),
    ("open", "closed"),
    ("light", "dark"),
    ("left", "right"),
    ("wet", "dry"),
    ("hard", "soft"),
    ("tall", "short"),
    ("early", "late"),
    ("full", "empty"),
    ("day", "night"),
    ("black", "white"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("loud", "quiet"),
    ("first", "last"),
    ("push", "pull"),
    ("win", "lose"),
    ("clean", "dirty"),
    ("top", "bottom"),
    ("front", "back"),
    ("thick", "thin"),
    ("near", "far"),
    ("high", "low"),
    ("good", "bad"),
    ("sweet", "sour"),
    ("summer", "winter"),
    ("north", "south"),
    ("east", "west"),
    ("boy", "girl"),
    ("king", "queen"),
    ("inside", "outside"),
    ("true", "false"),
]

ANIMAL_SOUNDS = {
    "cow": "moo",
    "dog": "woof",
    "cat": "meow",
    "duck": "quack",
    "sheep": "baa",
    "pig": "oink",
    "owl": "hoot",
    "lion": "roar",
    "horse": "neigh",
    "snake": "hiss",
    "bee": "buzz",
    "frog": "ribbit",
    "mouse": "squeak",
    "hen": "cluck",
    "wolf": "howl",
}

ANIMAL_LEGS = {
    "spider": 8,
    "dog": 4,
    "bird": 2,
    "ant": 6,
    "cat": 4,
    "chicken": 2,
    "horse": 4,
    "beetle": 6,
    "duck": 2,
    "cow": 4,
    "fish": 0,
    "snake": 0,
    "bee": 6,
    "crab": 10,
}

# "repeat after me" phrases: [size] [colour] noun, so held-out phrases reuse known words
SIZES = "big small little tiny old new happy sleepy".split()
COLOUR_WORDS = "red blue green yellow black white brown pink".split()
NOUNS = ("cat dog car apple house tree ball hat bird fish book cup boat shoe door box chair bed cake kite").split()


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
