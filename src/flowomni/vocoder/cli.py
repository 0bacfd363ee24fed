"""`flowomni train-vocoder CONFIG`: train the Vocos-style neural vocoder."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="vocoder YAML (e.g. configs/vocoder.yaml)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: train.max_steps)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run_dir")
    p.add_argument("--run-dir", default=None, help="override run_dir")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="afterwards, write the shippable generator (weights + config) to DIR, e.g. models/vocoder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.gan_start_step=2000 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from flowomni.config import ConfigError, load_config
    from flowomni.vocoder.train import VocoderTrainConfig, train_vocoder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(VocoderTrainConfig, args.config, args.overrides)
    except ConfigError as e:
        print(f"flowomni train-vocoder: bad config: {e}", file=sys.stderr)
        return 2
    if args.run_dir:
        cfg.run_dir = args.run_dir
    try:
        metrics = train_vocoder(cfg, resume=args.resume, max_steps=args.max_steps, export=args.export)
    except (ValueError, FileNotFoundError) as e:
        print(f"flowomni train-vocoder: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"run_dir": cfg.run_dir, **metrics}))
    return 0
