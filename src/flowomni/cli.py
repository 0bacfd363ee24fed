"""The `flowomni` command. Each subcommand lives in its own module, imported only when used.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("flowomni.data.cli", "build and inspect corpora (synthetic spoken QA, manifests)"),
    "train": ("flowomni.training.cli", "train a Flow-Omni model from a YAML config"),
    "train-encoder": ("flowomni.training.encoder_ctc", "pretrain the speech encoder with CTC on a corpus's questions"),
    "train-codec": ("flowomni.training.codec", "fit the discrete baseline's mel codec (residual VQ) on a corpus"),
    "train-vocoder": ("flowomni.vocoder.cli", "train the neural vocoder"),
    "vocoder-mels": ("flowomni.training.vocoder_mels", "a model's own mel of answer clips, to tune a vocoder on"),
    "distill-flow": ("flowomni.training.distill_flow", "distil a model's flow sampler into a one-step student"),
    "export": ("flowomni.training.export", "turn a training checkpoint into a self-contained model folder"),
    "chat": ("flowomni.inference.cli", "ask a question (audio or text), hear the answer"),
    "serve": ("flowomni.serving.cli", "run the WebSocket/HTTP server"),
    "eval": ("flowomni.evaluation.cli", "evaluate a checkpoint on a test split"),
    "eval-codec": ("flowomni.evaluation.codec", "ASR WER of held-out answers resynthesised through the mel codec"),
    "bench": ("flowomni.bench_cli", "run the benchmarks in benchmarks/"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowomni", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_)
        p.set_defaults(_module=module)
        if name in sys.argv[1:2]:  # only the chosen subcommand's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        mod = importlib.import_module(args._module)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("flowomni"):
            print(f"flowomni {args.command}: not available in this version", file=sys.stderr)
            return 2
        raise
    from flowomni.config import ConfigError

    try:
        return int(mod.run(args) or 0)
    except ConfigError as e:
        print(f"flowomni {args.command}: bad config: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        # a CheckpointError can only come from its module once imported (torch: not imported here)
        checkpoint = sys.modules.get("flowomni.checkpoint")
        if checkpoint is None or not isinstance(e, checkpoint.CheckpointError):
            raise
        print(f"flowomni {args.command}: bad checkpoint: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
