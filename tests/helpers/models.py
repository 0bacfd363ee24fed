"""Tiny models for tests: a config that builds in a second, and one that always speaks."""

from __future__ import annotations

import torch

from flowomni.model.config import ModelConfig
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import GEN, START
from flowomni.model.tokenizer import CharTokenizer


def tiny_config() -> ModelConfig:
    """A 2-layer, 64-wide backbone with a small encoder and flow head: builds and steps in milliseconds."""
    cfg = ModelConfig()
    cfg.backbone.config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2)
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
