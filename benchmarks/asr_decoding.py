"""How much of a model's speech WER is the judge's decoding? The same spoken answers, heard by
Whisper tiny.en greedily (beam 1, what `flowomni eval` has reported so far) and with beam search.

The eval scores speech by an independent ASR's transcript against the model's own text. Greedy
Whisper already mishears 8.1 % of the words of the recorded answers the model learned to speak
(benchmarks/answer_voice_wer.py); with beam 5, faster-whisper's default, 6.5 %. This answers
the test questions once (as the eval does: batched, guided text, the streaming decode precision),
keeps every spoken answer, and transcribes each with every beam asked for, so the difference
between decodings is paired on identical audio.

    python benchmarks/asr_decoding.py models/flowomni-tiny --manifest data/spoken_qa/test.jsonl \
        --beams 1 5 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.evaluation.asr import Transcriber  # noqa: E402
from flowomni.evaluation.intervals import paired_wer_difference, wer_fields  # noqa: E402

from common import emit, environment  # noqa: E402


class Keeping:
    """A transcriber that also keeps every clip it hears, to hear them again otherwise."""

    def __init__(self, asr: Any) -> None:
        self.asr, self.clips = asr, []

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        self.clips.append((wav, sr))
        return self.asr.transcribe(wav, sr)


def compare_decodings(texts: list[str], heard: dict[int, list[str]]) -> dict[str, Any]:
    """WER of each beam's transcripts against `texts`, and each beam minus the first, paired."""
    beams = list(heard)
    out: dict[str, Any] = {}
    for b in beams:
        row: dict[str, Any] = wer_fields(texts, heard[b])
        if b != beams[0]:
            row[f"minus_beam_{beams[0]}"] = paired_wer_difference(texts, heard[b], heard[beams[0]])
        out[f"beam_{b}"] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    p.add_argument("--limit", type=int, default=0, help="first N questions (0: all)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="decodings to compare (first: reference)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from flowomni.evaluation.evaluate import EvalConfig, Evaluator
    from flowomni.inference.engine import Engine
    from flowomni.inference.precision import streaming_dtype

    engine = Engine.load(args.checkpoint)
    engine.gen = dataclasses.replace(engine.gen, decode_dtype=streaming_dtype("auto", engine.model))
    keeping = Keeping(Transcriber(beam_size=args.beams[0]))
    ev = Evaluator(engine, EvalConfig(manifest=args.manifest, limit=args.limit), transcriber=keeping)
    rows = ev.answer(ev.items(args.manifest))
    spoken = [r for r in rows if r.audio_s > 0]
    if len(spoken) != len(keeping.clips):
        raise SystemExit(f"{len(spoken)} spoken answers but {len(keeping.clips)} clips heard")
    heard = {args.beams[0]: [r.heard for r in spoken]}
    for b in args.beams[1:]:
        asr = Transcriber(beam_size=b)
        heard[b] = [asr.transcribe(wav, sr) for wav, sr in keeping.clips]
    result = {
        "checkpoint": args.checkpoint,
        "manifest": args.manifest,
        "asr": "whisper tiny.en (int8, as the eval)",
        "questions": len(rows),
        "spoken_answers": len(spoken),
        "vs_own_text": compare_decodings([r.text for r in spoken], heard),
        "vs_reference": compare_decodings([r.reference for r in spoken], heard),
        "env": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
