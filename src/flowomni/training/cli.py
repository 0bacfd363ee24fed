"""`flowomni train CONFIG`: train a Flow-Omni model (CPU, one GPU, or `accelerate launch`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from flowomni.config import ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run_dir")
    p.add_argument("--run-dir", default=None, help="override run_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set model.flow.steps=8 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flowomni.training.experiment import ExperimentConfig, build_experiment, config_yaml
    from flowomni.training.loop import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(ExperimentConfig, args.config, args.overrides)
    except ConfigError as e:
        print(f"flowomni train: bad config: {e}", file=sys.stderr)
        return 2
    if args.run_dir:
        cfg.run_dir = args.run_dir
    from flowomni.training.checkpoint import latest_checkpoint

    if not args.resume and (ckpt := latest_checkpoint(cfg.run_dir)) is not None:
        print(f"flowomni train: {cfg.run_dir} already holds checkpoints (newest {ckpt.name}); pass --resume "
              "to continue it, or choose another --run-dir", file=sys.stderr)
        return 2
    try:
        exp = build_experiment(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"flowomni train: {e}", file=sys.stderr)
        return 2
    print(f"train examples: {len(exp.train_set)}, valid: {len(exp.valid_set) if exp.valid_set else 0}, "
          f"parameters: {sum(p.numel() for p in exp.model.parameters()) / 1e6:.2f} M", file=sys.stderr)
    if exp.skipped:
        print(f"skipped (corpus problems, training goes on): {exp.skipped}", file=sys.stderr)
    metrics = train(
        exp.model, exp.train_set, exp.valid_set, exp.collate_fn, cfg.train, Path(cfg.run_dir),
        config_yaml=config_yaml(cfg), files=exp.model.checkpoint_files(),
        resume=args.resume, max_steps=args.max_steps,
    )
    print(json.dumps({"run_dir": cfg.run_dir, **{k: v for k, v in (metrics or {}).items()}}, default=str))
    return 0
