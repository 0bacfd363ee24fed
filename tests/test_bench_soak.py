"""The soak benchmark runs (briefly) and finds every valid request answered, every invalid
one refused with an error while its session lives on."""

from pathlib import Path

import pytest

from helpers.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_short_soak_mixed_valid_and_invalid_requests():
    res = run_benchmark("soak.py", "--minutes", "0.25", "--random", "--max-steps", "8", "--clients", "2")
    assert res["failures"] == [] and res["every_valid_request_answered"]
    assert res["valid_requests"] > 0 and res["requests"] > res["valid_requests"]
    assert sum(res["errors_by_code"].values()) >= res["requests"] - res["valid_requests"]
