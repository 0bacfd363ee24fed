"""evaluation/error_kinds.py: a wrong arithmetic or comparison answer is sorted by what its
restated numbers show (another skill's form, numbers not asked, a copy slip, or reasoning)."""

import pytest

from flowomni.evaluation.error_kinds import count_kinds, error_kind, numbers


def test_numbers_reads_compound_and_hundreds() -> None:
    assert numbers("Twenty one plus two is twenty three.") == [21, 2, 23]
    assert numbers("Twelve times twelve is one hundred forty four.") == [12, 12, 144]
    assert numbers("Twenty, nineteen.") == [20, 19]  # "twenty nineteen" is two numbers
    assert numbers("Yes, 7 is smaller than 9.") == [7, 9]  # digits are spelled out first


@pytest.mark.parametrize(
    ("reference", "answer", "kind"),
    [
        ("Yes, fifteen is bigger than ten.", "Yes, fifteen is bigger than ten.", "right"),
        ("Yes, fifteen is bigger than ten.", "No, fifteen is bigger than ten.", "reasoned wrong"),
        ("Eighteen is smaller than nineteen.", "Nineteen is smaller than eighteen.", "reasoned wrong"),
        ("Twenty is bigger than two.", "Twenty is bigger than twenty.", "copied wrong"),
        ("Fourteen is smaller than twenty.", "Four is smaller than twenty.", "numbers not asked"),
        ("Ten is smaller than nineteen.", "One plus ten is eleven.", "other skill"),
    ],
)
def test_comparison_kinds(reference: str, answer: str, kind: str) -> None:
    assert error_kind("comparison", reference, answer) == kind


@pytest.mark.parametrize(
    ("reference", "answer", "kind"),
    [
        ("Two times six is twelve.", "Two times six is eighteen.", "reasoned wrong"),
        ("Two times six is twelve.", "Six times two is twelve.", "reasoned wrong"),  # same operands, other order
        ("Fourteen minus two is twelve.", "Fourteen is bigger than two.", "other skill"),
        ("Thirteen minus three is ten.", "Thirty minus three is twenty seven.", "numbers not asked"),
        ("Five plus five is ten.", "Five plus.", "other skill"),  # too few numbers to be a sum
    ],
)
def test_arithmetic_kinds(reference: str, answer: str, kind: str) -> None:
    assert error_kind("arithmetic", reference, answer) == kind


def test_skills_without_restated_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="counting"):
        error_kind("counting", "One, two.", "One, two.")


def test_count_kinds_shares_per_skill() -> None:
    rows = [
        {"skill": "comparison", "reference": "Nine is bigger than four.", "text": "Nine is bigger than four."},
        {"skill": "comparison", "reference": "Nine is bigger than four.", "text": "Four is bigger than nine."},
        {"skill": "facts", "reference": "Grass is green.", "text": "Grass is blue."},
    ]
    out = count_kinds(rows)
    assert list(out) == ["comparison"]
    assert out["comparison"]["questions"] == 2
    assert out["comparison"]["right"] == {"n": 1, "share": 0.5}
    assert out["comparison"]["reasoned wrong"] == {"n": 1, "share": 0.5}
    assert out["comparison"]["numbers not asked"]["n"] == 0
