"""The optional API key: where clients present it, and when a server must have one.

Programs send `Authorization: Bearer KEY` (what the OpenAI SDK does with `api_key=`).
Browsers cannot set headers on a WebSocket, so they may offer the key as a subprotocol,
`openai-insecure-api-key.KEY` (the convention of OpenAI's browser clients), beside the one
they speak. A server reachable from other machines must have a key: without one, anyone who
can reach the port could use the model.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

ENV = "FLOWOMNI_API_KEY"
KEY_PROTOCOL = "openai-insecure-api-key."


def offered_protocols(headers: Mapping[str, str]) -> list[str]:
    raw = headers.get("sec-websocket-protocol") or ""
    return [p.strip() for p in raw.split(",") if p.strip()]


def presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in offered_protocols(headers):
        if proto.startswith(KEY_PROTOCOL):
            return proto[len(KEY_PROTOCOL) :]
    return None


def authorized(headers: Mapping[str, str], key: str | None) -> bool:
    """True when no key is configured, or the request presents it (compared in constant time)."""
    if not key:
        return True
    given = presented_key(headers)
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def chosen_protocol(headers: Mapping[str, str]) -> str | None:
    """The subprotocol to accept: the first one offered that is not a key carrier (a browser
    refuses a connection whose server picks none of those it offered)."""
    return next((p for p in offered_protocols(headers) if not p.startswith(KEY_PROTOCOL)), None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
