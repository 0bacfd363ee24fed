"""The feedback-exposure benchmark scores spoken answers teacher-forced three ways; with the
head's own draws fed back the text stream reads other inputs than with recorded mel."""

import sys
from pathlib import Path

import torch

from flowomni.audio import FeatureStats
from flowomni.data.features import FeatureCache
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer

from helpers.models import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from feedback_exposure import text_scores  # noqa: E402


def test_scores_of_true_drawn_and_text_reply(spoken_items, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = FlowOmni(cfg, CharTokenizer()).eval()
    fin, fout = FeatureCache(tmp_path, cfg.input_mel), FeatureCache(tmp_path, cfg.output_mel)
    model.set_stats(
        FeatureStats.estimate([torch.from_numpy(fin.get(i.question_audio)) for i in spoken_items]),
        FeatureStats.estimate([torch.from_numpy(fout.get(i.answer_audio)) for i in spoken_items]),
    )
    true = text_scores(model, spoken_items, Task.S2S, drawn=False, cache_dir=str(tmp_path))
    drawn = text_scores(model, spoken_items, Task.S2S, drawn=True, cache_dir=str(tmp_path))
    reply = text_scores(model, spoken_items, Task.S2T, drawn=False, cache_dir=str(tmp_path))
    for s in (true, drawn, reply):
        assert s["answers"] == len(spoken_items) and s["text_ce"] > 0
        assert 0 <= s["answers_all_right"] <= s["answers_content_right"] <= 1
        assert s["char_accuracy"] <= s["char_content_accuracy"]
    assert drawn["text_ce"] != true["text_ce"]  # the fed-back mel reaches the text stream
    assert reply["char_ce"] == reply["text_ce"]  # a text reply has no <tpad> to time its characters
