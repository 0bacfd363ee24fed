"""Server settings. Defaults are the safe ones: loopback only, small queues, firm limits."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VadConfig:
    """Server-side turn detection (hands-free mode): Silero (silero.py) or frame energy (vad.py)."""

    kind: str = "silero"  # "silero" (a small neural detector) or "energy" (the fallback; no model)
    threshold: float = 0.5  # silero: speech probability that starts speech (it ends below threshold - 0.15)
    frame_ms: float = 20.0  # analysis frame (energy; silero's frame is 32 ms)
    threshold_db: float = -45.0  # a frame louder than this (dBFS RMS) may be speech ...
    margin_db: float = 12.0  # ... and this far above the noise floor: the quietest frame of
    noise_window_ms: float = 2000.0  # ... this window (steady noise stops being speech after it)
    min_speech_ms: float = 120.0  # this much loud audio in a row starts speech (clicks do not)
    silence_ms: float = 700.0  # this much quiet after speech ends the turn
    preroll_ms: float = 300.0  # audio kept from before the detected start (soft onsets)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_sessions: int = 8  # open WebSockets; more get `busy` and close 1013
    max_concurrent: int = 4  # answers decoded at the same time, as one batch (slots of the decode loop)
    max_waiting: int = 4  # answers queued behind them; beyond that `busy` / HTTP 503
    max_message_bytes: int = 2 * 1024 * 1024  # one WebSocket message (and one HTTP upload)
    max_turn_seconds: float = 30.0  # question audio per turn
    max_text_chars: int = 500  # a written question
    max_session_turns: int = 200
    idle_timeout_s: float = 300.0  # a session with no message for this long is closed
    history_turns: int = 4  # earlier turns the model sees as context
    # Web pages from other sites may not open the WebSocket (a page on any site could otherwise
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
        from flowomni.config import ConfigError

        for name in ("max_sessions", "max_concurrent", "max_message_bytes", "max_session_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"server.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_waiting", "history_turns"):
            if getattr(self, name) < 0:
                raise ConfigError(f"server.{name} must not be negative, got {getattr(self, name)}")
        if self.max_turn_seconds <= 0 or self.idle_timeout_s <= 0:
            raise ConfigError("server.max_turn_seconds and server.idle_timeout_s must be positive")
        from flowomni.serving.auth import ENV, is_loopback
        from flowomni.serving.detectors import check_vad
        from flowomni.serving.silero import SileroUnavailable, model_path

        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(f"listening on {self.host} (reachable from other machines) needs an API key: "
                              f"pass --api-key or set ${ENV}")
        try:
            check_vad(self.vad)
            if self.vad.kind == "silero":
                model_path()
        except (ValueError, SileroUnavailable) as e:
            raise ConfigError(f"server.{e}" if isinstance(e, ValueError) else str(e)) from None
