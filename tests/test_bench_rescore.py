"""benchmarks/rescore.py: an earlier eval's scores recomputed from its stored rows."""

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from rescore import rescore  # noqa: E402

from flowomni.evaluation.evaluate import ItemResult  # noqa: E402


def item(skill: str, reference: str, text: str, heard: str) -> dict:
    return dataclasses.asdict(ItemResult("i", skill, "q", reference, text, heard, 1.0, reference == text))


def test_rescore_adds_the_target_skill_wer_an_old_results_file_lacks() -> None:
    rows = [
        item("arithmetic", "Two plus two is four.", "Two plus two is four.", "two plus two is four"),
        item("facts_heldout", "The capital of Peru is Lima.", "Grass is green.", "grass is green"),
    ]
    noisy = [item("arithmetic", "Two plus two is four.", "Two plus two is four.", "two plus two is for")]
    old = {  # as an eval before the target-skill WER wrote it: rows, no such key
        "m": {"clean": {"items": 2}, "rows": rows, "sweeps": {"noise": [{"snr_db": 10.0, "rows": noisy}]}}
    }
    got = rescore(old)["m"]
    assert set(got) == {"clean", "SNR (dB) 10.0"}
    # clean: five of the held-out fact's six reference words missed ("is" heard), the target
    # answer's five heard whole
    assert got["clean"]["speech_wer_vs_reference"] == pytest.approx(5 / 11)
    assert got["clean"]["speech_wer_vs_reference_target"] == 0.0
    assert got["clean"]["accuracy_target"] == 1.0 and got["clean"]["accuracy"] == 0.5
    assert got["SNR (dB) 10.0"]["speech_wer_vs_reference_target"] == pytest.approx(1 / 5)


def test_a_file_that_is_not_eval_results_gets_a_clear_error(tmp_path, monkeypatch) -> None:
    import rescore as cli

    bad = tmp_path / "results.json"
    bad.write_text('{"m": {"clean": {}, "rows": [{"id": "i"}]}}')  # a row without its fields
    monkeypatch.setattr(sys, "argv", ["rescore.py", str(bad)])
    with pytest.raises(SystemExit, match="is not a readable `flowomni eval` results.json"):
        cli.main()
