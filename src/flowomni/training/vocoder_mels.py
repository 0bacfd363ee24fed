"""`flowomni vocoder-mels MODEL --manifest M --out DIR`: the speech model's own mel of answer clips.

A vocoder trained on recorded mel hears, at inference, the flow head's drawings instead: smoother
than a recording, with its own small biases. Fine-tuned on the model's mel of clips whose audio
is known, it learns to turn *that* mel into the recorded audio. The mel is drawn teacher-forced
(the model reads the recorded answer's earlier groups, as in training), so every frame is aligned
with the audio: "ground-truth-aligned" fine-tuning, as Tacotron 2 did for its WaveNet. With
`--self-fed 1` each group is drawn from states that read the model's own earlier draws instead,
closer to inference; measured, that mel made the better vocoder (reports/vocoder_gta).

Writes DIR/mels/NNNNNN.safetensors ("mel" [T, n_mels], raw log-mel as the vocoder reads it) and
DIR/train.jsonl (`answer_audio`, `answer_mel`, relative to DIR), which `flowomni train-vocoder`
reads as it reads any manifest (`data.train`; flowomni.vocoder.data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from flowomni.model.layout import Task


@torch.no_grad()
def write_model_mels(
    model_path: str,
    manifest: str,
    out: str,
    *,
    limit: int = 0,
    task: str = Task.S2S.value,
    batch_size: int = 16,
    cache_dir: str = ".cache/features",
    self_fed: float = 0.0,
) -> dict[str, Any]:
    """Draw the model's teacher-forced mel for the first `limit` (0: all) items of `manifest`
    with the model's default sampler; returns counts (written, skipped by reason). `self_fed`:
    see `FlowOmni.predict_groups` (1.0: each group drawn from states that read the model's own
    earlier draws, the closest to the mel the vocoder hears at inference; reports/vocoder_gta)."""
    from flowomni.data.manifest import read_manifest
    from flowomni.model.flowomni import FlowOmni
    from flowomni.training.dataset import teacher_forced_examples

    if not 0.0 <= self_fed <= 1.0:
        raise ValueError(f"self_fed is a share of groups, 0 to 1, got {self_fed}")
    if task not in (Task.S2S.value, Task.T2S.value):
        raise ValueError(f"task must be {Task.S2S.value} or {Task.T2S.value} (spoken answers), got {task!r}")
    model = FlowOmni.load(model_path).float().eval()
    items, stats = read_manifest(manifest)
    skipped: Counter[str] = Counter(stats.counts)
    with_audio = [it for it in items if it.answer_audio is not None]
    if len(with_audio) < len(items):
        skipped["no answer audio"] += len(items) - len(with_audio)
    items = with_audio[:limit] if limit else with_audio
    ds, collate = teacher_forced_examples(model, items, task, cache_dir)
    skipped.update(ds.skipped)
    by_id = {it.id: it for it in items}
    dest = Path(out)
    (dest / "mels").mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for start in range(0, len(ds), batch_size):
        examples = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        for ex, pair in zip(examples, model.predict_groups(collate(examples), self_fed=self_fed)):
            if pair is None:
                skipped["no speech positions"] += 1
                continue
            name = f"mels/{len(lines):06d}.safetensors"
            save_file({"mel": pair[0].float().contiguous()}, str(dest / name))
            audio = os.path.relpath(by_id[ex["id"]].answer_audio, dest)
            lines.append(json.dumps({"id": ex["id"], "answer_audio": audio, "answer_mel": name}))
    if not lines:
        raise ValueError(f"{manifest}: no item gave a mel (skipped: {dict(skipped)})")
    (dest / "train.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "written": len(lines),
        "skipped": dict(skipped),
        "self_fed": self_fed,
        "manifest": str(dest / "train.jsonl"),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model folder (flowomni export) or training checkpoint")
    p.add_argument("--manifest", required=True, help="a corpus manifest whose items have answer audio")
    p.add_argument("--out", required=True, help="folder to write mels/ and train.jsonl to")
    p.add_argument("--limit", type=int, default=0, help="first N items only (0: all)")
    p.add_argument("--task", default=Task.S2S.value, choices=[Task.S2S.value, Task.T2S.value])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--self-fed",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of earlier groups read back as the model's own draws (1: closest to inference)",
    )
    p.add_argument("--cache-dir", default=".cache/features", help="the feature cache training uses")


def run(args: argparse.Namespace) -> int:
    from flowomni.checkpoint import CheckpointError

    if args.limit < 0 or args.batch_size < 1:
        print("flowomni vocoder-mels: --limit must be >= 0 and --batch-size >= 1", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    try:
        result = write_model_mels(
            args.model,
            args.manifest,
            args.out,
            limit=args.limit,
            task=args.task,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
            self_fed=args.self_fed,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"flowomni vocoder-mels: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
