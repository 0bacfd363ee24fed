"""`flowomni train-encoder CONFIG`: pretrain the speech encoder with CTC on the corpus's questions.

The paper starts from Whisper's encoder. Offline nothing can be downloaded, and an encoder
trained from scratch only through the LLM learns acoustics very slowly: after 1,500 steps of
configs/tiny.yaml the valid ASR text cross-entropy was 0.514 with the real question audio
and 0.541 with silence in its place, i.e. the LLM answered from the question templates and
ignored the sound. CTC over the tokenizer's characters gives every encoder frame a direct
signal, so the encoder learns to hear in minutes; the LLM then learns to read its features.

The output folder (safetensors + JSON, like every checkpoint) holds the encoder weights and
the input-feature statistics they were trained with; `model.encoder.pretrained` (a new run)
or `flowomni train --load-encoder` (a running one) load it, as they would a Whisper encoder.
The valid character error rate of greedy CTC decoding is printed and stored in meta.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.config import add_config_arguments, config_from_args

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "experiment", run=False)
    p.add_argument("--out", required=True, help="folder to write the pretrained encoder to")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--valid-items", type=int, default=100)


class CTCEncoder(nn.Module):
    """The model's speech encoder plus a linear CTC head over the tokenizer's symbols (+ blank)."""

    def __init__(self, encoder: nn.Module, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(d_model, vocab_size + 1)  # the last class is the CTC blank
        self.blank = vocab_size

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, n = self.encoder(mel, lengths)
        return self.head(h).log_softmax(-1), n

    def loss(self, mel: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
        logp, n = self(mel, lengths)
        flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
        tlen = torch.tensor([len(seq) for seq in targets], dtype=torch.long)
        return F.ctc_loss(logp.transpose(0, 1), flat, n, tlen, blank=self.blank, zero_infinity=True)

    @torch.no_grad()
    def greedy(self, mel: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        logp, n = self(mel, lengths)
        out = []
        for row, length in zip(logp.argmax(-1), n):
            ids, prev = [], -1
            for i in row[: int(length)].tolist():
                if i != prev and i != self.blank:
                    ids.append(i)
                prev = i
            out.append(ids)
        return out


def pad_batch(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([m.shape[0] for m in mels])
    return nn.utils.rnn.pad_sequence(mels, batch_first=True), lengths


def question_clips(manifest: str, feats: Any, tokenizer: Any, max_frames: int) -> tuple[list[Any], int]:
    """(features, token ids) of every readable question; returns them and the count skipped."""
    from flowomni.audio.io import AudioError
    from flowomni.data.manifest import read_manifest

    items, stats = read_manifest(manifest)
    clips, skipped = [], sum(stats.counts.values())
    for it in items:
        if it.question_audio is None or not it.question_text:
            continue
        try:
            mel = torch.from_numpy(feats.get(Path(it.question_audio)).copy())
        except (AudioError, OSError, ValueError):
            skipped += 1
            continue
        if 0 < mel.shape[0] <= max_frames:
            clips.append((mel, tokenizer.encode(it.question_text), it.question_text))
    return clips, skipped


def train_encoder(cfg: Any, out: Path, *, steps: int, batch_size: int, lr: float, valid_items: int) -> dict[str, Any]:
    from jiwer import cer

    from flowomni.audio.stats import FeatureStats
    from flowomni.checkpoint import save_checkpoint
    from flowomni.data.features import FeatureCache
    from flowomni.model.encoder import SpeechEncoder
    from flowomni.model.tokenizer import build_tokenizer
    from flowomni.training.optim import build_optimizer, warmup_cosine

    mcfg = cfg.model
    tok = build_tokenizer(mcfg.tokenizer)
    feats = FeatureCache(cfg.data.cache_dir, mcfg.input_mel)
    max_frames = int(cfg.data.max_question_seconds * mcfg.input_mel.frame_rate)
    train, skipped = question_clips(cfg.data.train_manifest, feats, tok, max_frames)
    valid, _ = question_clips(cfg.data.valid_manifest, feats, tok, max_frames) if cfg.data.valid_manifest else ([], 0)
    if not train:
        raise ValueError(f"{cfg.data.train_manifest}: no readable question audio to train the encoder on")
    # over the first `stats_items` questions, as a training run of this config estimates them;
    # they travel with the encoder, and a model that loads it adopts them
    stats = FeatureStats.estimate([clip[0] for clip in train[: cfg.data.stats_items]])
    torch.manual_seed(cfg.train.seed)
    model = CTCEncoder(SpeechEncoder(mcfg.encoder), mcfg.encoder.d_model, tok.vocab_size)
    opt = build_optimizer(list(model.named_parameters()), lr, 0.01, [0.9, 0.98])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(min(200, steps // 10), steps, lr, lr / 20))
    rng = random.Random(cfg.train.seed)
    order = sorted(range(len(train)), key=lambda i: train[i][0].shape[0])  # similar lengths per batch
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    t0, losses = time.perf_counter(), []
    for step in range(1, steps + 1):
        b = [train[i] for i in rng.choice(batches)]
        mel, lengths = pad_batch([stats.normalize(x[0]) for x in b])
        loss = model.loss(mel, lengths, [x[1] for x in b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == steps:
            log.info(
                "step %d/%d  ctc %.3f  (%.2f s/step)",
                step,
                steps,
                sum(losses[-100:]) / len(losses[-100:]),
                (time.perf_counter() - t0) / step,
            )
    model.eval()
    refs, hyps = [], []
    for i in range(0, min(valid_items, len(valid)), batch_size):
        b = valid[i : min(i + batch_size, valid_items)]
        mel, lengths = pad_batch([stats.normalize(x[0]) for x in b])
        hyps += [tok.decode(ids) for ids in model.greedy(mel, lengths)]
        refs += [x[2] for x in b]
    meta = {
        "step": steps,
        "train_clips": len(train),
        "skipped": skipped,
        "final_ctc": sum(losses[-100:]) / len(losses[-100:]),
        "valid_cer": cer(refs, hyps) if refs else None,
        "valid_examples": list(zip(refs, hyps))[:5],
        "wall_s": time.perf_counter() - t0,
    }
    state = {
        **{f"encoder.{k}": v for k, v in model.encoder.state_dict().items()},
        **{f"ctc_head.{k}": v for k, v in model.head.state_dict().items()},
        "in_mean": stats.mean,
        "in_std": stats.std,
    }
    import yaml

    from flowomni.config import to_dict

    save_checkpoint(
        out,
        model_state=state,
        config_yaml=yaml.safe_dump({"encoder": to_dict(mcfg.encoder)}),
        meta=meta,
        save_rng=False,
    )
    return meta


def run(args: argparse.Namespace) -> int:
    from flowomni.training.experiment import ExperimentConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(ExperimentConfig, args)
    try:
        meta = train_encoder(
            cfg, Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr, valid_items=args.valid_items
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"flowomni train-encoder: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, **meta}))
    return 0
