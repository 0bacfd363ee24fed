"""benchmarks/error_kinds.py and benchmarks/template_accuracy.py: wrong answers sorted by cause
and accuracy per held-out template, per condition, read from an evaluation's per-item rows."""

import json
import subprocess
import sys

from helpers.bench import ROOT, run_benchmark


def row(i, skill, reference, text):
    return {"id": f"t{i}", "skill": skill, "reference": reference, "text": text, "exact": reference == text}


def item(i, skill, template, question):
    return json.dumps(
        {"id": f"t{i}", "question_text": question, "answer_text": "a", "skill": skill, "template": template}
    )


ROWS = [
    row(0, "arithmetic", "Four minus one is three.", "Four is bigger than one."),
    row(1, "arithmetic", "Nine minus two is seven.", "Nine is bigger than two."),
    row(2, "arithmetic", "Two plus two is four.", "Two plus two is four."),
    row(3, "comparison", "Nine is bigger than four.", "Nineteen is bigger than four."),
]


def results(tmp_path):
    res = {
        "m": {"clean": {}, "rows": ROWS, "sweeps": {"text_input": [{"input": "written question", "rows": ROWS[:2]}]}}
    }
    (tmp_path / "results.json").write_text(json.dumps(res))
    return str(tmp_path / "results.json")


def test_error_kinds_per_condition(tmp_path):
    out = run_benchmark("error_kinds.py", results(tmp_path), "--conditions", "clean", "written question")
    clean = out["models"]["m"]["clean"]
    assert clean["arithmetic"]["questions"] == 3
    assert clean["arithmetic"]["other skill"]["n"] == 2 and clean["arithmetic"]["right"]["n"] == 1
    assert clean["comparison"]["numbers not asked"]["n"] == 1
    assert out["models"]["m"]["written question"]["arithmetic"]["other skill"] == {"n": 2, "share": 1.0}


def test_template_accuracy_finds_untaught_word_pairs(tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text(
        "\n".join(
            [
                item(0, "arithmetic", "what is {a} take away {b}", "Um, what is four take away one?"),
                item(1, "arithmetic", "what is {a} take away {b}", "What is nine take away two?"),
                item(2, "arithmetic", "what is {a} plus {b}", "What is two plus two?"),
                item(3, "comparison", "which is bigger, {x} or {y}", "Which is bigger, nine or four?"),
            ]
        )
        + "\n"
    )
    train = tmp_path / "train.jsonl"
    train.write_text(
        item(9, "arithmetic", "take {b} away from {a}", "Take two away from six.")
        + "\n"
        + item(8, "x", "t", "What is five plus three? Which is bigger, one or two?")
        + "\n"
    )
    out = run_benchmark("template_accuracy.py", results(tmp_path), "--manifest", str(test), "--train", str(train))
    clean = out["models"]["m"]["clean"]
    take_away = clean["arithmetic: what is {a} take away {b}"]
    assert take_away["questions"] == 2 and take_away["accuracy"] == 0.0
    # "take away" and "N take" never occur in training ("take N", "N away" do); "um what" is
    # in one of two questions only, which still counts as half
    assert take_away["untaught_pairs"] == ["N take", "away N", "take away", "um what"]
    assert clean["arithmetic: what is {a} plus {b}"] == {
        "right": 1,
        "questions": 1,
        "accuracy": 1.0,
        "untaught_pairs": [],
    }
    assert list(clean)[0] == "arithmetic: what is {a} take away {b}"  # worst first
    assert list(out["models"]["m"]["written question"]) == ["arithmetic: what is {a} take away {b}"]


def test_template_accuracy_names_a_manifest_that_does_not_match(tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text(item(7, "arithmetic", "what is {a} plus {b}", "What is two plus two?") + "\n")
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/template_accuracy.py"), results(tmp_path)]
        + ["--manifest", str(test), "--train", str(test), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "4 answers have no question in --manifest (first: 't0')" in r.stderr
    assert "Traceback" not in r.stderr
