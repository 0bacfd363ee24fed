"""Connection-level limits uvicorn lacks: header and body deadlines and a connection cap.

uvicorn closes a keep-alive connection that stays idle between requests, but a connection
that sends nothing, drips its headers, or promises a body it never sends is kept forever:
forty of them hold forty sockets and tasks. This HTTP protocol (uvicorn's h11 one) gives
each request `header_timeout_s` from the moment the server waits for it (a new connection,
or the previous answer sent) until its headers are complete, and then `body_timeout_s` for
its whole body; a connection over `max_connections` is answered 503 and closed. A request
that misses a deadline gets 408 when nothing was answered yet, and its connection closes
(the app then sees the client gone). WebSockets are bounded by the session's own limits
once upgraded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("flowomni.serving")

TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
BUSY_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\n"
    b"content-length: 35\r\nconnection: close\r\n\r\nserver busy: too many connections\r\n"
)


def guarded_protocol(max_connections: int, header_timeout_s: float, body_timeout_s: float) -> type[asyncio.Protocol]:
    """An h11 protocol class for `uvicorn.Config(http=...)` with these limits."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = ""  # "headers" | "body" | "" (no request being read)

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("refused a connection: %d open (max_connections)", len(self.connections) - 1)
                transport.write(BUSY_503)
                transport.close()
                return
            self._arm("headers", header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY and self._phase == "headers":
                self._arm("body", body_timeout_s)
            elif state is not h11.IDLE and state is not h11.SEND_BODY:
                self._disarm()  # the request is in (or the connection is ending)

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self._disarm()
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():  # keep-alive: the next request's headers are due
                self._arm("headers", header_timeout_s)

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, ""

        def _expired(self) -> None:
            phase, self._deadline, self._phase = self._phase, None, ""
            if self.transport.is_closing():
                return
            log.info("closed a connection from %s: its request %s did not arrive in time", self.client, phase)
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(TIMEOUT_408)
            self.transport.close()

    return GuardedH11Protocol
