"""`flowomni train CONFIG`: train a Flow-Omni model (CPU, one GPU, or `accelerate launch`)."""

from __future__ import annotations

import argparse
import json
import sys

from flowomni.config import add_config_arguments, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "experiment")
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="fill the caches (log-mel, a frozen encoder's outputs of every augmented version) and exit: "
        "e.g. while an earlier stage still trains",
    )
    p.add_argument(
        "--load-encoder",
        default=None,
        metavar="PATH",
        help="after loading (fresh or --resume), replace the speech encoder's weights with "
        "pretrained ones: a `flowomni train-encoder` folder or a Whisper name/folder",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flowomni.training.experiment import ExperimentConfig, build_experiment, config_yaml
    from flowomni.training.guard import TrainingDiverged
    from flowomni.training.loop import train
    from flowomni.training.sharding import check_sharding

    cfg = config_from_args(ExperimentConfig, args)
    from flowomni.checkpoint import latest_checkpoint

    if not args.resume and (ckpt := latest_checkpoint(cfg.run_dir)) is not None:
        print(
            f"flowomni train: {cfg.run_dir} already holds checkpoints (newest {ckpt.name}); pass --resume "
            "to continue it, or choose another --run-dir",
            file=sys.stderr,
        )
        return 2
    if args.prepare_only:
        cfg.init_from = ""  # the caches do not depend on it (it may not exist yet)
    try:
        check_sharding(cfg.train.sharding)
        exp = build_experiment(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"flowomni train: {e}", file=sys.stderr)
        return 2
    print(
        f"train examples: {len(exp.train_set)}, valid: {len(exp.valid_set) if exp.valid_set else 0}, "
        f"parameters: {sum(p.numel() for p in exp.model.parameters()) / 1e6:.2f} M",
        file=sys.stderr,
    )
    if args.prepare_only:
        return 0
    if exp.skipped:
        print(f"skipped (corpus problems, training goes on): {exp.skipped}", file=sys.stderr)
    try:
        metrics = train(
            exp.model,
            exp.train_set,
            exp.valid_set,
            exp.collate_fn,
            cfg.train,
            Path(cfg.run_dir),
            config_yaml=config_yaml(cfg),
            files=exp.model.checkpoint_files(),
            resume=args.resume,
            max_steps=args.max_steps,
            after_load=(lambda m: m.load_encoder(args.load_encoder)) if args.load_encoder else None,
        )
    except TrainingDiverged as e:
        print(f"flowomni train: {e}", file=sys.stderr)
        return 1
    finally:
        end_process_group()
    print(json.dumps({"run_dir": cfg.run_dir, **{k: v for k, v in (metrics or {}).items()}}, default=str))
    return 0


def end_process_group() -> None:
    """Take down a distributed run's process group before the interpreter exits: left to
    process teardown, gloo's threads can abort a rank ("terminate called without an active
    exception") after training has finished and saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
