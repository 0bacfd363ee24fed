"""The VAD benchmark runs (on the example questions, briefly) and scores both detectors."""

from pathlib import Path

from helpers.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_vad_benchmark_quick_run():
    res = run_benchmark(
        "vad.py", "--quick", "--noise", "white", "--noise-clips", "1", "--noise-seconds", "4", timeout=300
    )
    assert res["clips"] == 4 and set(res["results"]) == {"silero", "energy"}
    for vad in ("silero", "energy"):
        conditions = res["results"][vad]
        assert set(conditions) == {"clean", "white_20dB", "white_10dB", "white_5dB", "white_0dB"}
        clean = conditions["clean"]
        # clean speech after silence: every question is one turn, ended after the closing silence
        assert clean["n"] == 4 and clean["missed_pct"] == 0 and clean["cut_pct"] == 0
        assert clean["false_starts_per_clip"] == 0 and clean["late_end_pct"] == 0
        assert 0 < clean["end_ms"]["median"] < res["late_end_after_ms"]
        assert set(res["noise_only_false_starts_per_minute"][vad]) == {
            "white_-40dBFS",
            "white_-30dBFS",
            "white_-25dBFS",
            "white_-20dBFS",
        }
        assert res["cpu_ms_per_audio_second"][vad] > 0
