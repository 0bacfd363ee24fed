"""benchmarks/memorisation.py: a wrong answer counts as recalled only when it is a training
answer of its skill, per condition, read from an evaluation's per-item rows."""

import json

from helpers.bench import run_benchmark


def item(skill, answer):
    return json.dumps({"id": "t", "question_text": "q", "answer_text": answer, "skill": skill})


def row(skill, reference, text):
    return {"id": reference, "skill": skill, "reference": reference, "text": text, "exact": reference == text}


def test_wrong_answers_that_are_training_answers(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(item("counting", "One, two, three, four.") + "\n" + item("facts", "Grass is green.") + "\n")
    rows = [
        row("counting", "One, two, three.", "One, two, three, four."),  # a training answer: recalled
        row("counting", "Nine, ten, eleven.", "Nine, ten, eight."),  # wrong, but no training answer
        row("counting", "Five, six, seven.", "Grass is green."),  # another skill's answer: not counted
        row("facts", "The sky is blue.", "The sky is blue."),  # right
    ]
    results = {"m": {"clean": {}, "rows": rows, "sweeps": {"noise": [{"snr_db": 10.0, "rows": rows[:1]}]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = run_benchmark(
        "memorisation.py",
        str(tmp_path / "results.json"),
        "--train",
        str(train),
        "--conditions",
        "clean",
        "SNR (dB) 10.0",
    )
    clean = out["models"]["m"]["clean"]
    assert clean["counting"] == {"items": 3, "wrong": 3, "wrong_is_training_answer": 1, "share_of_wrong": 1 / 3}
    assert clean["facts"]["wrong"] == 0 and clean["facts"]["share_of_wrong"] is None
    assert clean["all"]["items"] == 4
    assert out["models"]["m"]["SNR (dB) 10.0"]["all"]["wrong_is_training_answer"] == 1
