"""benchmarks/vocoder.py: held-out clips are made on demand as a stable prefix, the paired WER
interval means what it says, and a small run reports every number issue 4 asks for."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from vocoder import held_out, paired_wer_difference  # noqa: E402

from helpers.bench import run_benchmark  # noqa: E402


def test_paired_wer_difference() -> None:
    texts = ["the sky is blue", "one two three", "cats are mammals", "a dozen is twelve"]
    assert paired_wer_difference(texts, texts, texts) == {"difference": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    worse = ["the sky is", "one two three", "cats are mammals", "a dozen is twelve"]
    d = paired_wer_difference(texts, worse, texts)
    assert d["difference"] == pytest.approx(1 / 14)  # one deleted word in 14
    assert 0 <= d["ci95_low"] <= d["difference"] <= d["ci95_high"]
    assert paired_wer_difference(texts, texts, worse)["difference"] == -d["difference"]


def test_held_out_clips_grow_as_a_prefix(tmp_path: Path) -> None:
    first = held_out(tmp_path, 2)
    more = held_out(tmp_path, 4)
    assert len(first) == 2 and len(more) == 4 and more[:2] == first
    assert all(it["path"].is_file() for it in more)
    # rendered as the model's answers are, with no sampling noise: the same clip on every machine
    kept = more[0]["path"].read_bytes()
    more[0]["path"].unlink()
    again = held_out(tmp_path, 4)
    assert again == more and again[0]["path"].read_bytes() == kept
    assert {json.loads(x)["rendering"] for x in (tmp_path / "valid.jsonl").read_text().splitlines()} == {"answer"}


@pytest.mark.slow
def test_vocoder_benchmark_json(tmp_path: Path) -> None:
    res = run_benchmark(
        "vocoder.py",
        "--data",
        str(tmp_path / "voice"),
        "--items",
        "3",
        "--repeats",
        "1",
        "--griffin-lim-iters",
        "4",
        "32",
        "--neural",
        str(ROOT / "models/vocoder"),
        f"again={ROOT / 'models/vocoder'}",
    )
    assert res["items"] == 3 and set(res["vocoders"]) == {"griffin-lim-4", "griffin-lim-32", "neural", "again"}
    for name, v in res["vocoders"].items():
        assert 0 <= v["wer"] and v["rtf"] > 0 and v["mcd_db"] > 0 and v["speed_vs_griffin_lim_32"] > 0
        assert ("wer_minus_griffin_lim_32" in v) == (name != "griffin-lim-32")
        assert set(v["rtf_by_threads"]) == set(v["speed_vs_griffin_lim_32_by_threads"]) == {"2", "1"}
        assert v["stream_rtf"] > 0 and v["stream_over_one_shot"] > 0 and v["stream_calls_per_clip"] >= 1
    assert res["vocoders"]["griffin-lim-32"]["speed_vs_griffin_lim_32"] == 1.0
    assert res["vocoders"]["neural"]["wer"] == res["vocoders"]["again"]["wer"]  # same weights, same words
    assert res["targets"]["judged"] == "neural" and "neural_stream_at_most_2x_one_shot" in res["targets"]


def test_vocoder_training_benchmark_json() -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/vocoder_train.py"),
            "--device",
            "cpu",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)["results"]
    assert set(res) == {f"shipped/b2/{p}/{q}" for p in ("reconstruction", "gan") for q in ("fp32", "bf16")}
    assert all(v["median_s"] > 0 and v["audio_s_per_s"] > 0 and v["device"] == "cpu" for v in res.values())
    assert res["shipped/b2/gan/fp32"]["gan_vs_reconstruction"] > 1  # the discriminators cost something
    assert res["shipped/b2/gan/bf16"]["bf16_speedup"] > 0
