"""Where the repository's own files are: the shipped model, in a source checkout.

The lowest layer (no flowomni imports), so the model can find its default checkpoint and the
vocoder its relative folders without reaching up into inference/."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # where models/ and benchmarks/ live in a source checkout
SHIPPED_MODEL = REPO_ROOT / "models" / "flowomni-tiny"


def shipped_model_path() -> Path:
    """The model committed with the repo (or $FLOWOMNI_MODEL)."""
    path = Path(os.environ.get("FLOWOMNI_MODEL", SHIPPED_MODEL))
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no model at {path}: pass a checkpoint folder (--checkpoint runs/tiny/step_N), or set FLOWOMNI_MODEL. "
            "To make one: `flowomni data synth data/spoken_qa && flowomni train-encoder configs/tiny.yaml --out "
            "runs/encoder_ctc && flowomni train configs/flowomni_tiny.yaml && "
            f"flowomni export runs/flowomni_tiny/step_N {SHIPPED_MODEL.relative_to(REPO_ROOT)} "
            "--vocoder models/vocoder --half`"
        )
    return path
