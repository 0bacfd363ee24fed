"""`load_vocoder(name_or_path, mel_cfg)`: a vocoder from the name a model config stores."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from flowomni.audio.mel import MelConfig
from flowomni.checkpoint import CheckpointError, check_safe, latest_checkpoint, load_model_state
from flowomni.config import ConfigError, load_config
from flowomni.paths import REPO_ROOT
from flowomni.vocoder.base import Vocoder
from flowomni.vocoder.griffin_lim import GriffinLim, parse_name
from flowomni.vocoder.vocos import NeuralVocoder, VocosConfig, VocosGenerator


class VocoderError(ValueError):
    """A vocoder name or checkpoint that cannot be used, with the reason."""


def _resolve(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if not p.exists() and not p.is_absolute() and (REPO_ROOT / p).exists():
        p = REPO_ROOT / p
    if not p.exists():
        raise VocoderError(
            f"unknown vocoder {name_or_path!r}: expected 'griffin-lim', 'griffin-lim-N' (N iterations) "
            "or a trained vocoder folder (model.safetensors + config.yaml, e.g. models/vocoder)"
        )
    if p.is_dir() and not (p / "model.safetensors").is_file() and (ckpt := latest_checkpoint(p)) is not None:
        p = ckpt  # a training run folder: its newest checkpoint
    return p


def load_neural(
    path: str | Path,
    mel_cfg: MelConfig | None = None,
    name: str | None = None,
    dtype: str = "auto",
    freeze: bool = True,
    device: str | torch.device = "cpu",
) -> NeuralVocoder:
    """A trained Vocos-style vocoder (export or training checkpoint folder) on `device`;
    `dtype`, `freeze`: see NeuralVocoder."""
    p = _resolve(str(path))
    try:
        check_safe(p)
        if not (p / "config.yaml").is_file():
            raise CheckpointError(f"{p}: config.yaml is missing")
        model_cfg = load_config(VocosConfig, p / "config.yaml", section="model")
        stored_mel = load_config(MelConfig, p / "config.yaml", section="mel")
    except (CheckpointError, ConfigError) as e:
        raise VocoderError(f"cannot load vocoder {str(path)!r}: {e}") from e
    if mel_cfg is not None and stored_mel.fingerprint() != mel_cfg.fingerprint():
        diff = {k: (v, getattr(mel_cfg, k)) for k, v in asdict(stored_mel).items() if getattr(mel_cfg, k) != v}
        raise VocoderError(f"vocoder {str(path)!r} was trained on other mel features: (its, asked) = {diff}")
    state = {k.removeprefix("generator."): v for k, v in load_model_state(p).items() if k.startswith("generator.")}
    gen = VocosGenerator(model_cfg, stored_mel)
    try:
        gen.load_state_dict(state)
    except RuntimeError as e:
        raise VocoderError(f"{p}: weights do not fit its config.yaml ({e})") from e
    return NeuralVocoder(gen.to(device), name=name or str(path), dtype=dtype, freeze=freeze)


def load_vocoder(name_or_path: str, mel_cfg: MelConfig, device: str | torch.device = "cpu") -> Vocoder:
    """ "griffin-lim" (32 iterations), "griffin-lim-N", or a path to a trained vocoder folder,
    running on `device` (the model's: mel groups need not leave it until they are audio)."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise VocoderError(f"vocoder name must be a non-empty string, got {name_or_path!r}")
    n_iter = parse_name(name_or_path)
    if n_iter is not None:
        return GriffinLim(mel_cfg, n_iter, device=device)
    return load_neural(name_or_path, mel_cfg, name=name_or_path, device=device)
