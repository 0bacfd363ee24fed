"""Which vocoder is heard better, by more than one listener.

A vocoder tuned on the model's own mel (`flowomni vocoder-mels`) may be heard better by the
eval's ASR (Whisper tiny.en) for reasons of that ASR alone. Here the model answers each test
question once; its mel is vocoded by every vocoder given, and every listener given (tiny.en and
any other installed Whisper, e.g. `whisper-base` from its wheels) transcribes each take. Per
(vocoder, listener): speech WER against the model's own text with its 95 % interval, and each
vocoder's difference from the first, paired by answer. The same mel for all vocoders, so only
the vocoder differs.

    python benchmarks/vocoder_listeners.py --model models/flowomni-tiny \
        --vocoders models/vocoder reports/vocoder_gta/self_fed/vocoder \
        --listeners whisper-tiny.en whisper-base --manifest data/spoken_qa/test.jsonl --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.evaluation.asr import Transcriber  # noqa: E402
from flowomni.evaluation.evaluate import question_audio  # noqa: E402
from flowomni.evaluation.intervals import paired_wer_difference, wer_fields  # noqa: E402
from flowomni.evaluation.text import exact_match, normalize  # noqa: E402

from common import emit, environment  # noqa: E402


def listen(
    engine: Any, items: list[Any], vocoders: dict[str, Any], listeners: dict[str, Transcriber], batch: int = 8
) -> list[dict[str, Any]]:
    """One row per spoken answer with text: its text and, per "vocoder/listener", what was heard."""
    sr = engine.model.cfg.input_mel.sample_rate
    rows = []
    for start in range(0, len(items), batch):
        chunk = list(question_audio(items[start : start + batch], sr, None, np.random.default_rng(0)))
        answers = engine.answer_batch([{"audio": wav, "sample_rate": sr} for _, wav in chunk])
        for (item, _), ans in zip(chunk, answers):
            if ans.mel is None or not normalize(ans.text):
                continue
            row = {"id": item.id, "skill": item.meta.get("skill"), "text": ans.text}
            for vname, voc in vocoders.items():
                with torch.no_grad():
                    wav = voc(ans.mel).cpu().numpy()
                for lname, asr in listeners.items():
                    row[f"{vname}/{lname}"] = asr.transcribe(wav, voc.sample_rate)
            rows.append(row)
    return rows


def score(rows: list[dict[str, Any]], vocoders: list[str], listeners: list[str]) -> dict[str, Any]:
    """Per listener, per vocoder: WER vs own text [95 %], exact share, and the paired difference
    from the first vocoder."""
    texts = [r["text"] for r in rows]
    out: dict[str, Any] = {}
    for lname in listeners:
        heard = {v: [r[f"{v}/{lname}"] for r in rows] for v in vocoders}
        out[lname] = {}
        for v in vocoders:
            out[lname][v] = {
                **wer_fields(texts, heard[v]),
                "exact": sum(exact_match(t, h) for t, h in zip(texts, heard[v])) / len(texts),
            }
            if v != vocoders[0]:
                out[lname][v]["minus_first"] = paired_wer_difference(texts, heard[v], heard[vocoders[0]])
    return out


def main() -> None:
    from flowomni.data.manifest import read_manifest
    from flowomni.inference.engine import Engine
    from flowomni.vocoder import load_vocoder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/flowomni-tiny")
    p.add_argument(
        "--vocoders", nargs="+", required=True, help="vocoder folders (or griffin-lim); the first is the baseline"
    )
    p.add_argument(
        "--listeners", nargs="+", default=["whisper-tiny.en"], help="installed Whisper names or CTranslate2 folders"
    )
    p.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    p.add_argument("--limit", type=int, default=0, help="first N items (0: all)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    items, skipped = read_manifest(args.manifest)
    items = [i for i in items if i.question_audio is not None]
    items = items[: args.limit] if args.limit else items
    engine = Engine.load(args.model)
    vocoders = {v: load_vocoder(v, engine.model.cfg.output_mel) for v in args.vocoders}
    listeners = {name: Transcriber(name) for name in args.listeners}
    rows = listen(engine, items, vocoders, listeners)
    result = {
        "model": args.model,
        "manifest": args.manifest,
        "answers": len(rows),
        "by_listener": score(rows, list(vocoders), list(listeners)),
        "rows": rows,
        "skipped_lines": skipped.total,
        "env": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
