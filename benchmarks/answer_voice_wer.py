"""How well the eval's ASR hears the corpus's own recorded answers: the floor of speech WER.

`flowomni eval` scores a model's speech by the WER of an independent ASR (Whisper tiny.en)
against what the model wrote. Part of that WER is the ASR's, not the model's: the recorded
answers it learned to speak (the piper answer voice) are not heard perfectly either, least
of all short letter and number answers ("E comes after D" -> "he comes after D"). This
transcribes every test question's recorded answer (each distinct clip once, counted per
question as the eval counts) and reports its WER against the answer text, with the eval's
95 % bootstrap interval: a model's speech WER minus this is what its mel loses. Per skill too
(`wer_by_skill`), since the floor differs by answer kind (facts' animal sounds and capitals are
misheard far more often than arithmetic).

    python benchmarks/answer_voice_wer.py --manifest data/spoken_qa/test.jsonl --json
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.audio.io import load_audio  # noqa: E402
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.evaluation.asr import Transcriber  # noqa: E402
from flowomni.evaluation.intervals import wer_fields  # noqa: E402
from flowomni.evaluation.text import normalize, wer  # noqa: E402

from common import emit, environment  # noqa: E402

SR = 16000


def answer_voice_wer(items: list[Any], asr: Transcriber) -> dict[str, Any]:
    """WER of the items' recorded answers against their texts, per item (not per clip)."""
    heard: dict[Path, str] = {}
    refs, hyps, skills = [], [], []
    for it in items:
        if it.answer_audio is None:
            continue
        if it.answer_audio not in heard:
            heard[it.answer_audio] = asr.transcribe(load_audio(it.answer_audio, SR), SR)
        refs.append(it.answer_text)
        hyps.append(heard[it.answer_audio])
        skills.append(getattr(it, "meta", {}).get("skill"))
    if not refs:
        raise SystemExit("no recorded answers in the manifest")
    by_skill: dict[str, list[int]] = defaultdict(list)  # skill -> its items' positions
    for i, skill in enumerate(skills):
        if skill is not None:
            by_skill[skill].append(i)
    exact = [normalize(r) == normalize(h) for r, h in zip(refs, hyps)]
    misheard = sorted({(r, h) for r, h, ok in zip(refs, hyps, exact) if not ok})
    return {
        "items": len(refs),
        "distinct_answers": len(heard),
        **wer_fields(refs, hyps),
        "exact": sum(exact) / len(exact),
        "wer_by_skill": {
            skill: {"items": len(ix), "wer": wer([refs[i] for i in ix], [hyps[i] for i in ix])}
            for skill, ix in sorted(by_skill.items())
        },
        "misheard_examples": [{"answer": r, "heard": h} for r, h in misheard[:20]],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    p.add_argument("--limit", type=int, default=0, help="first N items (0: all)")
    p.add_argument("--beam-size", type=int, default=1, help="ASR beam (1: the eval's greedy decoding)")
    p.add_argument("--compute-type", default="int8", help="ASR weights' type (int8: the eval's; float32)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    items, skipped = read_manifest(args.manifest)
    items = items[: args.limit] if args.limit else items
    result = answer_voice_wer(items, Transcriber(beam_size=args.beam_size, compute_type=args.compute_type))
    meta = {
        "manifest": args.manifest,
        "asr": "whisper tiny.en",
        "beam_size": args.beam_size,
        "compute_type": args.compute_type,
    }
    emit({**meta, **result, "skipped_lines": skipped.total, "env": environment()}, args.json)


if __name__ == "__main__":
    main()
