"""An experiment = model + data + training configs; builds everything `flowomni train` runs."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from flowomni.audio.io import AudioError
from flowomni.audio.stats import FeatureStats
from flowomni.config import to_dict
from flowomni.model.config import ModelConfig
from flowomni.model.flowomni import FlowOmni
from flowomni.model.tokenizer import Tokenizer, build_tokenizer
from flowomni.training.config import TrainConfig
from flowomni.training.dataset import DataConfig, TaskDataset, collate, written_items

log = logging.getLogger(__name__)


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/default"
    init_from: str = ""  # checkpoint whose weights start this run (e.g. stage 1 -> stage 2)
    # weights not taken from init_from (name prefixes), e.g. ["adapter."] when the speech encoder
    # changed since: those start fresh
    init_skip: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    cfg: ExperimentConfig
    tokenizer: Tokenizer
    model: FlowOmni
    train_set: TaskDataset
    valid_set: TaskDataset | None
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]
    skipped: dict[str, int]


def config_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


@dataclass
class Datasets:
    train_set: TaskDataset
    valid_set: TaskDataset | None
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]
    skipped: dict[str, int]


def question_features(cfg: ExperimentConfig, model: FlowOmni | None) -> tuple[Any, bool]:
    """The question features training reads: a frozen encoder's cached outputs (with their
    augmented versions), or log-mel for an encoder that learns. Returns (source, encoded)."""
    from flowomni.data.features import FeatureCache

    cache = Path(cfg.data.cache_dir)
    if model is not None and cfg.model.encoder.frozen:
        from flowomni.training.encoder_cache import EncoderCache

        return EncoderCache(cache, model, cfg.data.augment), True
    if cfg.data.augment.variants > 1:
        raise ValueError(
            "data.augment needs a frozen pretrained encoder (model.encoder.pretrained + freeze): "
            "augmented versions are cached encoder outputs"
        )
    return FeatureCache(cache, cfg.model.input_mel), False


def build_datasets(cfg: ExperimentConfig, tok: Tokenizer, model: FlowOmni | None = None) -> Datasets:
    """Read manifests and wire feature caches into the task datasets of the training stage."""
    from flowomni.data.features import FeatureCache
    from flowomni.data.manifest import read_manifest

    if not cfg.data.train_manifest:
        raise ValueError("data.train_manifest is empty: point it at a JSONL manifest (flowomni data synth makes one)")
    mcfg = cfg.model
    cache = Path(cfg.data.cache_dir)
    (in_feats, encoded), out_feats = question_features(cfg, model), FeatureCache(cache, mcfg.output_mel)
    tasks = cfg.data.stage1_tasks if cfg.train.stage == 1 else cfg.data.tasks
    skipped: dict[str, int] = {}

    def read(manifest: str, limit: int) -> list[Any]:
        items, stats = read_manifest(manifest)
        for reason, n in stats.counts.items():
            skipped[f"manifest: {reason}"] = skipped.get(f"manifest: {reason}", 0) + n
        return items[:limit] if limit else items

    def dataset(manifest: str, training: bool = False) -> TaskDataset:
        """Spoken items with `tasks`, plus (training) written items with `data.text_tasks` and
        answer-voice sentences with TTS."""
        items = read(manifest, cfg.data.max_items)
        more = []
        if training and cfg.data.text_manifest:
            written = written_items(read(cfg.data.text_manifest, 0), cfg.data.text_items, cfg.data.text_more)
            more.append((written, cfg.data.text_tasks))
        if training and cfg.data.tts_manifest:
            more.append((read(cfg.data.tts_manifest, cfg.data.tts_items), ["tts"]))
        if encoded:  # every version of every question, made in batches before training reads them
            stats = in_feats.precompute([it.question_audio for it in items if it.question_audio is not None])
            for reason, n in stats.counts.items():
                skipped[f"encoder: {reason}"] = skipped.get(f"encoder: {reason}", 0) + n
        ds = TaskDataset(
            items,
            tasks,
            tok,
            in_feats,
            out_feats,
            more=more,
            group=mcfg.group,
            delay=mcfg.delay,
            stack=mcfg.encoder.stack,
            encoded=encoded,
            in_frame_rate=mcfg.input_mel.frame_rate / (2 if encoded else 1),
            out_frame_rate=mcfg.output_mel.frame_rate,
            max_question_seconds=cfg.data.max_question_seconds,
            max_answer_seconds=cfg.data.max_answer_seconds,
            history_prob=cfg.data.history_prob,
            extra_groups=mcfg.extra_groups,
            text_pacing=mcfg.text_pacing,
            text_lead=mcfg.text_lead,
        )
        for reason, n in ds.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        if not len(ds):
            raise ValueError(f"{manifest}: no usable examples for tasks {tasks}")
        return ds

    train_set = dataset(cfg.data.train_manifest, training=True)
    valid_set = dataset(cfg.data.valid_manifest) if cfg.data.valid_manifest else None
    collate_fn = partial(collate, group=mcfg.group, pad_id=tok.pad_id, silence=math.log(mcfg.output_mel.log_floor))
    return Datasets(train_set, valid_set, collate_fn, skipped)


def build_experiment(cfg: ExperimentConfig, *, estimate_stats: bool = True) -> Experiment:
    """Read manifests, wire feature caches, build datasets and the model."""
    from flowomni.model.size import TRAINING_BYTES, check_fits

    tok = build_tokenizer(cfg.model.tokenizer)
    mcfg = cfg.model
    # before the (slow) data and the (large) weights: refuse a model this machine cannot hold
    # (under FSDP each machine of a multi-node launch holds its share)
    nodes = int(os.environ.get("WORLD_SIZE", 1)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    per_param = TRAINING_BYTES / max(1, nodes) if cfg.train.sharding == "fsdp" else TRAINING_BYTES
    check_fits(lambda: FlowOmni(mcfg, tok, pretrained=False), per_param, "model")
    model = FlowOmni(mcfg, tok)  # before the data: a Whisper encoder sets the input features the data needs
    data = build_datasets(cfg, tok, model)
    train_set = data.train_set
    if mcfg.speech_head == "discrete" and not cfg.init_from and not model.speech.codec.fitted:
        raise ValueError(
            "model.speech_head is discrete but model.codec.path names no trained codec: "
            "run `flowomni train-codec CONFIG` first (it writes model.codec.path)"
        )
    if cfg.init_from:
        from flowomni.checkpoint import load_weights_into

        load_weights_into(model, cfg.init_from, skip=cfg.init_skip)
    never_measured = bool((model.out_mean == 0).all() and (model.out_std == 1).all())  # e.g. a text-only start
    if estimate_stats and (not cfg.init_from or never_measured):
        in_stats, out_stats = estimate_feature_stats(
            train_set,
            cfg.data.stats_items,
            mcfg.input_mel.n_mels,
            mcfg.output_mel.n_mels,
            questions=not model.in_stats_fixed,
        )
        model.set_stats(model.in_stats if model.in_stats_fixed else in_stats, out_stats)
    return Experiment(cfg, tok, model, train_set, data.valid_set, data.collate_fn, data.skipped)


def estimate_feature_stats(
    ds: TaskDataset, n_items: int, in_dim: int, out_dim: int, *, questions: bool = True
) -> tuple[FeatureStats, FeatureStats]:
    """Per-bin mean/std of question and answer features over the first `n_items` items
    (`questions=False`: the encoder brought its own input stats, only answers are measured)."""
    clips: dict[str, list[torch.Tensor]] = {"in": [], "out": []}
    seen: set[str] = set()
    for ex in ds.examples:
        if ex.item.id in seen:
            continue
        seen.add(ex.item.id)
        sides = (("in", ds.in_feats, ex.item.question_audio), ("out", ds.out_feats, ex.item.answer_audio))
        for key, feats, path in sides:
            if path is None or (key == "in" and not questions):
                continue
            try:
                clips[key].append(torch.from_numpy(np.asarray(feats.get(Path(path)))))
            except (AudioError, OSError, ValueError):
                pass  # unreadable clips were already counted by the dataset
        if len(seen) >= n_items:
            break
    return (
        FeatureStats.estimate(clips["in"]) if clips["in"] else FeatureStats.identity(in_dim),
        FeatureStats.estimate(clips["out"]) if clips["out"] else FeatureStats.identity(out_dim),
    )
