"""Running the app under uvicorn: in the foreground (the CLI) or in a thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from flowomni.serving.config import ServerConfig
from flowomni.serving.transport import guarded_protocol

TRANSPORT_SLACK = 4  # the socket layer accepts messages up to 4x the app's limit, so the app can refuse them politely


def uvicorn_config(app: Any, cfg: ServerConfig, *, port: int | None = None, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port if port is None else port,
        log_level=log_level,
        http=guarded_protocol(cfg.max_connections, cfg.header_timeout_s, cfg.body_timeout_s),
        ws="websockets-sansio",
        ws_max_size=TRANSPORT_SLACK * cfg.max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A uvicorn server on a free loopback port in a background thread.

    with ServerThread(app, cfg) as srv:
        urllib.request.urlopen(srv.url + "/health")
    """

    def __init__(self, app: Any, cfg: ServerConfig, *, port: int | None = None, log_level: str = "warning") -> None:
        self.cfg = cfg
        self.port = port or free_port(cfg.host)
        self.server = uvicorn.Server(uvicorn_config(app, cfg, port=self.port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, name="flowomni-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.cfg.host}:{self.port}/ws"

    def start(self, timeout: float = 60.0) -> ServerThread:
        if self.thread.is_alive():
            return self
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread exited during startup (see its log)")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"server did not start within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
