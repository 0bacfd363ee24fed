"""Does reading back its own drawn mel derail the text stream? Teacher-forced text losses of
spoken answers with true against drawn mel fed back.

A speaking model writes each answer character while reading back the mel groups drawn so far
(with aligned pacing the text is timed by them); training showed it recorded mel only (plus
noise, model.feedback_noise). Here the same test answers are scored teacher-forced three ways:
the true mel fed back; the head's own draws fed back (every group drawn in parallel from a
first, teacher-forced pass: `FlowOmni.self_fed` with share 1, the one-step version of what
inference does); and as a text reply (s2t, no speech at all). If drawn feedback costs much
more than true feedback, the speaking cost is exposure bias (model.self_feedback trains it away).

    python benchmarks/feedback_exposure.py --checkpoint models/flowomni-tiny --items 400 --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.model import tokenizer as tk  # noqa: E402
from flowomni.model.flowomni import FlowOmni  # noqa: E402
from flowomni.model.layout import IGNORE, Task  # noqa: E402
from flowomni.training.dataset import teacher_forced_examples  # noqa: E402

from common import emit, environment  # noqa: E402


@torch.no_grad()
def text_scores(
    model: FlowOmni, items: list[Any], task: Task, drawn: bool, seed: int = 0, cache_dir: str = ".cache/features"
) -> dict[str, float]:
    """Mean text cross-entropy and argmax accuracy of the answers' text targets: over all of them
    (characters and the <tpad> that times them) and over characters only; items whose argmax text
    is right at every target; and the same for the characters alone, the best character chosen
    where one is due, whenever it is written (timing set aside). `drawn`: the head's own groups
    fed back instead of the true ones."""
    ds, collate = teacher_forced_examples(model, items, task.value, cache_dir)
    tpad = model.tokenizer.token_id(tk.TEXT_PAD)
    g = torch.Generator().manual_seed(seed)
    ce, right, chars_ce, chars_right, n, n_chars, whole, said, whole_said = 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0
    for start in range(0, len(ds), 16):
        b = collate([ds[i] for i in range(start, min(start + 16, len(ds)))])
        units = model.speech_units(b) if task.speech_out else None
        if drawn and units is not None:
            rows = (b["flow_target"] >= 0).flatten().nonzero().squeeze(1)
            units = model.self_fed(b, units, rows, 1.0, generator=g)
        h = model.backbone(model.embed(b, units), b["attention_mask"]).last_hidden_state
        tt = b["text_target"]
        logits = model.text_logits(h).float()
        for i in range(tt.shape[0]):
            m = tt[i] != IGNORE
            target, lg = tt[i][m], logits[i][m]
            losses = F.cross_entropy(lg, target, reduction="none")
            ok = lg.argmax(-1) == target
            c = target != tpad
            # what it would write once it writes: the best character, <tpad> (timing) set aside
            content = lg[c].index_fill(1, torch.tensor([tpad]), float("-inf")).argmax(-1) == target[c]
            said += int(content.sum())
            whole_said += bool(content.all())
            ce += float(losses.sum())
            right += int(ok.sum())
            n += int(m.sum())
            chars_ce += float(losses[c].sum())
            chars_right += int(ok[c].sum())
            n_chars += int(c.sum())
            whole += bool(ok.all())
    return {
        "text_ce": ce / n,
        "text_accuracy": right / n,
        "char_ce": chars_ce / n_chars,
        "char_accuracy": chars_right / n_chars,
        "char_content_accuracy": said / n_chars,
        "answers_all_right": whole / len(ds),
        "answers_content_right": whole_said / len(ds),
        "answers": len(ds),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = FlowOmni.load(args.checkpoint).eval()
    items, _ = read_manifest(args.manifest)
    items = [it for it in items if it.question_audio and it.answer_audio][: args.items]
    result = {
        "checkpoint": args.checkpoint,
        "manifest": args.manifest,
        "true_mel_fed_back": text_scores(model, items, Task.S2S, drawn=False),
        "drawn_mel_fed_back": text_scores(model, items, Task.S2S, drawn=True),
        "text_reply": text_scores(model, items, Task.S2T, drawn=False),
        "environment": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
