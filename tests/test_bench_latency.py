"""benchmarks/latency.py runs on a random-weight model and reports what the issue asks for."""

from pathlib import Path

from helpers.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_latency_benchmark_json(spoken_items, tmp_path):
    res = run_benchmark(
        "latency.py",
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "--vocoder",
        "griffin-lim-4",
        "--questions",
        str(spoken_items[0].question_audio),
        "--repeats",
        "1",
        "--max-steps",
        "6",
        "--ratio-steps",
        "4",
        "--threads",
        "2",
        "--streams",
        "2",
        cwd=tmp_path,
    )
    assert res["decode_dtype"] == "float16"  # auto: batch-1 CPU steps in fp16
    assert res["first_packet_ms"]["n"] == 1 and res["first_packet_ms"]["median"] > 0
    assert res["speech_step_ms"] > 0 and res["backbone_step_ms"] > 0 and res["steady_state_rtf"] > 0
    assert res["speech_step_over_backbone_step"] == res["speech_step_ms"] / res["backbone_step_ms"]
    assert set(res["targets"]) == {"first_packet_ms", "rtf", "speech_step_over_backbone_step"}
    assert res["static_steps"] and not res["compiled"] and res["device"] == "cpu"
    # two answers at once through the decode loop: each streamed, in shared batch steps
    c = res["concurrent"]
    assert c["streams"] == 2 and c["rtf"]["n"] == 2 and c["max_rtf"] > 0 and 6 <= c["batch_steps"] < 12
