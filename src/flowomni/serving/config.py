"""Server settings. Defaults are the safe ones: loopback only, small queues, firm limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from flowomni.config import Bounds, ConfigError, check_bounds
from flowomni.inference.limits import MAX_QUESTION_SECONDS
from flowomni.serving.vad_config import VadConfig, check_vad

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # Host names served without --allow-host


@dataclass
class ServerConfig:
    BOUNDS: ClassVar[Bounds] = {
        "port": (0, 65535),
        "max_sessions": (1, 100_000),
        "max_concurrent": (1, 1024),
        "max_waiting": (0, 100_000),
        "max_message_bytes": (1024, 1 << 30),
        "max_turn_seconds": (0.1, 3600),
        "max_text_chars": (1, 1_000_000),
        "max_session_turns": (1, None),
        "idle_timeout_s": (0.01, None),
        "history_turns": (0, 1000),
        "max_history_chars": (0, 1_000_000),
        "max_prompt_positions": (16, 1_000_000),
        "max_upload_channels": (1, 64),
        "max_connections": (1, 100_000),
        "header_timeout_s": (0.01, 3600),
        "body_timeout_s": (0.01, 3600),
    }

    host: str = "127.0.0.1"
    port: int = 8000
    max_sessions: int = 8  # open WebSockets; more get `busy` and close 1013
    max_concurrent: int = 4  # answers decoded at the same time, as one batch (slots of the decode loop)
    max_waiting: int = 4  # answers queued behind them; beyond that `busy` / HTTP 503
    max_message_bytes: int = 2 * 1024 * 1024  # one WebSocket message (and one HTTP upload)
    max_turn_seconds: float = MAX_QUESTION_SECONDS  # question audio per turn (uploads: checked from the header)
    max_upload_channels: int = 2  # channels of an uploaded file (checked from the header, before decoding)
    max_text_chars: int = 500  # a written question
    max_session_turns: int = 200
    idle_timeout_s: float = 300.0  # a session with no message for this long is closed
    history_turns: int = 4  # earlier turns the model sees as context
    max_history_chars: int = 2000  # characters of those turns (questions + answers); older turns are dropped
    max_prompt_positions: int = 3072  # history + question as the model reads it (prefill cost grows ~quadratically)
    # connections: at most this many open (HTTP and WebSocket); a request's headers must arrive
    # within header_timeout_s of its connection (or of the previous answer), its body within body_timeout_s
    max_connections: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 reaches this
    # server with `Host: evil.example`. Only the names listed here (and loopback, and a specific
    # --host address) are served; "*" serves any name (e.g. behind a proxy that checks it).
    allowed_hosts: list[str] = field(default_factory=list)
    # Web pages from other sites may not open the WebSocket or POST (a page on any site could otherwise
    # talk to a server on your machine); list extra allowed origins, e.g. "http://localhost:3000".
    allowed_origins: list[str] = field(default_factory=list)
    # Clients must send `Authorization: Bearer <api_key>` (/v1/realtime, /v1/respond, /ws) when
    # set; required when `host` is not a loopback address. The CLI also reads $FLOWOMNI_API_KEY.
    api_key: str | None = None
    vad: VadConfig = field(default_factory=VadConfig)

    def limits(self) -> dict[str, float]:
        """What clients are told in `ready`."""
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_turn_seconds": self.max_turn_seconds,
            "max_text_chars": self.max_text_chars,
            "max_session_turns": self.max_session_turns,
            "idle_timeout_s": self.idle_timeout_s,
        }

    def check(self) -> None:
        """Settings built in Python (not read by from_dict) get the same checks."""
        from flowomni.serving.auth import ENV, is_loopback
        from flowomni.serving.silero import SileroUnavailable, model_path

        check_bounds(self)
        if not isinstance(self.allowed_hosts, list) or not all(isinstance(h, str) and h for h in self.allowed_hosts):
            raise ConfigError(f"allowed_hosts must be a list of host names, got {self.allowed_hosts!r}")
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(
                f"listening on {self.host} (reachable from other machines) needs an API key: "
                f"pass --api-key or set ${ENV}"
            )
        check_vad(self.vad)
        if self.vad.kind == "silero":
            try:
                model_path()
            except SileroUnavailable as e:
                raise ConfigError(str(e)) from None
