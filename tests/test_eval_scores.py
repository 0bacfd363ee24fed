"""Evaluation scores on hand-made answers, the report, and a whole (tiny) evaluation run."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from flowomni.evaluation.evaluate import EvalConfig, Evaluator, ItemResult, score
from flowomni.evaluation.report import write_report


def row(ref, text, heard, audio_s=1.0, skill="arith"):
    from flowomni.evaluation.text import exact_match

    return ItemResult("i", skill, "q", ref, text, heard, audio_s, exact_match(ref, text))


def test_scores_of_hand_made_answers():
    rows = [
        row("Seven plus two is nine.", "seven plus two is nine", "7 plus 2 is 9."),  # all right
        row("The sky is blue.", "The sky is green.", "the sky is green"),  # wrong, but said as written
        row("Monday.", "Monday.", "", audio_s=0.0, skill="days"),  # right text, silent
    ]
    s = score(rows)
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["text_wer"] == pytest.approx(1 / 10)  # one substitution in ten reference words
    assert s["spoken_share"] == pytest.approx(2 / 3)
    assert s["speech_wer_vs_text"] == 0.0  # what was said is what was written
    assert s["speech_wer_vs_reference"] == pytest.approx(2 / 10)  # green + the silent Monday
    assert s["accuracy_by_skill"] == {"arith": 0.5, "days": 1.0}
    assert s["answer_seconds"]["mean"] == 1.0
    lo, hi = s["accuracy_ci95"]
    assert 0.0 <= lo < s["accuracy"] < hi <= 1.0
    assert s["speech_wer_vs_reference_ci95"][0] <= s["speech_wer_vs_reference"] <= s["speech_wer_vs_reference_ci95"][1]


def test_target_accuracy_leaves_out_held_out_world_facts():
    rows = [
        row("A.", "A.", "a"),
        row("The capital of Peru is Lima.", "The capital of Peru is Rome.", "x", skill="facts_heldout"),
    ]
    s = score(rows)
    assert s["accuracy"] == 0.5 and s["accuracy_target"] == 1.0
    # the wrong fact's six reference words are all misheard; the target skill's one word is heard
    assert s["speech_wer_vs_reference"] == pytest.approx(6 / 7)
    assert s["speech_wer_vs_reference_target"] == 0.0
    assert tuple(s["speech_wer_vs_reference_target_ci95"]) == (0.0, 0.0)


def test_report_has_tables_plots_and_json(tmp_path):
    clean = score([row("A b.", "A b.", "a b")])
    res = {
        "clean": clean,
        "latency": {"first_packet_ms_median": 120.0, "rtf_median": 0.1},
        "sweeps": {"noise": [{"snr_db": 10.0, **clean}], "speed": [{"speed": 0.8, **clean}]},
    }
    ex = {
        "id": "i",
        "question": "q?",
        "text": "A b.",
        "heard": "a b",
        "mel": torch.randn(40, 80),
        "audio": np.zeros(1000, np.float32) + 0.1,
        "sample_rate": 22050,
    }
    path = write_report({"continuous": res, "discrete": res}, {"continuous": [ex]}, tmp_path, "flowomni eval x")
    md = path.read_text()
    assert "| continuous | 100.0% [100.0, 100.0] | 100.0% [100.0, 100.0] | 0.0% |" in md
    assert "| 10.0 |" in md and "flowomni eval x" in md
    assert (tmp_path / "wer_vs_snr.png").stat().st_size > 5000
    assert (tmp_path / "continuous_0_mel.png").is_file() and (tmp_path / "continuous_0.wav").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["discrete"]["clean"]["accuracy"] == 1.0


def test_report_leaves_out_conditions_that_were_not_run(tmp_path):
    clean = score([row("A b.", "A b.", "a b")])
    base = {"clean": clean, "latency": {}}
    md = write_report(
        {"m": {**base, "sweeps": {"noise": [], "speed": [{"speed": 0.8, **clean}]}}}, {}, tmp_path / "a", "x"
    ).read_text()
    assert "### Question speed" in md and "| 0.8 |" in md
    assert "Noise on the question" not in md and "wer_vs_snr.png" not in md and "Written questions" not in md
    md = write_report({"m": {**base, "sweeps": {"noise": [], "speed": []}}}, {}, tmp_path / "b", "x").read_text()
    assert "## Robustness" not in md and "### Accuracy by skill" in md


def test_paired_differences_between_two_models(tmp_path):
    """The report pairs the two models' answers item by item, per condition."""
    from flowomni.evaluation.evaluate import condition
    from flowomni.evaluation.intervals import paired_accuracy_difference

    def answers(n_right, heard_wrong):
        rows = []
        for i in range(20):
            right = i < n_right
            r = row("Nine.", "Nine." if right else "Eight.", "nine" if i >= heard_wrong else "eight")
            rows.append(dataclasses.replace(r, id=f"q{i}", question=f"question {i}"))
        return rows

    def result(n_right, heard_wrong, noisy_right):
        rows, noisy = answers(n_right, heard_wrong), condition(answers(noisy_right, heard_wrong), snr_db=10.0)
        return {"clean": score(rows), "rows": condition(rows)["rows"], "latency": {}, "sweeps": {"noise": [noisy]}}

    res = {"continuous": result(15, 2, 10), "discrete": result(5, 10, 5)}
    md = write_report(res, {}, tmp_path, "x").read_text()
    assert "## Paired differences" in md
    # 15/20 vs 5/20 right: +50 points; speech WER 2/20 vs 10/20: -40 points
    assert "| clean | 20 | 75.0% | 25.0% | +50.0 [" in md and "| 10.0% | 50.0% | -40.0 [" in md
    assert "| SNR (dB) 10.0 | 20 | 50.0% | 25.0% | +25.0 [" in md
    # within one model, paired by question: continuous loses 5 of its 15 right answers at 10 dB
    assert "**continuous**\n\n| condition | questions | accuracy minus clean [95 %] |" in md
    assert "| SNR (dB) 10.0 | 20 | -25.0 [" in md and "| SNR (dB) 10.0 | 20 | +0.0 [+0.0, +0.0] |" in md
    d = paired_accuracy_difference([True] * 15 + [False] * 5, [True] * 5 + [False] * 15)
    assert d["difference"] == 0.5 and 0.0 < d["ci95_low"] < 0.5 < d["ci95_high"] <= 1.0
    same = paired_accuracy_difference([True, False] * 10, [True, False] * 10)
    assert same == {"difference": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}


class FakeASR:
    """Stands in for Whisper where only the plumbing is under test."""

    def transcribe(self, wav, sr):
        return "heard"


def copy_to_manifest(tmp_path, spoken_items) -> list:
    """The items, their audio copied into tmp_path, as tmp_path/test.jsonl (skill "s")."""
    import shutil

    from flowomni.data.manifest import Item, write_manifest

    items = []
    for i in spoken_items:
        q, a = tmp_path / i.question_audio.name, tmp_path / i.answer_audio.name
        shutil.copy(i.question_audio, q), shutil.copy(i.answer_audio, a)
        items.append(Item(i.id, i.question_text, i.answer_text, q, a, meta={"skill": "s"}))
    write_manifest(tmp_path / "test.jsonl", items)
    return items


def test_evaluator_runs_every_condition(tmp_path, spoken_items):
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine

    from helpers.models import speaking_model

    items = copy_to_manifest(tmp_path, spoken_items[:2])
    engine = Engine(speaking_model(), "griffin-lim-4", gen=GenerationConfig(max_steps=8, seed=0))
    cfg = EvalConfig(manifest=str(tmp_path / "test.jsonl"), snrs=[5.0], speeds=[1.2], latency_items=1)
    ev = Evaluator(engine, cfg, transcriber=FakeASR())
    res = ev.run()
    assert res["clean"]["items"] == 2 and res["clean"]["spoken_share"] == 1.0
    assert res["sweeps"]["noise"][0]["snr_db"] == 5.0 and res["sweeps"]["noise"][0]["items"] == 2
    assert res["sweeps"]["speed"][0]["items"] == 2
    assert [r["id"] for r in res["sweeps"]["speed"][0]["rows"]] == [i.id for i in items]  # for paired differences
    assert res["sweeps"]["text_input"][0]["items"] == 2  # the same questions, written
    assert res["latency"]["first_packet_ms_median"] > 0
    report = write_report({"m": res}, {"m": ev.examples}, tmp_path / "report", "flowomni eval x").read_text()
    assert "Written questions" in report
    assert len(ev.examples) == 2 and ev.examples[0]["mel"].shape[1] == 80


def test_every_model_latency_is_measured_before_any_answer_is_transcribed(monkeypatch, tmp_path, spoken_items):
    """The ASR slows torch down for the rest of the process, so run_all times all models first."""
    from flowomni.evaluation.evaluate import run_all
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine

    from helpers.models import speaking_model

    events: list[str] = []

    class RecordingASR:
        def transcribe(self, wav, sr):
            events.append("transcribe")
            return "heard"

    latency = Evaluator.latency
    monkeypatch.setattr(Evaluator, "latency", lambda self, items: events.append("latency") or latency(self, items))
    copy_to_manifest(tmp_path, spoken_items[:1])
    cfg = EvalConfig(manifest=str(tmp_path / "test.jsonl"), snrs=[], speeds=[], text_questions=False, latency_items=1)
    gen = GenerationConfig(max_steps=8, seed=0)
    evs = {name: Evaluator(Engine(speaking_model(), "griffin-lim-4", gen=gen), cfg, RecordingASR()) for name in "ab"}
    res = run_all(evs)
    assert events[:2] == ["latency", "latency"] and events.count("latency") == 2 and "transcribe" in events
    assert all(res[n]["latency"]["first_packet_ms_median"] > 0 and res[n]["clean"]["items"] == 1 for n in evs)


def test_pairs_leave_out_items_whose_reference_was_reworded(tmp_path):
    """A model from an earlier eval, judged against an answer the corpus has since reworded, is not
    paired on that item: its right answer would count as wrong speech against the new reference."""
    from flowomni.evaluation.evaluate import condition

    def result(refs):
        rows = [dataclasses.replace(row(r, r, r.lower().rstrip(".")), id=f"q{i}") for i, r in enumerate(refs)]
        return {"clean": score(rows), "rows": condition(rows)["rows"], "latency": {}, "sweeps": {}}

    new = result(["Nine.", "Eight.", "Of four and nine, nine is bigger."])
    old = result(["Nine.", "Eight.", "Nine is bigger than four."])
    md = write_report({"new": new, "old": old}, {}, tmp_path, "x").read_text()
    assert "| clean | 2 | 100.0% | 100.0% | +0.0 [+0.0, +0.0] | 0.0% | 0.0% | +0.0 [+0.0, +0.0] |" in md
    assert "(1 items a condition left out: their reference answers differ.)" in md


def test_previous_results_join_the_report_or_fail_clearly(tmp_path):
    from flowomni.evaluation.cli import previous_results

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"stage5": {"clean": {"accuracy": 0.5}, "rows": []}}))
    got = previous_results([f"stage5={path}"], ["stage6"])
    assert got["stage5"]["clean"]["accuracy"] == 0.5 and got["stage5"]["from_results"] == str(path)
    renamed = previous_results([f"before={path}#stage5"], ["stage6"])  # the file's stage5, shown as "before"
    assert list(renamed) == ["before"] and renamed["before"]["clean"]["accuracy"] == 0.5
    assert renamed["before"]["from_results"] == f"{path}#stage5"
    for pair, taken, message in [
        ("stage5", [], "takes NAME=RESULTS_JSON[#ENTRY]"),
        (f"stage5={path}#stage3", [], "has no results of a model 'stage3' (it has: stage5)"),
        (f"stage4={path}", [], "has no results of a model 'stage4' (it has: stage5)"),
        (f"stage5={path}", ["stage5"], "already in this report"),
        (f"stage5={tmp_path / 'missing.json'}", [], "cannot read"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            previous_results([pair], taken)


def test_eval_takes_generation_knobs_and_names_a_bad_one(capsys):
    """`--gen KEY=VALUE` reaches every model's generation config (e.g. guided_text=false); an
    unknown knob or a bad value ends with a message naming it, before any answer is decoded."""
    from flowomni.cli import main

    for bad, named in (("nonsense=1", "nonsense"), ("top_p=7", "top_p")):
        assert main(["eval", "models/flowomni-tiny", "--manifest", "none.jsonl", "--gen", bad]) == 2
        assert named in capsys.readouterr().err


def test_text_only_evals_pair_accuracy_and_leave_speech_wer_blank(tmp_path):
    """--text-only answers have no audio: their paired speech WER is no comparison (it read
    100 % for both models, every answer counted as deleted), so the columns say "-"."""
    from flowomni.evaluation.evaluate import condition

    def result(n_right):
        rows = [
            dataclasses.replace(row("Nine.", "Nine." if i < n_right else "Eight.", ""), id=f"q{i}", audio_s=0.0)
            for i in range(10)
        ]
        return {"clean": score(rows), "rows": condition(rows)["rows"], "latency": {}, "sweeps": {}}

    md = write_report({"a": result(8), "b": result(6)}, {}, tmp_path, "x").read_text()
    assert re.search(r"\| clean \| 10 \| 80.0% \| 60.0% \| \+20.0 \[[^]]+\] \| - \| - \| - \|", md)


def test_the_asr_beam_reaches_the_judge_and_the_report():
    """--asr-beam 5 makes the independent ASR decode with beam 5, and the report says so."""
    assert Evaluator(None, EvalConfig(asr_beam=5)).asr.beam_size == 5
    assert Evaluator(None, EvalConfig()).asr.beam_size == 1  # every report so far: greedy
    with pytest.raises(ValueError, match="asr_beam"):
        EvalConfig(asr_beam=0)
    from flowomni.evaluation.asr import Transcriber

    with pytest.raises(ValueError, match="beam_size"):  # the benchmarks make their ASR directly
        Transcriber(beam_size=0)


def test_report_names_the_asr_decoding(tmp_path):
    rows = [row("Nine.", "Nine.", "nine")]
    res = {"clean": score(rows), "rows": [], "latency": {}, "sweeps": {}, "config": {"asr_beam": 5}}
    assert "decoding with beam 5" in write_report({"m": res}, {}, tmp_path, "x").read_text()
    res["config"] = {"asr_beam": 1}
    assert "decoding greedy (beam 1)" in write_report({"m": res}, {}, tmp_path, "x").read_text()


def test_wer_and_its_interval_come_from_one_alignment():
    """The corpus WER beside its interval is the one `wer` gives, the interval brackets it, and a
    report row's pair is named after its key."""
    from flowomni.evaluation.intervals import wer_fields, wer_with_interval
    from flowomni.evaluation.text import wer

    refs = ["nine is bigger than four", "two plus two is four", "monday", "little blue dog"] * 5
    hyps = ["nine is bigger than for", "two plus two is four", "sunday", "little blue dot"] * 5
    value, (lo, hi) = wer_with_interval(refs, hyps)
    assert value == pytest.approx(wer(refs, hyps)) and value == pytest.approx(3 / 14)
    assert lo < value < hi
    row = wer_fields(refs, hyps, key="question_wer")
    assert row == {"question_wer": value, "question_wer_ci95": (lo, hi)}
    assert wer_with_interval(refs, refs)[0] == 0.0
