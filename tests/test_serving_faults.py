"""Whose fault an error is: a server set up with a sampler its model does not have fails every
answer, and says so as its own error (HTTP 500, `internal`), not as the client's (400,
`bad_message`: every domain error is a ValueError, and the server used to map them all to 400).
A bad request is still the client's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
from websockets.asyncio.client import connect

from flowomni.config import SettingError
from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Engine
from flowomni.serving.app import create_app
from flowomni.serving.config import ServerConfig
from flowomni.serving.server import ServerThread
from flowomni.serving.testing import make_tiny_checkpoint


@pytest.fixture(scope="module")
def misconfigured(tmp_path_factory: pytest.TempPathFactory):
    """A server whose engine samples with a one-step student the model does not have (the
    random model speaks from its second step, so every answer reaches the flow head). Engine.load
    refuses such a setting (test below), so it is set after loading: a setup fault that only a
    request reveals."""
    torch.set_num_threads(1)
    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("faults") / "model")
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, seed=0))
    engine.gen = dataclasses.replace(engine.gen, flow_method="student")
    cfg = ServerConfig()
    srv = ServerThread(create_app(engine, cfg), cfg).start()
    yield srv
    srv.stop()


def test_engine_refuses_a_sampler_the_model_lacks_when_built(tmp_path: Path) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "model")
    with pytest.raises(SettingError, match="no one-step flow student"):
        Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, flow_method="student"))


def post(srv: ServerThread, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        srv.url + "/v1/respond",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_answers_a_setup_error_as_its_own(misconfigured):
    status, body = post(misconfigured, {"text": "What is two plus three?"})
    assert status == 500 and body["error"]["code"] == "internal"
    assert "no one-step flow student" in body["error"]["message"]
    status, body = post(misconfigured, {"text": 3})  # the client's mistake is still the client's
    assert status == 400 and body["error"]["code"] == "bad_message"
    with urllib.request.urlopen(misconfigured.url + "/health", timeout=30) as r:
        assert json.loads(r.read())["status"] == "ok"  # and the server is up


def test_websocket_turn_ends_with_an_internal_error_and_the_session_goes_on(misconfigured):
    async def talk() -> list[dict[str, Any]]:
        async with connect(misconfigured.url.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"type": "start"}))
            got = [json.loads(await ws.recv())]
            await ws.send(json.dumps({"type": "text", "text": "What is two plus three?"}))
            while got[-1]["type"] not in ("error", "done"):
                raw = await asyncio.wait_for(ws.recv(), 60)
                got.append(json.loads(raw) if isinstance(raw, str) else {"type": "audio"})
            await ws.send(json.dumps({"type": "ping"}))
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return got

    msgs = asyncio.run(talk())
    assert [m["type"] for m in msgs][0] == "ready" and msgs[-1] == {"type": "pong"}
    error = msgs[-2]
    assert error["type"] == "error" and error["code"] == "internal" and error["turn"] == 1
    assert "no one-step flow student" in error["message"]


def test_a_bad_sampler_name_fails_when_the_server_starts(tmp_path: Path):
    from flowomni.cli import main

    checkpoint = make_tiny_checkpoint(tmp_path / "model")
    assert main(["chat", "--text", "hi", "--checkpoint", str(checkpoint), "--set", "flow_method=eulr"]) == 2
    assert main(["serve", "--checkpoint", str(checkpoint), "--gen", "flow_method=eulr"]) == 2
