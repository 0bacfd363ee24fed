"""benchmarks/counting_ranges.py: the probe keeps a test question's phrasing and swaps in a
training range of the same direction, with the right reference answer."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from counting_ranges import count_answer, probes, swap_numbers  # noqa: E402


def test_numbers_are_swapped_as_whole_words() -> None:
    # "seven" must not be replaced inside "seventeen"
    q = "Could you count down from seventeen to seven?"
    assert swap_numbers(q, (17, 7), (5, 3)) == "Could you count down from five to three?"
    assert swap_numbers("Start at one and count to three.", (1, 3), (3, 1)) == "Start at three and count to one."
    assert count_answer(9, 12) == "Nine, ten, eleven, twelve."
    assert count_answer(10, 7) == "Ten, nine, eight, seven."


def test_probes_keep_the_phrasing_and_the_direction() -> None:
    from flowomni.data.manifest import Item

    question = "Please list the numbers from ten down to seven."
    test = [Item("t", question, "Ten, nine, eight, seven.", meta={"combo": "counting/down/10/7"})]
    train = {("down", 4, 2), ("up", 2, 4), ("down", 12, 9)}
    asked = probes(test, train, per_item=5, seed=0)
    assert asked[0] == ("held-out range", question, "Ten, nine, eight, seven.")
    swapped = sorted(asked[1:])
    assert swapped == [
        ("training range", "Please list the numbers from four down to two.", "Four, three, two."),
        ("training range", "Please list the numbers from twelve down to nine.", "Twelve, eleven, ten, nine."),
    ]
