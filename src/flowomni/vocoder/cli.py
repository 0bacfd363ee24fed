"""`flowomni train-vocoder CONFIG`: train the Vocos-style neural vocoder."""

from __future__ import annotations

import argparse
import json
import sys

from flowomni.config import add_config_arguments, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "vocoder")
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="afterwards, write the shippable generator (weights + config) to DIR, e.g. models/vocoder",
    )


def run(args: argparse.Namespace) -> int:
    from flowomni.vocoder.train import VocoderTrainConfig, train_vocoder

    cfg = config_from_args(VocoderTrainConfig, args)
    try:
        metrics = train_vocoder(cfg, resume=args.resume, max_steps=args.max_steps, export=args.export)
    except (ValueError, FileNotFoundError) as e:
        print(f"flowomni train-vocoder: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"run_dir": cfg.run_dir, **metrics}))
    return 0
