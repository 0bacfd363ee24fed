"""Text normalisation, WER and exact match on hand-made cases (ASR output vs references)."""

from __future__ import annotations

import pytest

from flowomni.evaluation.text import exact_match, normalize, number_to_words, ordinal_words, wer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7 plus 2 is 9.", "seven plus two is nine"),
        ("Seven plus two is nine", "seven plus two is nine"),
        ("Forty-nine minus thirty-two equals seventeen.", "forty nine minus thirty two equals seventeen"),
        ("49 minus 32 equals 17.", "forty nine minus thirty two equals seventeen"),
        ("It's -3.5 degrees.", "it is minus three point five degrees"),
        ("The 21st of May, 1,250 people", "the twenty first of may one thousand two hundred fifty people"),
        ("It costs $74.", "it costs seventy four dollars"),
        ("at 3:00, or 4:15", "at three oclock or four fifteen"),
        ("The train leaves at 3 o'clock.", "the train leaves at three oclock"),
        ("50% of 12", "fifty percent of twelve"),
        ("The colour is grey!", "the color is gray"),
        ("What's up? I'm fine, we'll see; don't!", "what is up i am fine we will see do not"),
        ("I can't and won't.", "i cannot and will not"),
        ("Well\u2014it\u2019s   OK.", "well it is ok"),
        ("Score: 5-3", "score five three"),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_number_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(105) == "one hundred five"
    assert number_to_words(2_000_019) == "two million nineteen"
    assert number_to_words(-40) == "minus forty"
    assert [ordinal_words(n) for n in (1, 2, 3, 5, 12, 20, 42, 100)] == [
        "first",
        "second",
        "third",
        "fifth",
        "twelfth",
        "twentieth",
        "forty second",
        "one hundredth",
    ]


def test_wer_ignores_spelling_conventions() -> None:
    assert wer(["7 plus 2 is 9."], ["Seven plus two is nine"]) == 0.0
    assert wer(["Sure. Counting up: four, five, six."], ["Sure, counting up 4, 5, 6."]) == 0.0


def test_wer_counts_edits_over_reference_words() -> None:
    # one substitution in 4 words + one deletion in 2 words = 2 / 6
    assert wer(["the sky is blue", "hello there"], ["the sky is green", "hello"]) == pytest.approx(2 / 6)
    # an empty reference contributes its hypothesis' words as insertions
    assert wer(["one two", ""], ["one two", "three"]) == pytest.approx(1 / 2)
    assert wer(["a b"], ["x y z w"]) == pytest.approx(4 / 2)
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no words"):
        wer([""], ["a"])


def test_exact_match() -> None:
    assert exact_match("The capital of France is Paris.", "the capital of france is paris")
    assert exact_match("Twelve months.", "12 months")
    assert not exact_match("The sky is blue.", "The sky is green.")
    assert not exact_match("two", "twenty")
