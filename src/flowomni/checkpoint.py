"""Checkpoints as folders of safetensors + JSON, written atomically, never pickled.

Layout of a checkpoint folder:
  model.safetensors      weights (+ any extra tensors such as feature stats)
  config.yaml            the full config the model was built from
  meta.json              step, epoch, free-form metadata
  optimizer.safetensors  optimizer tensors; optimizer.json its non-tensor state
  rng.safetensors        torch RNG states; rng.json python/numpy RNG states
  <other files>          e.g. the tokenizer

A folder is written under a temporary name and renamed into place, so a crash mid-write
never leaves a half checkpoint where `latest_checkpoint` would find it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step_"
_UNSAFE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or in a format we refuse to load."""


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def optimizer_to_flat(opt: torch.optim.Optimizer | dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict (or an optimizer's) into tensors (for safetensors) and JSON."""
    sd = opt if isinstance(opt, dict) else opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{name}"] = val
            else:
                scalars.setdefault(str(idx), {})[name] = val
    return _contiguous(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: Any, tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    for idx, d in js["scalars"].items():
        state.setdefault(int(idx), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": js["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    js = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    return tensors, js


def set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, st, g = js["python"]
    random.setstate((v, tuple(st), g))
    n = js["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def save_checkpoint(
    path: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    config_yaml: str,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | dict[str, Any] | None = None,
    scheduler: Any | None = None,
    save_rng: bool = True,
    files: dict[str, str | bytes] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temp folder + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
    (tmp / "config.yaml").write_text(config_yaml)
    if optimizer is not None:
        t, js = optimizer_to_flat(optimizer)
        save_file(t, str(tmp / "optimizer.safetensors"))
        if scheduler is not None:
            js["scheduler"] = scheduler.state_dict()
        (tmp / "optimizer.json").write_text(json.dumps(js))
    if save_rng:
        t, js = rng_state()
        save_file(_contiguous(t), str(tmp / "rng.safetensors"))
        (tmp / "rng.json").write_text(json.dumps(js))
    for name, content in (files or {}).items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # last: marks completeness
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def check_safe(path: str | Path) -> Path:
    """Refuse anything that is not a complete safetensors+JSON checkpoint folder."""
    path = Path(path)
    if path.is_file():
        if path.suffix in _UNSAFE_SUFFIXES:
            raise CheckpointError(f"{path}: pickle-based checkpoints are refused; use a safetensors checkpoint folder")
        raise CheckpointError(f"{path}: a checkpoint is a folder with model.safetensors and meta.json")
    if not (path / "model.safetensors").is_file() or not (path / "meta.json").is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (model.safetensors and meta.json required)")
    return path


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or Inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """A safetensors file, or CheckpointError naming it and what is wrong (truncated,
    garbled, not safetensors: the library's errors say which)."""
    try:
        return load_file(str(file))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise CheckpointError(f"{file}: unreadable ({type(e).__name__}: {e})") from None


def read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable ({type(e).__name__}: {e})") from None


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """Short hash of weights (at fp16 precision): caches and checkpoints record which encoder."""
    import hashlib

    h = hashlib.sha1()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().to(torch.float16).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint; CheckpointError if the file is damaged or holds NaN/Inf."""
    file = check_safe(path) / "model.safetensors"
    state = read_tensors(file)
    if bad := nonfinite_tensors(state):
        raise CheckpointError(
            f"{file}: {len(bad)} tensor(s) hold NaN or Inf values (e.g. {bad[0]}): the run that wrote it had diverged"
        )
    return state


def load_weights_into(model: Any, path: str | Path, skip: list[str] | tuple[str, ...] = ()) -> None:
    """`model.load_checkpoint_state` with the weights of checkpoint `path`; a file that does
    not fit the model (a tensor of another shape, missing keys) is a CheckpointError naming it.
    Weights whose names start with a `skip` prefix keep the model's own values."""
    state = load_model_state(path)
    if skip:
        own = model.checkpoint_state()  # named as in files
        state = {k: v for k, v in state.items() if not k.startswith(tuple(skip))}
        state |= {k: v for k, v in own.items() if k.startswith(tuple(skip))}
    try:
        model.load_checkpoint_state(state)
    except ValueError as e:
        raise CheckpointError(f"{Path(path) / 'model.safetensors'}: {e}") from None


def load_meta(path: str | Path) -> dict[str, Any]:
    meta = read_json(check_safe(path) / "meta.json")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{Path(path) / 'meta.json'}: not a JSON object")
    return meta


def load_training_state(path: str | Path, optimizer: Any | None, scheduler: Any | None = None) -> None:
    """Restore optimizer, scheduler and RNG states saved by `save_checkpoint`."""
    path = check_safe(path)
    try:
        if optimizer is not None and (path / "optimizer.safetensors").is_file():
            js = read_json(path / "optimizer.json")
            optimizer_from_flat(optimizer, read_tensors(path / "optimizer.safetensors"), js)
            if scheduler is not None and "scheduler" in js:
                scheduler.load_state_dict(js["scheduler"])
        if (path / "rng.safetensors").is_file():
            set_rng_state(read_tensors(path / "rng.safetensors"), read_json(path / "rng.json"))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # well-formed files that do not fit
        raise CheckpointError(
            f"{path}: optimizer or RNG state does not fit this run ({type(e).__name__}: {e})"
        ) from None


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"{STEP_PREFIX}{step:08d}"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete `step_*` folder in `run_dir` (temp folders are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    done = [p for p in run_dir.glob(f"{STEP_PREFIX}*") if (p / "meta.json").is_file()]
    return max(done, key=lambda p: p.name) if done else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Keep the newest `keep` step folders; also clears temp folders of dead writers."""
    run_dir = Path(run_dir)
    steps = sorted(p for p in run_dir.glob(f"{STEP_PREFIX}*") if (p / "meta.json").is_file())
    for p in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    for p in run_dir.glob(f".{STEP_PREFIX}*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
