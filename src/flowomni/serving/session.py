"""One conversation over one WebSocket: turn-taking, barge-in, history, limits.

The session does not know about WebSockets: it is fed client messages (`handle_text`,
`handle_bytes`) and talks back through two async callables, so its rules can be read (and
tested) in one place. The protocol it implements is documented in protocol.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flowomni.audio.io import AudioError
from flowomni.config import ConfigError, SettingError, from_dict, to_dict
from flowomni.inference.decoder import PromptTooLong
from flowomni.inference.engine import AudioChunk, Received, TextDelta
from flowomni.serving import protocol as P
from flowomni.serving.config import ServerConfig
from flowomni.serving.detectors import make_vad
from flowomni.serving.limits import fit_history
from flowomni.serving.queue import Busy, Ticket, WorkQueue
from flowomni.serving.silero import SileroUnavailable
from flowomni.serving.vad import EnergyVAD
from flowomni.serving.vad_config import VadConfig

log = logging.getLogger("flowomni.serving")

SendJson = Callable[[dict[str, Any]], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]
VAD_KEYS = tuple(to_dict(VadConfig()))
WIND_DOWN_S = 10.0  # longest wait for an interrupted answer's worker before the next turn is admitted


@dataclass
class AnswerState:
    """An answer being generated, and what has been sent of it so far."""

    turn: int
    t_end: float  # perf_counter when the user's turn ended
    question: str  # text of the question ("" when spoken)
    got: Received = field(init=False)  # text, samples and first-event times sent so far; queue_ms
    task: asyncio.Task[None] | None = None
    finishing: bool = False  # the answer ended by itself: its task sends the final message
    reported: bool = False  # the final message (done or error) was sent

    def __post_init__(self) -> None:
        self.got = Received(clock=self.ms, keep_audio=False)  # the audio went to the client

    def ms(self) -> float:
        return (time.perf_counter() - self.t_end) * 1000

    def done_message(self, interrupted: bool, history: int) -> dict[str, Any]:
        got = self.got
        engine = got.done.timings if got.done is not None else {}
        audio_s = got.samples / got.sample_rate if got.sample_rate else 0.0
        t = {**got.timings, "total_ms": self.ms(), "audio_seconds": audio_s, "rtf": engine.get("rtf", 0.0)}
        return {
            "type": "done",
            "turn": self.turn,
            "text": got.text,
            "interrupted": interrupted,
            "audio_seconds": round(audio_s, 3),
            "audio_samples": got.samples,
            "history": history,
            "timings": {**rounded(t), "engine": rounded(engine)},
        }


def rounded(timings: dict[str, float]) -> dict[str, float]:
    """ms to 0.1 ms, ratios and seconds to 3 decimals: enough for people, short on the wire."""
    return {k: round(v, 1 if k.endswith("_ms") else 3) if isinstance(v, float) else v for k, v in timings.items()}


class Session:
    def __init__(
        self, engine: Any, queue: WorkQueue, cfg: ServerConfig, send_json: SendJson, send_bytes: SendBytes
    ) -> None:
        self.engine, self.queue, self.cfg = engine, queue, cfg
        self._send_json, self._send_bytes = send_json, send_bytes
        self._lock = asyncio.Lock()  # one message on the wire at a time, in order
        self.id = uuid.uuid4().hex[:12]
        self.options: P.StartOptions | None = None
        self.vad: EnergyVAD | None = None
        self.buffer: list[np.ndarray] = []
        self.buffered = 0  # samples in `buffer`
        self.overflow = False  # the turn went over the length limit: ignore audio until end_of_turn
        self.history: deque[tuple[str, str]] = deque(maxlen=cfg.history_turns)
        self.turns = 0
        self.answer: AnswerState | None = None
        self.last_ticket: Ticket | None = None  # the latest answer's place in the queue
        self.close_code: int | None = None  # set when the session must end

    # ---- sending ----
    async def send(self, msg: dict[str, Any]) -> None:
        async with self._lock:
            await self._send_json(msg)

    async def send_audio(self, data: bytes) -> None:
        async with self._lock:
            await self._send_bytes(data)

    async def error(self, code: str, message: str, turn: int | None = None) -> None:
        await self.send(P.error(code, message, turn))

    async def open(self) -> None:
        """The socket was accepted (the /ws protocol waits for the client's `start`)."""

    async def refuse_busy(self, message: str) -> None:
        """Sent instead of serving when the server is at its session limit."""
        await self.send(P.busy(message, 5000))

    # ---- client messages ----
    async def handle_text(self, raw: str) -> None:
        t_end = time.perf_counter()
        try:
            if len(raw.encode()) > self.cfg.max_message_bytes:
                raise P.ProtocolError(
                    "too_large",
                    f"message of {len(raw.encode())} bytes is over the limit of {self.cfg.max_message_bytes}",
                )
            msg = P.parse_message(raw)
            kind = msg["type"]
            if kind == "start":
                await self._start(msg)
            elif kind == "end_of_turn":
                await self._end_of_turn(t_end)
            elif kind == "text":
                await self._text(msg["text"], t_end)
            elif kind == "interrupt":
                await self.cancel_answer()
            elif kind == "reset":
                await self.cancel_answer()
                self._drop_audio()
                self.history.clear()
                await self.send({"type": "reset"})
            elif kind == "ping":
                await self.send({"type": "pong"})
        except P.ProtocolError as e:
            await self.error(e.code, e.message)

    async def handle_bytes(self, data: bytes) -> None:
        try:
            if len(data) > self.cfg.max_message_bytes:
                raise P.ProtocolError(
                    "too_large", f"audio frame of {len(data)} bytes is over the limit of {self.cfg.max_message_bytes}"
                )
            if self.options is None:
                raise P.ProtocolError("not_started", 'send {"type": "start", ...} before any audio')
            pcm = P.pcm16_to_float(data)
            if self.vad is not None:
                await self._vad_audio(pcm)
            elif not self.overflow:
                if not self.buffer:  # the first audio of a new turn interrupts the answer
                    await self.cancel_answer()
                self.buffer.append(pcm)
                self.buffered += len(pcm)
                if self.buffered > self.cfg.max_turn_seconds * self.options.sample_rate:
                    self._drop_audio()
                    self.overflow = True
                    raise P.ProtocolError(
                        "turn_too_long", f"turn is longer than {self.cfg.max_turn_seconds:g} s of audio: dropped"
                    )
        except P.ProtocolError as e:
            await self.error(e.code, e.message)

    async def _start(self, msg: dict[str, Any]) -> None:
        opts = P.parse_start(msg, VAD_KEYS)
        vad = None
        if opts.mode == "vad":
            try:
                vad = make_vad(
                    from_dict(VadConfig, {**to_dict(self.cfg.vad), **(opts.vad or {})}, "vad"), opts.sample_rate
                )
            except (ConfigError, ValueError, SileroUnavailable) as e:
                raise P.ProtocolError("bad_message", f"start: {e}") from None
        self._drop_audio()
        self.options, self.vad = opts, vad
        await self.send(
            {
                "type": "ready",
                "session": self.id,
                "sample_rate": opts.sample_rate,
                "mode": opts.mode,
                "speak": opts.speak,
                "output_sample_rate": self.engine.vocoder.sample_rate,
                "output_format": P.OUTPUT_FORMAT,
                "limits": self.cfg.limits(),
            }
        )

    async def _vad_audio(self, pcm: np.ndarray) -> None:
        assert self.vad is not None and self.options is not None
        for ev in self.vad.push(pcm):
            if ev.kind == "start":
                await self.cancel_answer()  # barge-in: the user talks over the answer
                await self.send({"type": "speech", "state": "start"})
            else:
                await self.send({"type": "speech", "state": "end"})
                await self._begin_turn("vad", time.perf_counter(), audio=ev.audio)
        if self.vad.speech_seconds > self.cfg.max_turn_seconds:
            self.vad.reset()
            raise P.ProtocolError(
                "turn_too_long", f"speech went on for more than {self.cfg.max_turn_seconds:g} s: dropped"
            )

    async def _end_of_turn(self, t_end: float) -> None:
        if self.options is None:
            raise P.ProtocolError("not_started", "end_of_turn before start: there is no audio")
        if self.overflow:  # the error was sent when the limit was crossed
            self.overflow = False
            return
        if self.vad is not None:
            audio = self.vad.flush()
        else:
            audio = np.concatenate(self.buffer) if self.buffer else None
            self._drop_audio()
        if audio is None or len(audio) == 0:
            raise P.ProtocolError(
                "empty_turn",
                "end_of_turn without audio" + (" (no speech was detected)" if self.vad is not None else ""),
            )
        await self._begin_turn("client", t_end, audio=audio)

    async def _text(self, text: str, t_end: float) -> None:
        if len(text) > self.cfg.max_text_chars:
            raise P.ProtocolError(
                "text_too_long", f"question of {len(text)} characters is over the limit of {self.cfg.max_text_chars}"
            )
        await self._begin_turn("text", t_end, text=text.strip())

    def _drop_audio(self) -> None:
        self.buffer, self.buffered, self.overflow = [], 0, False
        if self.vad is not None:
            self.vad.reset()

    # ---- answers ----
    async def _begin_turn(
        self, by: str, t_end: float, *, audio: np.ndarray | None = None, text: str | None = None
    ) -> None:
        await self.cancel_answer()
        if self.last_ticket is not None:
            # an interrupted answer's worker stops at its next event; until then it holds its
            # place in the queue, and this session's new question must not be refused for it
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.last_ticket.ended.wait(), WIND_DOWN_S)
        if self.turns >= self.cfg.max_session_turns:
            self.close_code = 1008
            raise P.ProtocolError(
                "session_limit",
                f"this session reached its limit of {self.cfg.max_session_turns} turns: start a new one",
            )
        rate = self.options.sample_rate if self.options else 0
        if audio is not None and len(audio) > self.cfg.max_turn_seconds * rate:
            raise P.ProtocolError(
                "turn_too_long", f"turn of {len(audio) / rate:.1f} s is longer than {self.cfg.max_turn_seconds:g} s"
            )
        try:
            ticket = self.queue.admit()
        except Busy as e:
            await self.send(P.busy(str(e)))
            return
        self.turns += 1
        self.last_ticket = ticket
        ans = AnswerState(self.turns, t_end, text or "")
        speak = self.options.speak if self.options else True
        kwargs: dict[str, Any] = {
            "speak": speak,
            "history": fit_history(self.history, self.cfg.max_history_chars) or None,
            "gen": replace(self.engine.gen, max_prompt_positions=self.cfg.max_prompt_positions),
        }
        if audio is not None:
            kwargs.update(sample_rate=rate)
        else:
            kwargs.update(text=text)
        question_s = len(audio) / rate if audio is not None else 0.0
        await self.send({"type": "turn", "turn": ans.turn, "by": by, "question_seconds": round(question_s, 3)})
        self.answer = ans
        ans.task = asyncio.create_task(
            self._run(ans, ticket, lambda stop: self.engine.submit(audio, should_stop=stop.is_set, **kwargs))
        )
        ans.task.add_done_callback(_reap)

    async def _run(self, ans: AnswerState, ticket: Ticket, make: Callable[[Any], Any]) -> None:
        def started(wait_s: float) -> None:
            ans.got.timings["queue_ms"] = wait_s * 1000

        try:
            async with contextlib.aclosing(self.queue.stream(ticket, make, started)) as events:
                async for ev in events:
                    if isinstance(ans.got.add(ev), TextDelta):
                        await self.send({"type": "text", "turn": ans.turn, "text": ev.text})
                    elif isinstance(ev, AudioChunk):
                        await self.send_audio(P.float_to_pcm16(ev.pcm))
            ans.finishing = True
            if ans.got.text:  # an answer that said nothing is no use as context
                self.history.append((ans.question, ans.got.text))
            await self.send(ans.done_message(False, len(self.history)))
        except asyncio.CancelledError:
            raise
        except AudioError as e:
            ans.finishing = True
            await self.error("bad_audio", str(e), ans.turn)
        except PromptTooLong as e:
            ans.finishing = True
            await self.error("prompt_too_long", str(e), ans.turn)
        except SettingError as e:  # the server's setup, not the request: its error, not the client's
            log.error("answer %d of session %s: %s", ans.turn, self.id, e)
            ans.finishing = True
            await self.error("internal", f"the server cannot answer as it is set up: {e}", ans.turn)
        except ValueError as e:
            ans.finishing = True
            await self.error("bad_message", str(e), ans.turn)
        except Exception as e:  # noqa: BLE001 - one failed answer must not take the session down
            log.exception("answer %d of session %s failed", ans.turn, self.id)
            ans.finishing = True
            await self.error("internal", f"the answer failed ({type(e).__name__}); see the server log", ans.turn)
        finally:
            ticket.close()
            ans.reported = ans.finishing
            if self.answer is ans:
                self.answer = None

    async def cancel_answer(self) -> None:
        """Barge-in: stop the running answer now and report it as interrupted."""
        ans, self.answer = self.answer, None
        if ans is None or ans.task is None:
            return
        if not ans.finishing:
            ans.task.cancel()
        await _wait(ans.task)
        if not ans.reported:
            ans.reported = True
            await self.send(ans.done_message(True, len(self.history)))

    async def close(self) -> None:
        """The socket is gone: stop work without reporting."""
        ans, self.answer = self.answer, None
        if ans is not None and ans.task is not None:
            ans.task.cancel()
            await _wait(ans.task)


async def _wait(task: asyncio.Task[None]) -> None:
    """Wait for an answer task to end without raising what ended it."""
    await asyncio.wait({task})


def _reap(task: asyncio.Task[None]) -> None:
    """Collect an answer task's exception: a send to a socket that closed meanwhile is not
    an error worth more than a debug line (real failures were logged in `_run`)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("answer task ended with %r", task.exception())
