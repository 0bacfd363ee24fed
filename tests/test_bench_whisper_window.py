"""benchmarks/whisper_window.py: a probe per window mode, on a tiny corpus of real speech."""

import json
import shutil
from pathlib import Path

from helpers.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_whisper_window_benchmark_json(spoken_items, tmp_path):
    for it in spoken_items:  # manifests name audio inside their folder
        shutil.copy(it.question_audio, tmp_path / it.question_audio.name)
    lines = [
        json.dumps(
            {
                "id": it.id,
                "question_text": it.question_text,
                "answer_text": it.answer_text,
                "question_audio": it.question_audio.name,
            }
        )
        for it in spoken_items
    ]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    res = run_benchmark(
        "whisper_window.py", "--corpus", str(tmp_path), "--train", "4", "--test", "2", "--steps", "5", "--threads", "1"
    )
    assert res["train_clips"] == 4 and res["test_clips"] == 2
    for mode in ("any_length", "window_30s"):
        assert 0.0 <= res["modes"][mode]["probe_cer_test"] and res["modes"][mode]["encode_ms_median"] > 0
    # the 30 s window encodes 1,500 frames for a ~2 s question: it costs several times more
    assert res["encode_cost_window_over_any"] > 2
