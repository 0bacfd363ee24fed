"""The web page in a real browser: headless Debian chromium with a fake microphone fed from a
spoken question holds a whole hands-free turn (AudioWorklet capture -> server VAD -> answer
text and streamed audio played back), driven over the Chrome DevTools Protocol with the
`websockets` package. Leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from websockets.asyncio.client import connect

from flowomni.audio.io import load_audio
from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Engine
from flowomni.serving.app import create_app
from flowomni.serving.config import ServerConfig
from flowomni.serving.server import ServerThread
from flowomni.serving.testing import make_tiny_checkpoint
from flowomni.serving.vad_config import VadConfig

from helpers.speech import espeak

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing (apt-get install chromium; `make setup` installs it)",
    ),
]


class DevTools:
    """The smallest Chrome DevTools Protocol client: commands by id, events collected."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    async def js(self, expr: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def wait_for(self, expr: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expr)
            if value:
                return value
            await asyncio.sleep(0.1)
        stats = await self.js("JSON.stringify(window.flowomniStats)")
        raise AssertionError(f"timed out waiting for {what}; page stats: {stats}; console: {self.console()}")

    def console(self) -> list[str]:
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in e["params"]["args"]))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("exception", {}).get("description", "exception"))
        return out


def fake_mic_wav(path: Path) -> Path:
    """The question as chromium's fake capture wants it: 16-bit, 48 kHz, with silence before
    (the mic starting) and a long one after (the file loops; the turn must end first)."""
    speech = load_audio(espeak("What is two plus three?", path.with_suffix(".espeak.wav")), 48000)
    wav = np.concatenate(
        [np.zeros(24000, np.float32), 0.8 * speech / np.abs(speech).max(), np.zeros(48000 * 8, np.float32)]
    )
    sf.write(path, wav, 48000, subtype="PCM_16")
    return path


def devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 30) -> int:
    f = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not (f.exists() and f.read_text().strip()):
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not open its DevTools port")
        time.sleep(0.1)
    return int(f.read_text().split()[0])


@pytest.fixture
def server(tmp_path: Path):
    torch.set_num_threads(1)
    engine = Engine.load(make_tiny_checkpoint(tmp_path / "model"), gen=GenerationConfig(max_steps=40, seed=0))
    cfg = ServerConfig(vad=VadConfig(silence_ms=500))
    with ServerThread(create_app(engine, cfg), cfg) as srv:
        yield srv


def test_browser_hands_free_turn(server: ServerThread, tmp_path: Path) -> None:
    wav = fake_mic_wav(tmp_path / "question.wav")
    profile = tmp_path / "profile"
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--window-size=900,1000",
        server.url + "/",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "LANG": "C"})
    try:
        port = devtools_port(profile, proc)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page" and t["url"].startswith(server.url))
        asyncio.run(asyncio.wait_for(drive(page["webSocketDebuggerUrl"]), 120))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def drive(url: str) -> None:
    async with connect(url, max_size=None) as ws:
        dt = DevTools(ws)
        await dt.call("Runtime.enable")
        await dt.wait_for("window.flowomniStats && flowomniStats.ready", 20, "the page to connect")
        t0 = time.monotonic()
        await dt.js("flowomni.setHandsFree(true)")  # microphone on: the fake one plays the question
        await dt.wait_for("flowomniStats.speechStarts >= 1", 20, "the server to hear speech")
        await dt.wait_for("flowomniStats.done >= 1", 40, "the answer to finish")
        await dt.js("flowomni.setHandsFree(false)")
        await dt.wait_for(
            "flowomniStats.chunksPlayed > 0 && flowomniStats.chunksPlayed === flowomniStats.audioChunks",
            20,
            "the answer's audio to play out",
        )
        s = await dt.js("flowomniStats")
        took = time.monotonic() - t0
        # one whole turn, ended by the server's VAD, answered in text and speech
        assert s["turns"] == 1 and s["done"] == 1 and s["errors"] == 0 and s["busy"] == 0, s
        assert s["micSent"] > 10
        answer = await dt.js("document.querySelector('.msg.bot div').textContent")
        assert answer and answer == s["answerText"], (answer, s)
        assert s["audioSamples"] > 22050 // 2
        assert s["secondsPlayed"] == pytest.approx(s["audioSamples"] / 22050, abs=0.01)
        assert s["lastTimings"]["first_audio_ms"] > 0 and s["lastClientFirstAudioMs"] > 0
        assert "first audio" in await dt.js("document.querySelector('.msg.bot .meta').textContent")
        assert await dt.js("flowomni.view.frames") > 10  # the mel view was drawn
        # a typed follow-up in the same conversation
        await dt.js("flowomni.ask('And what is two plus four?')")
        await dt.wait_for("flowomniStats.done >= 2", 30, "the second answer")
        s2 = await dt.js("flowomniStats")
        assert s2["turns"] == 2 and s2["errors"] == 0 and s2["audioSamples"] > s["audioSamples"]
        assert await dt.js("document.querySelectorAll('.msg.bot .meta').length") == 2
        assert not [c for c in dt.console() if "Error" in c], dt.console()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / ".gitignore").write_text("*\n")
        shot = await dt.call("Page.captureScreenshot", format="png")
        (ARTIFACTS / "serving_browser.png").write_bytes(base64.b64decode(shot["data"]))
        print(f"browser turn took {took:.1f} s; stats: {s}")
