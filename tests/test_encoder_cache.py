"""Frozen-encoder output cache: equals the encoder, augmented versions are fixed per clip, and a
training step on cached outputs is the step on log-mel."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from flowomni.data.augment import AugmentConfig
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.training.dataset import TaskDataset, collate
from flowomni.training.encoder_cache import EncoderCache

from helpers.models import whisper_tiny_model
from helpers.speech import MemoryFeatures


@pytest.fixture(scope="module")
def model() -> FlowOmni:
    torch.manual_seed(0)
    return whisper_tiny_model().eval()


def test_cached_outputs_equal_the_encoder(model, spoken_items, tmp_path):
    cache = EncoderCache(tmp_path, model)
    clip = spoken_items[0].question_audio
    got = cache.get(clip)
    mel = torch.from_numpy(MemoryFeatures(model.cfg.input_mel).get(clip))
    ref, n = model.run_encoder(mel[None], torch.tensor([mel.shape[0]]))
    assert got.dtype == np.float16 and got.shape == (int(n), 384)
    np.testing.assert_allclose(got.astype(np.float32), ref[0].numpy(), atol=2e-2, rtol=0)
    assert cache.file_for(clip, 0).is_file()
    again = EncoderCache(tmp_path, model).get(clip)  # read back from disk
    np.testing.assert_array_equal(again, got)


def test_augmented_versions_are_fixed_and_distinct(model, spoken_items, tmp_path):
    cache = EncoderCache(tmp_path, model, AugmentConfig(variants=3))
    clip = spoken_items[1].question_audio
    versions = [cache.get(clip, v) for v in range(3)]
    assert cache.spec(clip, 0) is None and cache.spec(clip, 1) != cache.spec(clip, 2)
    assert not np.array_equal(versions[0][:10], versions[1][:10])
    other = EncoderCache(tmp_path / "other", model, AugmentConfig(variants=3))
    assert other.fingerprint == cache.fingerprint  # same settings, same folder name
    np.testing.assert_array_equal(other.get(clip, 2), versions[2])  # recomputed identically
    assert EncoderCache(tmp_path, model, AugmentConfig(variants=3, p_noise=0.0)).fingerprint != cache.fingerprint
    assert EncoderCache(tmp_path, model, AugmentConfig(variants=5)).fingerprint == cache.fingerprint  # shared files
    with pytest.raises(ValueError, match="variant 3"):
        cache.get(clip, 3)


def test_precompute_fills_every_version_and_counts_bad_clips(model, spoken_items, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    cache = EncoderCache(tmp_path / "c", model, AugmentConfig(variants=2))
    stats = cache.precompute([it.question_audio for it in spoken_items] + [bad], progress=False)
    assert stats.total == 1
    assert len(list(cache.dir.rglob("*.npy"))) == 2 * len(spoken_items)


def test_training_on_cached_outputs_equals_training_on_log_mel(model, spoken_items, tmp_path):
    """The same batch through the cache ("in_enc") and through the encoder ("in_mel"): one loss."""
    cfg, tok = model.cfg, model.tokenizer
    out_feats = MemoryFeatures(cfg.output_mel)
    common = dict(group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack)
    by_mel = TaskDataset(spoken_items, [Task.S2S.value], tok, MemoryFeatures(cfg.input_mel), out_feats, **common)
    by_enc = TaskDataset(
        spoken_items,
        [Task.S2S.value],
        tok,
        EncoderCache(tmp_path, model),
        out_feats,
        encoded=True,
        in_frame_rate=50.0,
        **common,
    )
    assert by_mel.lengths == by_enc.lengths
    col = partial(collate, group=cfg.group, pad_id=tok.pad_id, silence=math.log(cfg.output_mel.log_floor))
    a, b = col([by_mel[i] for i in range(4)]), col([by_enc[i] for i in range(4)])
    assert "in_enc" in b and "in_mel" not in b
    with torch.no_grad():
        torch.manual_seed(1)
        la = model(a)["loss"]
        torch.manual_seed(1)
        lb = model(b)["loss"]
    assert abs(float(la) - float(lb)) < 1e-2


def test_each_epoch_reads_another_version(model, spoken_items, tmp_path):
    class Versions:
        variants = 4

        def get(self, path: Path, variant: int = 0) -> np.ndarray:
            return np.full((20, 384), variant, np.float16)

    cfg = model.cfg
    ds = TaskDataset(
        spoken_items,
        [Task.S2T.value],
        model.tokenizer,
        Versions(),
        MemoryFeatures(cfg.output_mel),
        group=cfg.group,
        delay=cfg.delay,
        stack=cfg.encoder.stack,
        encoded=True,
    )
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        first = int(ds[0]["in_mel"][0, 0])
        ds.set_epoch(epoch)
        assert int(ds[0]["in_mel"][0, 0]) == first  # a function of (item, epoch): resumable
        seen.add(first)
    assert len(seen) >= 3
