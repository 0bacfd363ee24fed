"""`flowomni serve`: the voice-chat server (WebSocket + HTTP + web page) on one loaded model."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from flowomni.config import ConfigError, add_gen_option, add_set_option, apply_overrides, from_dict, load_config
from flowomni.serving.auth import ENV, is_loopback

if TYPE_CHECKING:
    from flowomni.serving.config import ServerConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    p.add_argument("--vocoder", default=None, help="override the vocoder: griffin-lim or a vocoder folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument("--config", default=None, help="server settings YAML (fields of ServerConfig)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="default 8000")
    p.add_argument("--max-sessions", type=int, default=None, help="open WebSockets at once (default 8)")
    p.add_argument("--max-concurrent", type=int, default=None, help="answers decoded at once, as one batch (default 4)")
    p.add_argument("--max-waiting", type=int, default=None, help="answers queued beyond those (default 4)")
    p.add_argument("--max-turn-seconds", type=float, default=None, help="question audio per turn (default 30)")
    p.add_argument("--idle-timeout", type=float, default=None, help="close idle sessions after this many s")
    p.add_argument(
        "--api-key",
        default=None,
        help="clients must send `Authorization: Bearer KEY` (default: "
        "$FLOWOMNI_API_KEY; required with a --host other machines can reach)",
    )
    p.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (default: loopback names and the --host "
        "address only, against DNS rebinding); '*' answers any (repeatable)",
    )
    p.add_argument(
        "--allow-origin",
        dest="allow_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept browser pages from this origin, e.g. http://localhost:3000 (repeatable)",
    )
    add_set_option(p, "any server setting, e.g. --set vad.silence_ms=500 --set history_turns=2")
    add_gen_option(p, "generation knobs, e.g. --gen max_steps=300 --gen flow_steps=4")
    p.add_argument("--seed", type=int, default=None, help="fixed sampling seed (default: random per answer)")
    p.add_argument("--log-level", default="info")


def server_config(args: argparse.Namespace) -> ServerConfig:
    """Settings from --config YAML, then the flags, then --set overrides."""
    from flowomni.serving.config import ServerConfig

    flags = {
        "host": args.host,
        "port": args.port,
        "max_sessions": args.max_sessions,
        "max_concurrent": args.max_concurrent,
        "max_waiting": args.max_waiting,
        "max_turn_seconds": args.max_turn_seconds,
        "idle_timeout_s": args.idle_timeout,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + args.overrides
    cfg = load_config(ServerConfig, args.config, overrides)
    cfg.api_key = args.api_key or os.environ.get(ENV) or cfg.api_key  # not through --set: a key is text as given
    cfg.allowed_hosts += args.allow_hosts
    cfg.allowed_origins += args.allow_origins
    cfg.check()
    return cfg


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from flowomni.checkpoint import CheckpointError
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine
    from flowomni.serving.app import create_app
    from flowomni.serving.server import uvicorn_config

    try:
        cfg = server_config(args)
        gen = from_dict(GenerationConfig, apply_overrides({"seed": args.seed}, args.gen_overrides), "generation")
        engine = Engine.load(args.checkpoint, vocoder=args.vocoder, device=args.device, gen=gen)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"flowomni serve: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not is_loopback(cfg.host):
        print(f"flowomni serve: listening on {cfg.host}: clients need the API key", file=sys.stderr)
        if cfg.host in ("0.0.0.0", "::") and not cfg.allowed_hosts:
            print(
                "flowomni serve: requests are answered for loopback names only: add --allow-host NAME for each "
                "name or address clients use to reach this machine",
                file=sys.stderr,
            )
    print(
        f"flowomni serve: http://{cfg.host}:{cfg.port}/ (page), /docs (API), /protocol (WebSocket protocols: "
        "/ws and the OpenAI Realtime-compatible /v1/realtime)",
        file=sys.stderr,
    )
    uvicorn.Server(uvicorn_config(create_app(engine, cfg), cfg, log_level=args.log_level)).run()
    return 0
