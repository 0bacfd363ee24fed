"""`flowomni train-codec CONFIG`: fit the discrete baseline's MelCodec on a corpus's answers.

CONFIG is the experiment YAML the model trains from (e.g. configs/tiny_discrete.yaml): its
`data` section names the corpus and feature cache, `model.output_mel`/`model.group` the
groups to quantise, and `model.codec` the codec's size, fitting knobs and the folder to
write (`model.codec.path`, where `flowomni train` loads it from). Answers are drawn in a
seeded random order until `max_groups` groups are collected; unreadable clips are skipped
and counted. The reconstruction error on the valid manifest is printed and stored in the
codec folder's meta.json; `flowomni eval-codec CONFIG` (evaluation/codec.py) then measures how
well speech survives the codec, with the independent ASR.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from flowomni.audio.io import AudioError
from flowomni.config import add_config_arguments, config_from_args

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "experiment", run=False)
    p.add_argument("--out", default=None, help="codec folder to write (default: model.codec.path)")


def answer_features(cache_dir: str, mel_cfg: Any) -> Any:
    """The answer-mel source (one place, so the feature back end can change)."""
    from flowomni.data.features import FeatureCache

    return FeatureCache(cache_dir, mel_cfg)


def group_settings(cfg: Any) -> dict[str, Any]:
    """`collect_groups`' settings for an experiment config (fitting and evaluation agree on them)."""
    m = cfg.model
    return dict(
        group=m.group,
        silence=math.log(m.output_mel.log_floor),
        max_items=cfg.data.max_items,
        max_frames=int(cfg.data.max_answer_seconds * m.output_mel.frame_rate),
        seed=m.codec.seed,
    )


def valid_groups(cfg: Any, feats: Any) -> tuple[torch.Tensor, Counter[str], set[str]]:
    """The valid manifest's held-out answer groups (as `collect_groups` returns them)."""
    return collect_groups(
        cfg.data.valid_manifest, feats, max_groups=max(1000, cfg.model.codec.max_groups // 10), **group_settings(cfg)
    )


def collect_groups(
    manifest: str,
    feats: Any,
    *,
    group: int,
    silence: float,
    max_groups: int,
    max_frames: int,
    max_items: int = 0,
    seed: int = 0,
    exclude: set[str] = frozenset(),
) -> tuple[torch.Tensor, Counter[str], set[str]]:
    """Answer mel groups [N, k, n_mels] of a manifest's items, in a seeded random item order
    until `max_groups`, skipping answer files in `exclude`; problems are counted, never
    fatal. Also returns the answer files used."""
    from flowomni.data.manifest import read_manifest
    from flowomni.model.codec import to_groups

    items, stats = read_manifest(manifest)
    skipped: Counter[str] = Counter({f"manifest: {k}": v for k, v in stats.counts.items()})
    if max_items:
        items = items[:max_items]
    paths = sorted({str(i.answer_audio) for i in items if i.answer_audio is not None} - set(exclude))
    random.Random(seed).shuffle(paths)
    out, n, used = [], 0, set()
    for path in paths:
        if n >= max_groups:
            break
        try:
            mel = torch.from_numpy(feats.get(Path(path))).float()
        except (AudioError, OSError, ValueError) as e:
            skipped["bad answer audio"] += 1
            log.warning("skipping %s: %s", path, e)
            continue
        if mel.shape[0] > max_frames:
            skipped["answer too long"] += 1
            continue
        g = to_groups(mel, group, silence)
        used.add(path)
        out.append(g)
        n += g.shape[0]
    if not out:
        raise ValueError(f"{manifest}: no readable answer audio{' outside the training set' if exclude else ''}")
    return torch.cat(out)[:max_groups], skipped, used


def run(args: argparse.Namespace) -> int:
    from flowomni.model.codec import CodecError, MelCodec
    from flowomni.training.experiment import ExperimentConfig

    cfg = config_from_args(ExperimentConfig, args)
    m, cc = cfg.model, cfg.model.codec
    out = args.out or cc.path
    if not out:
        print("flowomni train-codec: no output folder: set model.codec.path or pass --out", file=sys.stderr)
        return 2
    if not cfg.data.train_manifest:
        print("flowomni train-codec: data.train_manifest is empty", file=sys.stderr)
        return 2
    feats = answer_features(cfg.data.cache_dir, m.output_mel)
    t0 = time.perf_counter()
    try:
        valid, held_out, skipped = None, set(), Counter()
        if cfg.data.valid_manifest:
            valid, vskip, held_out = valid_groups(cfg, feats)
            skipped.update({f"valid {k}": v for k, v in vskip.items()})
        # a corpus may share answer recordings between splits: the valid ones stay held out
        train, tskip, used = collect_groups(
            cfg.data.train_manifest, feats, max_groups=cc.max_groups, exclude=held_out, **group_settings(cfg)
        )
        skipped.update(tskip)
        print(
            f"fitting a codec ({cc.n_q} x {cc.codebook_size}) on {len(train)} groups "
            f"({len(train) * m.group / m.output_mel.frame_rate / 3600:.2f} h of answers)",
            file=sys.stderr,
        )
        codec = MelCodec(cc.n_q, cc.codebook_size, m.group, m.output_mel.n_mels)
        train_mse = codec.fit(train, iters=cc.iters, init_vectors=cc.init_vectors, seed=cc.seed)
    except (ValueError, FileNotFoundError, CodecError) as e:
        print(f"flowomni train-codec: {e}", file=sys.stderr)
        return 2
    report = {
        "codec": str(out),
        "n_q": cc.n_q,
        "codebook_size": cc.codebook_size,
        "train_groups": len(train),
        "train_answers": len(used),
        "train_mse": train_mse,
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "skipped": dict(skipped),
        "config": str(args.config),
        "overrides": list(args.overrides),
    }
    if valid is not None:
        report.update(valid_answers=len(held_out), valid_groups=len(valid), **reconstruction_report(codec, valid))
    codec.save(out, report)
    print(json.dumps(report))
    return 0


@torch.no_grad()
def reconstruction_report(codec: Any, groups: torch.Tensor) -> dict[str, Any]:
    """Held-out reconstruction: normalised MSE after each stage (1 - this is the share of
    the per-bin variance explained) and the log-mel RMSE with all stages."""
    rec = codec.decode(codec.encode(groups))
    return {"valid_mse": codec.error(groups), "valid_logmel_rmse": float((rec - groups).pow(2).mean().sqrt())}
