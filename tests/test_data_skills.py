"""Synthetic QA content: held-out phrasings and combinations really disjoint, answers a function of
the question, a test vocabulary that training covers."""

import random
import re
import string

import pytest

from flowomni.data.facts import number_words
from flowomni.data.grammar import FILLERS, WRAPPERS, Template
from flowomni.data.skills import HELD_OUT_FACTS, SKILLS, SPLITS, assign_splits, generate, grammar_size, render


@pytest.fixture(scope="module")
def pools():
    return assign_splits()


@pytest.fixture(scope="module")
def generated(pools):
    return {s: generate(s, 20000 if s == "train" else 4000, seed=3, pools=pools) for s in SPLITS}


def test_held_out_phrasings_are_never_trained(pools, generated):
    train = {(qa.skill, qa.template) for qa in generated["train"]}
    for split in ("valid", "test"):
        for qa in generated[split]:
            skill = "facts" if qa.skill == HELD_OUT_FACTS else qa.skill
            assert (skill, qa.template) not in train, qa
    # and the pools themselves are disjoint (a template shared by groups is held out in all)
    for skill, groups in pools.templates["train"].items():
        trained = {t.text for ts in groups.values() for t in ts}
        for split in ("valid", "test"):
            held = {t.text for ts in pools.templates[split][skill].values() for t in ts}
            assert held and not held & trained, (skill, split)
    # every answer mode (after/before, bigger/smaller/yes-no...) keeps training templates
    for skill, groups in pools.templates["train"].items():
        for group, ts in groups.items():
            modes = {t.mode for t in SKILLS[skill].templates[group]}
            assert modes == {t.mode for t in ts}, (skill, group)
    # some wrappers and fillers are never heard in training either
    assert set(FILLERS) - set(pools.surface.fillers["train"])
    for kind in WRAPPERS:
        assert set(WRAPPERS[kind]) - set(pools.surface.wrappers["train"][kind])


def test_held_out_combinations_where_they_can_be_generalised(pools, generated):
    keys = {s: {qa.combo.key for qa in qas} for s, qas in generated.items()}
    for skill in ("repeat",):
        held = {k for k in keys["test"] if k.startswith(skill + "/")}
        assert held and not held & keys["train"], skill
    unseen_facts = {qa.combo.key for qa in generated["test"] if qa.skill == HELD_OUT_FACTS}
    seen_facts = {qa.combo.key for qa in generated["test"] if qa.skill == "facts"}
    assert unseen_facts and not unseen_facts & keys["train"]
    assert seen_facts and seen_facts <= keys["train"]
    # table skills: every combination trains (the test asks them in new words)
    for skill in ("arithmetic", "counting", "comparison", "sequence", "calendar"):
        every = {c.key for c in SKILLS[skill].combos()}
        for split in SPLITS:
            assert {c.key for cs in pools.combos[split][skill].values() for c in cs} == every, (skill, split)


def test_test_vocabulary_is_covered_by_training(pools):
    """A held-out phrasing recombines words training used: a word no training question ever
    contains could not be understood, only guessed."""

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", re.sub(r"\{\w+\}", " ", text.lower())))

    train: set[str] = set()
    for groups in pools.templates["train"].values():
        for ts in groups.values():
            for t in ts:
                for e in t.expansions():
                    train |= words(e)
    for skill, groups in pools.templates["test"].items():
        for ts in groups.values():
            for t in ts:
                for e in t.expansions():
                    assert words(e) <= train, (skill, e, words(e) - train)


def test_taught_templates_change_training_only(pools):
    """assign_splits(taught=True) adds the always-trained templates that teach an operator
    phrase a held-out template uses ("take away", "more than"), in training constructions:
    valid and test ask exactly what they asked before, and no held-out template is trained."""
    taught = assign_splits(taught=True)
    for split in ("valid", "test"):
        assert taught.templates[split] == pools.templates[split], split
        assert generate(split, 300, seed=3, pools=taught) == generate(split, 300, seed=3, pools=pools), split
    added = {
        (s, g): [t for t in ts if t not in pools.templates["train"][s][g]]
        for s, gs in taught.templates["train"].items()
        for g, ts in gs.items()
    }
    added = {k: v for k, v in added.items() if v}
    assert added == {(s.name, g): ts for s in SKILLS.values() for g, ts in s.taught.items()}
    held = {
        t.text
        for split in ("valid", "test")
        for gs in pools.templates[split].values()
        for ts in gs.values()
        for t in ts
    }
    trained_text = " | ".join(e for ts in added.values() for t in ts for e in t.expansions())
    for held_template, phrase in (("what is {a} take away {b}", "take away"), ("is {x} more than {y}", "more than")):
        assert held_template in held  # a held-out template uses the phrase...
        assert phrase in trained_text  # ...and now training says it too
    assert not {t.text for ts in added.values() for t in ts} & held
    # and training draws them
    questions = [qa.question.lower() for qa in generate("train", 6000, seed=3, pools=taught)]
    assert any("take away" in q for q in questions) and any("more than" in q for q in questions)
    assert not any("take away" in qa.question.lower() for qa in generate("train", 6000, seed=3, pools=pools))


def test_answers_are_determined_by_the_question(generated):
    answer_of = {}
    for qas in generated.values():
        for qa in qas:
            assert answer_of.setdefault(qa.question, qa.answer) == qa.answer, qa.question


def test_texts_are_short_ascii_sentences(generated):
    allowed = set(string.ascii_letters + " ,.?':")
    skills = set()
    for qa in generated["train"]:
        skills.add(qa.combo.skill)
        for text in (qa.question, qa.answer):
            assert set(text) <= allowed, text
            assert text[0].isupper() and text[-1] in ".?", text
            assert "  " not in text and " ," not in text, text
        assert len(qa.answer) <= 60 and len(qa.answer.split()) <= 10, qa.answer  # ~3 s spoken at most
    assert skills == set(SKILLS)


def test_generation_is_deterministic_and_prefix_stable():
    a = generate("train", 300, seed=5)
    assert a == generate("train", 300, seed=5)
    assert a[:100] == generate("train", 100, seed=5)  # item j does not depend on the size
    assert a != generate("train", 300, seed=6)


def test_template_grammar():
    t = Template("what (does|do) {a} plus {b} [really ](equal|make)")
    assert len(t.expansions()) == 8
    assert "what do {a} plus {b} really make" in t.expansions()
    assert "what does {a} plus {b} equal" in t.expansions()


@pytest.mark.parametrize(
    "skill,group,values,mode,slots,answer",
    [
        ("arithmetic", "plus", (7, 2), "", {}, "Seven plus two is nine."),
        ("comparison", "pair", (4, 9), "bigger", {"x": "nine", "y": "four"}, "Nine is bigger than four."),
        ("comparison", "pair", (4, 9), "is_bigger", {"x": "four", "y": "nine"}, "No, four is smaller than nine."),
        ("comparison", "pair", (4, 9), "is_smaller", {"x": "four", "y": "nine"}, "Yes, four is smaller than nine."),
        ("sequence", "day", (6,), "after", {}, "Monday comes after Sunday."),
        ("facts", "capital", ("France",), "", {"x": "France"}, "The capital of France is Paris."),
        ("repeat", "three", ("big", "red", "ball"), "", {"p": "big red ball"}, "Big red ball."),
        ("calendar", "month_length", (1,), "", {}, "February has twenty eight days."),
        ("calendar", "weekend", (5,), "weekday", {}, "No, Saturday is a weekend day."),
        ("counting", "down", (6, 3), "", {}, "Six, five, four, three."),
    ],
)
def test_known_answers(skill, group, values, mode, slots, answer):
    from flowomni.data.skills import Combo

    assert SKILLS[skill].answer(Combo(skill, group, values), mode, slots) == answer


def test_render_fills_the_template(pools):
    from flowomni.data.skills import Combo

    qa = render(pools, "train", "arithmetic", Combo("arithmetic", "times", (3, 4)), random.Random(1))
    assert "three" in qa.question and "four" in qa.question and qa.answer == "Three times four is twelve."


def test_grammar_size_counts_phrasings(pools):
    size = grammar_size(pools)
    assert set(size) == set(SKILLS)
    for skill, row in size.items():
        assert row["train_templates"] >= 6 and row["test_templates"] >= 1, skill
        assert row["train_phrasings"] > row["train_templates"], skill


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 21, 99, 100, 365)] == [
        "zero",
        "seven",
        "thirteen",
        "twenty",
        "twenty one",
        "ninety nine",
        "one hundred",
        "three hundred sixty five",
    ]
    with pytest.raises(ValueError):
        number_words(1000)
