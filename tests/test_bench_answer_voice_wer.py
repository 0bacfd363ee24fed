"""The answer-voice floor: the eval's ASR on recorded answers, scored against their texts."""

import sys
from pathlib import Path
from types import SimpleNamespace

from flowomni.evaluation.asr import Transcriber

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from answer_voice_wer import answer_voice_wer  # noqa: E402


def test_recorded_answers_are_heard_and_a_wrong_text_counts(spoken_items):
    items = [*spoken_items, spoken_items[0]]  # a clip asked twice counts twice, is transcribed once
    asr = Transcriber()
    right = answer_voice_wer(items, asr)
    assert right["items"] == len(items) and right["distinct_answers"] == len(spoken_items)
    assert right["wer"] < 0.5 and right["exact"] > 0  # clear espeak speech is mostly heard
    assert right["wer_by_skill"] == {}  # these items name no skill
    tagged = [SimpleNamespace(**vars(it), meta={"skill": "a" if i % 2 else "b"}) for i, it in enumerate(items)]
    by_skill = answer_voice_wer(tagged, asr)["wer_by_skill"]
    assert {k: v["items"] for k, v in by_skill.items()} == {"a": len(items) // 2, "b": len(items) - len(items) // 2}
    n_words = [len(it.answer_text.split()) for it in items]
    words = {k: sum(n for i, n in enumerate(n_words) if (k == "a") == bool(i % 2)) for k in "ab"}
    pooled = sum(by_skill[k]["wer"] * words[k] for k in "ab") / sum(words.values())
    assert abs(pooled - right["wer"]) < 1e-9  # the skills' WERs pool back to the whole
    wrong = [SimpleNamespace(**{**vars(it), "answer_text": "purple elephants dance quietly"}) for it in items]
    bad = answer_voice_wer(wrong, asr)
    assert bad["wer"] > right["wer"] + 0.5 and bad["exact"] == 0
    assert bad["misheard_examples"][0]["answer"] == "purple elephants dance quietly"
    lo, hi = bad["wer_ci95"]
    assert lo <= bad["wer"] <= hi
