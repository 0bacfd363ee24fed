"""How much of a spoken question gets through the frozen ear? Whisper's own transcript of it.

The shipped model hears through Whisper tiny.en's encoder, frozen. Here that same Whisper model,
with its own decoder (faster-whisper), transcribes the test questions in the conditions `flowomni
eval` asks them: clean, with noise at the same SNRs (the same seeded noise, so the audio is the
eval's to the sample), and in the corpus's voice sets. It reports the WER against the question
text and the share of questions transcribed exactly. With `--eval` (a `flowomni eval`
results.json on the same manifest) it also splits the model's accuracy by whether Whisper heard
the question exactly: where Whisper's own transcript loses most words, the frozen features carry
little of the question, and that condition needs a better ear (a larger Whisper, or an encoder
trained on noisy speech), not more dialogue training.

    python benchmarks/encoder_hearing.py --manifest data/spoken_qa/test.jsonl --limit 200 --snr 10 0 \
        --eval reports/flowomni_tiny_v3/results.json --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.augment import AugmentSpec  # noqa: E402
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.evaluation.cli import voice_sets  # noqa: E402
from flowomni.evaluation.evaluate import question_audio  # noqa: E402
from flowomni.evaluation.intervals import accuracy_interval, wer_fields  # noqa: E402
from flowomni.evaluation.report import SWEEPS, conditions  # noqa: E402
from flowomni.evaluation.text import exact_match  # noqa: E402

from common import emit  # noqa: E402

SAMPLE_RATE = 16000  # Whisper's, and the rate flowomni eval perturbs questions at
NOISE_LABEL = next(label for sweep, _, label, _ in SWEEPS if sweep == "noise")


def heard(asr: Any, items: list[Any], spec: AugmentSpec | None, seed: int) -> list[dict[str, Any]]:
    """Whisper's transcript of each question, perturbed as `flowomni eval` perturbs it (its own
    `question_audio`, one generator per condition)."""
    rng = np.random.default_rng(seed)
    return [
        {"id": item.id, "question": item.question_text, "heard": asr.transcribe(wav, SAMPLE_RATE)}
        for item, wav in question_audio(items, SAMPLE_RATE, spec, rng)
    ]


def hearing(rows: list[dict[str, Any]]) -> dict[str, Any]:
    refs, hyps = [r["question"] for r in rows], [r["heard"] for r in rows]
    exact = [exact_match(r, h) for r, h in zip(refs, hyps)]
    return {
        "questions": len(rows),
        **wer_fields(refs, hyps, key="question_wer"),
        "heard_exactly": float(np.mean(exact)),
        "heard_exactly_ci95": accuracy_interval(exact),
    }


def accuracy_by_hearing(rows: list[dict[str, Any]], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's accuracy on the questions Whisper heard exactly and on the others (held-out
    world facts left out, as in the eval's target accuracy), joined by question id."""
    from flowomni.data.skills import HELD_OUT_FACTS

    right = {a["id"]: bool(a["exact"]) for a in answers if a["skill"] != HELD_OUT_FACTS}
    out = {}
    for name, want in (("heard exactly", True), ("misheard", False)):
        got = [right[r["id"]] for r in rows if r["id"] in right and exact_match(r["question"], r["heard"]) == want]
        out[name] = {"questions": len(got), "model_accuracy": float(np.mean(got)) if got else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="test manifest; its voice-set siblings are read too")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--snr", type=float, nargs="*", default=[10.0], help="white-noise SNRs (dB), as flowomni eval")
    ap.add_argument("--noise-kind", default="white")
    ap.add_argument("--seed", type=int, default=0, help="flowomni eval's --seed")
    ap.add_argument("--asr", default=None, help="a CTranslate2 Whisper folder (default: tiny.en from its wheel)")
    ap.add_argument("--eval", default=None, help="flowomni eval results.json on the same manifest")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flowomni.evaluation.asr import Transcriber

    asr = Transcriber(args.asr)
    manifest = Path(args.manifest)
    todo: list[tuple[str, Path, AugmentSpec | None]] = [("clean", manifest, None)]
    for snr in args.snr:
        todo.append((f"{NOISE_LABEL} {snr}", manifest, AugmentSpec(noise_snr_db=snr, noise_kind=args.noise_kind)))
    todo += [(name, Path(path), None) for name, path in voice_sets(None, manifest.parent).items()]
    evaluated = json.loads(Path(args.eval).read_text()) if args.eval else {}
    result: dict[str, Any] = {"manifest": str(manifest), "asr": args.asr or "whisper-tiny.en", "conditions": {}}
    for label, path, spec in todo:
        items = [i for i in read_manifest(path)[0] if i.question_audio is not None][: args.limit]
        rows = heard(asr, items, spec, args.seed)
        cond = hearing(rows)
        for model, res in evaluated.items():
            answers = {lab: r for lab, _, r in conditions(res)}.get(label)
            if answers:
                cond.setdefault("model_accuracy_by_hearing", {})[model] = accuracy_by_hearing(rows, answers)
        cond["examples"] = rows[:4]
        result["conditions"][label] = cond
    emit(result, args.json)


if __name__ == "__main__":
    main()
