"""`flowomni export CHECKPOINT OUT_DIR`: a training checkpoint -> a self-contained model folder.

Keeps what inference needs (weights with normalisation stats, config, tokenizer, backbone
config) and drops optimizer and RNG state; optionally copies a vocoder folder inside and
points the config at it, so the folder works wherever it is moved.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from flowomni.checkpoint import check_safe
from flowomni.model.flow_head import FLOW_METHODS

KEEP = ("model.safetensors", "config.yaml", "meta.json", "tokenizer", "backbone")


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    vocoder: str | None = None,
    half: bool = False,
    flow_steps: int | None = None,
    flow_method: str | None = None,
    flow_temperature: float | None = None,
    cfg_scale: float | None = None,
) -> Path:
    """Write the model folder; `vocoder`: a vocoder folder to copy in, or a vocoder name;
    `flow_steps`/`flow_method`/`flow_temperature`/`cfg_scale`: the exported model's default flow
    sampler (benchmarks/flow_steps.py measures which one a model needs)."""
    if flow_steps is not None and flow_steps < 1:
        raise ValueError(f"--flow-steps must be >= 1, got {flow_steps}")
    if flow_temperature is not None and not 0 <= flow_temperature < float("inf"):
        raise ValueError(f"--flow-temperature must be a finite number >= 0, got {flow_temperature}")
    if cfg_scale is not None and not 0 <= cfg_scale < float("inf"):
        raise ValueError(f"--cfg-scale must be a finite number >= 0, got {cfg_scale}")
    if flow_method is not None and flow_method not in FLOW_METHODS:
        raise ValueError(f"--flow-method must be one of {FLOW_METHODS}, got {flow_method!r}")
    src, out = check_safe(checkpoint), Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEEP:
        p = src / name
        if p.is_dir():
            shutil.copytree(p, tmp / name)
        elif p.is_file():
            shutil.copy2(p, tmp / name)
    if half:  # fp16 weights: half the size, for shipping; compute stays fp32 after loading
        from safetensors.torch import load_file, save_file

        sd = load_file(str(tmp / "model.safetensors"))
        save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(tmp / "model.safetensors"))
    cfg = yaml.safe_load((tmp / "config.yaml").read_text()) or {}
    if vocoder:
        if Path(vocoder).is_dir():
            shutil.copytree(vocoder, tmp / "vocoder", ignore=shutil.ignore_patterns("optimizer*", "rng*"))
            cfg.setdefault("model", {})["vocoder"] = "vocoder"
        else:
            cfg.setdefault("model", {})["vocoder"] = vocoder
    flow = cfg.setdefault("model", {}).setdefault("flow", {})
    if flow_steps is not None:
        flow["steps"] = flow_steps
    if flow_method == "student" and not flow.get("student_width"):
        shutil.rmtree(tmp)
        raise ValueError(
            "--flow-method student: this checkpoint has no one-step student (make one with `flowomni distill-flow`)"
        )
    if flow_method is not None:
        flow["method"] = flow_method
    if flow_temperature is not None:
        flow["temperature"] = flow_temperature
    if cfg_scale is not None:
        flow["cfg_scale"] = cfg_scale
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    meta = json.loads((tmp / "meta.json").read_text())
    meta["exported_from"] = str(src)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a training checkpoint folder (runs/x/step_N)")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--vocoder", default=None, help="vocoder folder to copy in (or a name such as griffin-lim)")
    p.add_argument("--half", action="store_true", help="store weights as fp16 (half the size)")
    p.add_argument("--flow-steps", type=int, default=None, help="default flow ODE steps of the exported model")
    p.add_argument("--flow-method", default=None, choices=FLOW_METHODS, help="default flow ODE method")
    p.add_argument(
        "--flow-temperature",
        type=float,
        default=None,
        help="default flow temperature (scale of the ODE's starting noise; 0 starts on the prior's mean)",
    )
    p.add_argument("--cfg-scale", type=float, default=None, help="default classifier-free guidance scale (1: none)")


def run(args: argparse.Namespace) -> int:
    from flowomni.checkpoint import CheckpointError

    try:
        out = export_model(
            args.checkpoint,
            args.out,
            vocoder=args.vocoder,
            half=args.half,
            flow_steps=args.flow_steps,
            flow_method=args.flow_method,
            flow_temperature=args.flow_temperature,
            cfg_scale=args.cfg_scale,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"flowomni export: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")
    return 0
