"""The causal LM backbone: any Hugging Face `AutoModelForCausalLM`.

Tiny models are built from a config dict (for tests and CPU training); real users pass a hub
name or local path. Flow-Omni only needs three things from it: the token embeddings, the
transformer run on `inputs_embeds` (with a KV cache at inference), and the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


def _tiny_qwen2() -> dict[str, Any]:
    return dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )


@dataclass
class BackboneConfig:
    name_or_path: str | None = None  # hub name or local folder: load pretrained weights
    model_type: str = "qwen2"  # used with `config` when name_or_path is None
    config: dict[str, Any] = field(default_factory=_tiny_qwen2)
    attn_implementation: str = "sdpa"


def build_backbone(
    cfg: BackboneConfig, vocab_size: int, saved_config: str | None = None, *, pretrained: bool = True
) -> nn.Module:
    """A causal LM whose embedding table fits `vocab_size` (grown for the control tokens).

    `saved_config` (a folder with an HF config.json) rebuilds the architecture of a trained
    checkpoint without fetching pretrained weights that the checkpoint overwrites anyway;
    `pretrained=False` builds a `name_or_path` model's architecture only (size estimates).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if saved_config or (cfg.name_or_path and not pretrained):
        hf_cfg = AutoConfig.from_pretrained(saved_config or cfg.name_or_path)
        lm = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation=cfg.attn_implementation)
    elif cfg.name_or_path:
        lm = AutoModelForCausalLM.from_pretrained(cfg.name_or_path, attn_implementation=cfg.attn_implementation)
    else:
        hf_cfg = AutoConfig.for_model(cfg.model_type, vocab_size=vocab_size, **cfg.config)
        lm = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation=cfg.attn_implementation)
    if lm.get_input_embeddings().num_embeddings < vocab_size:
        lm.resize_token_embeddings(vocab_size)
    return lm


def decoder_of(lm: nn.Module) -> nn.Module:
    """The transformer body (embeddings -> final norm) of an HF causal LM."""
    body = getattr(lm, lm.base_model_prefix, None)
    if body is None:
        raise ValueError(f"{type(lm).__name__}: cannot find its base model ({lm.base_model_prefix!r})")
    return body


def hidden_size(lm: nn.Module) -> int:
    return int(lm.config.hidden_size)
