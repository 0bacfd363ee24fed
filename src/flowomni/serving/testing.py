"""A tiny random model for exercising the server (tests, the load benchmark) without a trained one.

Its text is gibberish (it never ends its text early: see below), but the protocol does not
care. Left alone, a random model may never start speaking; `force_speech_states` sets the
speech-state head's bias so START, then GEN, always win (the decoder's grammar only allows
PAD/START before speech and GEN/STOP after), so every answer streams audio until `max_steps`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from flowomni.config import to_dict
from flowomni.model.layout import GEN, START


def force_speech_states(model: torch.nn.Module) -> None:
    """Make the state head always choose START, then GEN, whatever the hidden state: random
    weights never decide to speak, and costs and the protocol do not depend on the weights."""
    with torch.no_grad():
        model.state_head.weight.zero_()
        model.state_head.bias.zero_()
        model.state_head.bias[START] = model.state_head.bias[GEN] = 50.0


def make_tiny_checkpoint(path: str | Path, *, force_speech: bool = True, seed: int = 0) -> Path:
    """Write a ~0.5 M-parameter random FlowOmni checkpoint to `path` and return it."""
    from flowomni.checkpoint import save_checkpoint
    from flowomni.model.config import ModelConfig
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.tokenizer import CharTokenizer

    torch.manual_seed(seed)
    cfg = ModelConfig()
    cfg.backbone.config.update(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    cfg.encoder.d_model, cfg.encoder.n_layers, cfg.encoder.ffn_dim = 64, 1, 128
    cfg.vocoder = "griffin-lim"
    model = FlowOmni(cfg, CharTokenizer())
    with torch.no_grad():
        # A random model tends to repeat its input token, here a control token (end of text,
        # reply marker) that prints nothing. With the control tokens' rows of the (tied)
        # embedding at zero their logits are 0, while the best of the ~80 character logits is
        # positive: every answer writes (gibberish) text until max_steps.
        from flowomni.model import tokenizer as tk

        emb = model.lm.get_input_embeddings().weight
        for special in tk.SPECIALS:
            emb[model.tokenizer.token_id(special)].zero_()
    if force_speech:
        force_speech_states(model)
    path = Path(path)
    save_checkpoint(
        path,
        model_state=model.checkpoint_state(),
        config_yaml=yaml.safe_dump({"model": to_dict(cfg)}),
        meta={"step": 0},
        files=model.checkpoint_files(),
        save_rng=False,
    )
    return path
