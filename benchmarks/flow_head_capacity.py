"""Is the flow head the bottleneck? Fresh heads fitted on a trained model's hidden states.

Teacher-forced hidden states at the GEN positions of training answers (text in, speech out)
and their true mel groups are collected once from the checkpoint; then fresh flow heads of
several widths are trained on the same pairs for the same number of steps. If a wider head
reaches a much lower flow loss (on held-in and held-out pairs) than the checkpoint's own head,
the hidden states carry information the head is too small to use.

    python benchmarks/flow_head_capacity.py --checkpoint runs/tiny_fix/step_00004500 --json

`--listen N` also draws the first N training answers teacher-forced with each head (8 midpoint
steps, Griffin-Lim) and has the independent ASR transcribe them: is the lower loss audible?
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.inference.engine import Engine  # noqa: E402
from flowomni.model.flow_head import FlowHead, FlowHeadConfig  # noqa: E402
from flowomni.training.dataset import teacher_forced_examples  # noqa: E402

from common import emit, environment  # noqa: E402


@torch.no_grad()
def listen(engine: Engine, head: FlowHead, items: list, asr: Any) -> list[dict[str, str]]:
    """Teacher-forced answers drawn by `head`, as the independent ASR hears them."""
    m, out = engine.model, []
    ds, collate = teacher_forced_examples(m, items, "t2s")
    own = m.speech.flow
    m.speech.flow = head.eval()
    try:
        for i in range(len(ds)):
            pred, _ = m.predict_groups(
                collate([ds[i]]), steps=8, method="midpoint", generator=torch.Generator().manual_seed(i)
            )[0]
            wav = engine.vocoder(pred).numpy().reshape(-1)
            out.append({"reference": items[i].answer_text, "heard": asr.transcribe(wav, engine.vocoder.sample_rate)})
    finally:
        m.speech.flow = own
        head.train()
    return out


@torch.no_grad()
def hidden_pairs(engine: Engine, items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden state [N, D], normalised mel group [N, k, F]) at every GEN position."""
    m = engine.model.eval()
    ds, collate = teacher_forced_examples(m, items, "t2s")
    hs, xs = [], []
    for start in range(0, len(ds), 16):
        b = collate([ds[i] for i in range(start, min(start + 16, len(ds)))])
        units = m.speech_units(b)
        h = m.backbone(m.embed(b, units), b["attention_mask"]).last_hidden_state
        ft = b["flow_target"]
        fm = ft >= 0
        hs.append(h[fm])
        xs.append(units[torch.nonzero(fm, as_tuple=True)[0], ft[fm]])
    return torch.cat(hs), torch.cat(xs)


def flow_loss(head: FlowHead, h: torch.Tensor, x: torch.Tensor, seed: int = 0) -> float:
    """Mean flow-matching loss over 4 fixed draws of time and noise."""
    g = torch.Generator().manual_seed(seed)
    head.eval()
    with torch.no_grad():
        loss = sum(float(head.loss(h, x, generator=g).mean()) for _ in range(4)) / 4
    head.train()
    return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", default="data/spoken_qa/train.jsonl")
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--listen", type=int, default=0, metavar="N", help="ASR of N teacher-forced answers per head")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine.load(args.checkpoint, vocoder="griffin-lim")
    data, _ = read_manifest(args.manifest)
    h, x = hidden_pairs(engine, data[: args.items])
    if args.listen:
        from flowomni.evaluation.asr import Transcriber

        asr = Transcriber()

    def heard(head: FlowHead) -> list[dict[str, str]]:
        return listen(engine, head, data[: args.listen], asr)

    split = int(0.9 * len(h))
    result = {
        "checkpoint": args.checkpoint,
        "pairs": len(h),
        "group_dim": x[0].numel(),
        "checkpoint_head": {
            "width": engine.model.cfg.flow.width,
            "depth": engine.model.cfg.flow.depth,
            "loss_held_in": flow_loss(engine.model.speech.flow, h[:split], x[:split]),
            "loss_held_out": flow_loss(engine.model.speech.flow, h[split:], x[split:]),
        },
        "fresh_heads": [],
    }
    if args.listen:
        result["checkpoint_head"]["teacher_forced_heard"] = heard(engine.model.speech.flow)
    g = torch.Generator().manual_seed(0)
    for width in args.widths:
        torch.manual_seed(0)
        head = FlowHead(FlowHeadConfig(width=width, depth=args.depth), h.shape[1], x.shape[2], x.shape[1])
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            idx = torch.randint(0, split, (args.batch_size,), generator=g)
            loss = head.loss(h[idx], x[idx], generator=g).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        result["fresh_heads"].append(
            {
                "width": width,
                "depth": args.depth,
                "params_m": sum(q.numel() for q in head.parameters()) / 1e6,
                "steps": args.steps,
                "loss_held_in": flow_loss(head, h[:split], x[:split]),
                "loss_held_out": flow_loss(head, h[split:], x[split:]),
                "train_s": time.perf_counter() - t0,
            }
        )
        if args.listen:
            result["fresh_heads"][-1]["teacher_forced_heard"] = heard(head)
        print(result["fresh_heads"][-1], file=sys.stderr)
    result["env"] = environment()
    emit(result, args.json)


if __name__ == "__main__":
    main()
