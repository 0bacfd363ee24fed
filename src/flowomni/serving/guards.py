"""Who may talk to the server: the Host and Origin policy, as ASGI middleware.

Two attacks reach a server on 127.0.0.1 from a web page the user merely visits:
- DNS rebinding: evil.example's name is made to resolve to 127.0.0.1, so its page is, to the
  browser, same-origin with this server; every request then carries `Host: evil.example:PORT`.
  Only allowlisted Host names are served (loopback names, the bound address, `--allow-host`).
- Cross-site requests: any page may POST to any address, and may open a WebSocket anywhere.
  A request that carries an `Origin` (browsers send one on every POST and WebSocket) is
  served only when that origin is an allowlisted host on this server's port, or is listed in
  `allowed_origins`; the Host header is never what an origin is compared against.
Clients that are not browsers (curl, scripts) send no Origin and are unaffected.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flowomni.serving.config import LOOPBACK_HOSTS, ServerConfig

log = logging.getLogger("flowomni.serving")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
WILDCARD_BINDS = ("", "0.0.0.0", "::")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def allowed_host_names(cfg: ServerConfig) -> set[str]:
    names = {*LOOPBACK_HOSTS, *(h.lower().rstrip(".") for h in cfg.allowed_hosts)}
    if cfg.host not in WILDCARD_BINDS:
        names.add(cfg.host.lower())
    return names


def split_host(value: str) -> tuple[str, int | None] | None:
    """`name:port`, `[::1]:port` or `name` -> (lower-case name, port); None if malformed."""
    try:
        parts = urllib.parse.urlsplit(f"//{value}")
        return (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return None


class HostOriginGuard:
    """Refuses requests to Host names not served here (HTTP 403 `forbidden_host`) and
    WebSockets or state-changing requests from other sites' pages (403 `forbidden_origin`)."""

    def __init__(self, app: ASGIApp, cfg: ServerConfig) -> None:
        self.app, self.cfg = app, cfg
        self.any_host = "*" in cfg.allowed_hosts
        self.hosts = allowed_host_names(cfg)
        self.origins = {o.rstrip("/") for o in cfg.allowed_origins}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in (b"host", b"origin")}
        host = split_host(headers.get("host", ""))
        if "host" in headers and not self.any_host and (host is None or host[0] not in self.hosts):
            return await self.refuse(
                scope,
                receive,
                send,
                "forbidden_host",
                f"this server does not answer to the name {headers['host'][:100]!r}: "
                f"start it with --allow-host NAME to serve it",
            )
        origin = headers.get("origin")
        checks_origin = scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        if origin is not None and checks_origin and not self.origin_allowed(origin, host):
            return await self.refuse(
                scope,
                receive,
                send,
                "forbidden_origin",
                f"pages from {origin[:100]!r} may not use this server (allowed_origins: {sorted(self.origins)})",
            )
        await self.app(scope, receive, send)

    def origin_allowed(self, origin: str, host: tuple[str, int | None] | None) -> bool:
        """Listed in allowed_origins, or an allowlisted name on the port the request came to."""
        if origin.rstrip("/") in self.origins:
            return True
        try:
            parts = urllib.parse.urlsplit(origin)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or (parts.hostname or "").rstrip(".") not in self.hosts:
            return False
        served_port = host[1] if host is not None and host[1] is not None else DEFAULT_PORTS[parts.scheme]
        return port == served_port

    async def refuse(self, scope: Scope, receive: Any, send: Any, code: str, message: str) -> None:
        log.warning("refused %s %s: %s", scope["type"], scope.get("path"), message)
        if scope["type"] == "websocket":  # before accept: the handshake fails with HTTP 403
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
