"""An OpenAI Realtime-compatible conversation over one WebSocket (`/v1/realtime`).

`RealtimeSession` is a `Session` (session.py) that speaks Realtime events: the answer
machinery (admission to the bounded queue and `busy`, barge-in within one decode step,
turn and session limits, the worker that streams the engine's events) is the base
class's; this class keeps the Realtime conversation (items, the input audio buffer, the
response in flight) and turns the base class's messages (`turn`, `text`, audio, `done`,
`error`, `busy`) into Realtime events. What is supported, and what is not, is documented in
realtime_events.py (served at /protocol).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowomni.audio.stream_resample import StreamResampler
from flowomni.config import to_dict
from flowomni.model.encoder import n_adapter_frames
from flowomni.serving import protocol as P
from flowomni.serving.config import ServerConfig
from flowomni.serving.detectors import make_vad
from flowomni.serving.queue import WorkQueue
from flowomni.serving.realtime_events import (
    MIN_COMMIT_MS,
    RATE,
    Item,
    Namer,
    RealtimeError,
    ResponseOptions,
    Settings,
    apply_session_update,
    decode_pcm16,
    encode_pcm16,
    heard,
    new_id,
    parse_event,
    parse_item,
    parse_response_create,
)
from flowomni.serving.session import SendJson, Session
from flowomni.serving.silero import SileroUnavailable
from flowomni.serving.vad_config import VadConfig

log = logging.getLogger("flowomni.serving")
MAX_ITEMS = 200  # conversation items kept (the model sees only the last few turns; ids stay addressable)


@dataclass
class Reply:
    """A response from its admission to its `response.done`."""

    id: str
    item: Item  # the assistant message it writes
    opts: ResponseOptions
    question: Item
    history: list[tuple[str, str]]
    resampler: StreamResampler
    turn: int | None = None  # the base session's turn number, once admitted
    reason: str = "client_cancelled"  # why it would be cancelled (turn_detected on barge-in)
    samples: int = 0  # answer audio sent, at 24 kHz
    vocoder_samples: int = 0  # the same audio at the vocoder's rate (for usage)
    first_audio_at: float | None = None  # perf_counter when its first audio left


class RealtimeSession(Session):
    def __init__(
        self,
        engine: Any,
        queue: WorkQueue,
        cfg: ServerConfig,
        send_json: SendJson,
        *,
        beta: bool = False,
        model: str | None = None,
    ) -> None:
        super().__init__(engine, queue, cfg, send_json, _no_binary)
        self.names = Namer(beta)
        self.settings = Settings(new_id("sess"), model or "flowomni", VadConfig(**to_dict(cfg.vad)))
        self.options = P.StartOptions(sample_rate=RATE, mode="vad")
        self.vad = make_vad(self.settings.vad, RATE)
        self.items: list[Item] = []
        self.reply: Reply | None = None  # the response in flight
        self._admitting: Reply | None = None  # a response being admitted by the base class
        self.input_samples = 0  # all audio appended this session (for audio_start_ms / audio_end_ms)
        self.speech_item: str | None = None  # the item id promised by speech_started
        self.speech_start_ms = 0
        self.event_id: str | None = None  # the client event being handled

    # ---- sending ----
    async def emit(self, kind: str, **fields: Any) -> None:
        event = self.names.event(kind, **fields)
        if event is not None:
            async with self._lock:
                await self._send_json(event)

    async def fail(self, err: RealtimeError, event_id: str | None = None) -> None:
        async with self._lock:
            await self._send_json(self.names.error(err, event_id))

    async def open(self) -> None:
        await self.emit("session.created", session=self.settings.to_json(self.names.beta))

    async def refuse_busy(self, message: str) -> None:
        await self.fail(RealtimeError("busy", message, kind="server_error"))

    # the base class reports through these three: translate into Realtime events
    async def send(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "turn":
            await self._response_started(msg["turn"])
        elif kind == "text" and self.reply is not None and self.reply.turn == msg["turn"]:
            await self._text_delta(self.reply, msg["text"])
        elif kind == "done":
            await self._response_finished(msg["turn"], "cancelled" if msg["interrupted"] else "completed")
        elif kind == "error":
            await self.error(msg["code"], msg["message"], msg.get("turn"))
        elif kind == "busy":
            self._admitting = None
            await self.fail(
                RealtimeError("busy", msg["message"] + "; try again shortly", kind="server_error"), self.event_id
            )

    async def send_audio(self, data: bytes) -> None:
        reply = self.reply
        if reply is None:
            return
        pcm = P.pcm16_to_float(data)
        reply.vocoder_samples += len(pcm)
        await self._audio_delta(reply, reply.resampler.push(pcm))

    async def error(self, code: str, message: str, turn: int | None = None) -> None:
        if turn is not None and self.reply is not None and self.reply.turn == turn:
            await self._response_finished(turn, "failed", {"type": "server_error", "code": code, "message": message})
        else:
            await self.fail(
                RealtimeError(code, message, kind="server_error" if code == "internal" else "invalid_request_error")
            )

    # ---- client events ----
    async def handle_text(self, raw: str) -> None:
        t_end = time.perf_counter()
        event_id = self.event_id = None
        try:
            event = parse_event(raw)  # before the size check, which names the event (the transport bounds it)
            event_id = self.event_id = event.get("event_id")
            if len(raw.encode()) > self.cfg.max_message_bytes:
                raise RealtimeError(
                    "too_large",
                    f"event of {len(raw.encode())} bytes is over the limit of "
                    f"{self.cfg.max_message_bytes}: send audio in smaller appends",
                )
            await HANDLERS[event["type"]](self, event, t_end)
        except RealtimeError as e:
            await self.fail(e, event_id or e.event_id)
        except P.ProtocolError as e:  # limits checked by the base class (turn length, session turns)
            await self.fail(RealtimeError(e.code, e.message), event_id)

    async def handle_bytes(self, data: bytes) -> None:
        await self.fail(
            RealtimeError(
                "invalid_event",
                "binary frames are not part of the Realtime protocol: send "
                "input_audio_buffer.append events with base64 audio",
            )
        )

    async def _session_update(self, event: dict[str, Any], t_end: float) -> None:
        new, unsupported = apply_session_update(self.settings, event.get("session"), self.cfg.vad)
        if (new.server_vad, new.vad) != (self.settings.server_vad, self.settings.vad):
            try:
                vad = make_vad(new.vad, RATE) if new.server_vad else None
            except (ValueError, SileroUnavailable) as e:
                raise RealtimeError("invalid_value", str(e), "session.audio.input.turn_detection") from None
            self._drop_audio()  # audio buffered under the old detector is dropped
            self.vad, self.speech_item = vad, None
        self.settings = new
        if unsupported:
            await self.fail(
                RealtimeError(
                    "unsupported_parameter",
                    f"not supported, left out: {unsupported}; the rest of the update was applied",
                    unsupported[0],
                ),
                event.get("event_id"),
            )
        await self.emit("session.updated", session=new.to_json(self.names.beta))

    async def _append(self, event: dict[str, Any], t_end: float) -> None:
        pcm = decode_pcm16(event.get("audio"), "audio")
        if self.vad is not None:
            self.input_samples += len(pcm)
            await self._vad_audio(pcm)
            return
        limit = self.cfg.max_turn_seconds * RATE
        if self.buffered + len(pcm) > limit:
            raise RealtimeError(
                "turn_too_long",
                f"the input audio buffer would hold more than "
                f"{self.cfg.max_turn_seconds:g} s: this append was not added (commit or clear first)",
            )
        self.input_samples += len(pcm)
        self.buffer.append(pcm)
        self.buffered += len(pcm)

    async def _vad_audio(self, pcm: np.ndarray) -> None:
        assert self.vad is not None
        now_ms = round(1000 * self.input_samples / RATE)
        for ev in self.vad.push(pcm):
            if ev.kind == "start":
                self.speech_item = new_id("item")
                self.speech_start_ms = max(0, now_ms - round(1000 * self.vad.speech_seconds))
                await self.emit(
                    "input_audio_buffer.speech_started", audio_start_ms=self.speech_start_ms, item_id=self.speech_item
                )
                if self.settings.interrupt_response and self.reply is not None:
                    await self._barge_in(self.reply)
            else:
                assert ev.audio is not None
                item_id = self.speech_item or new_id("item")
                await self.emit(
                    "input_audio_buffer.speech_stopped",
                    item_id=item_id,
                    audio_end_ms=self.speech_start_ms + round(1000 * len(ev.audio) / RATE),
                )
                await self._commit(ev.audio, item_id)
                if self.settings.create_response:
                    await self._respond(ResponseOptions(self.settings.speak), time.perf_counter())
        if self.vad.speech_seconds > self.cfg.max_turn_seconds:
            self.vad.reset()
            self.speech_item = None
            raise RealtimeError(
                "turn_too_long", f"speech went on for more than {self.cfg.max_turn_seconds:g} s: dropped"
            )

    async def _barge_in(self, reply: Reply) -> None:
        """The user talks over the answer: stop it now and cut its item at what was played
        (audio leaves faster than real time; the client had played as much as time allowed)."""
        reply.reason = "turn_detected"
        await self.cancel_answer()
        if reply.first_audio_at is not None and reply.opts.in_conversation and reply.item in self.items:
            played = min(reply.item.audio_ms, round(1000 * (time.perf_counter() - reply.first_audio_at)))
            if played < reply.item.audio_ms:
                await self._truncate(reply.item, played)

    async def _commit_event(self, event: dict[str, Any], t_end: float) -> None:
        if self.vad is not None:
            audio = self.vad.flush()
        else:
            audio = np.concatenate(self.buffer) if self.buffer else None
        item_id = self.speech_item or new_id("item")
        self._drop_audio()
        self.speech_item = None
        await self._commit(audio, item_id)

    async def _commit(self, audio: np.ndarray | None, item_id: str) -> None:
        self.speech_item = None
        n = 0 if audio is None else len(audio)
        if n < MIN_COMMIT_MS * RATE // 1000:
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: {1000 * n / RATE:.0f} ms of audio, at least {MIN_COMMIT_MS} ms are needed",
            )
        item = Item(item_id, "user", audio=audio, spoken=True, audio_ms=round(1000 * n / RATE))
        previous = self.items[-1].id if self.items else None
        await self.emit("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous)
        await self._add_item(item, previous)

    async def _clear(self, event: dict[str, Any], t_end: float) -> None:
        self._drop_audio()
        self.speech_item = None
        await self.emit("input_audio_buffer.cleared")

    async def _item_create(self, event: dict[str, Any], t_end: float) -> None:
        item = parse_item(event.get("item"), self.cfg.max_text_chars)
        if item.audio is not None and len(item.audio) > self.cfg.max_turn_seconds * RATE:
            raise RealtimeError(
                "turn_too_long",
                f"item audio of {len(item.audio) / RATE:.1f} s is longer than {self.cfg.max_turn_seconds:g} s",
                "item.content",
            )
        if self._find(item.id) is not None:
            raise RealtimeError("duplicate_item_id", f"an item with id {item.id!r} exists", "item.id")
        previous = event.get("previous_item_id", None)
        if previous is not None and previous != "root" and self._find(previous) is None:
            raise RealtimeError(
                "item_not_found",
                f"previous_item_id {str(previous)[:64]!r} is not in the conversation",
                "previous_item_id",
            )
        await self._add_item(item, previous)

    async def _add_item(self, item: Item, previous: str | None) -> None:
        """Insert after `previous` ("root": first; None: last). Only the latest user item keeps
        its audio: it is the only one the model can still be asked about."""
        if previous == "root":
            self.items.insert(0, item)
        elif previous is None or previous == (self.items[-1].id if self.items else None):
            self.items.append(item)
        else:
            self.items.insert(self.items.index(self._find(previous)) + 1, item)  # type: ignore[arg-type]
        users = [it for it in self.items if it.role == "user"]
        for old in users[:-1]:
            old.audio = None
        del self.items[: max(0, len(self.items) - MAX_ITEMS)]
        index = self.items.index(item) if item in self.items else -1
        prev_id = self.items[index - 1].id if index > 0 else None
        body = item.to_json(self.names.beta)
        await self.emit("conversation.item.created", previous_item_id=prev_id, item=body)
        await self.emit("conversation.item.added", previous_item_id=prev_id, item=body)
        await self.emit("conversation.item.done", previous_item_id=prev_id, item=body)

    def _find(self, item_id: Any) -> Item | None:
        return next((it for it in self.items if it.id == item_id), None)

    def _item_arg(self, event: dict[str, Any]) -> Item:
        item = self._find(event.get("item_id"))
        if item is None:
            raise RealtimeError(
                "item_not_found", f"item_id {str(event.get('item_id'))[:64]!r} is not in the conversation", "item_id"
            )
        return item

    async def _item_truncate(self, event: dict[str, Any], t_end: float) -> None:
        item = self._item_arg(event)
        end = event.get("audio_end_ms")
        if item.role != "assistant" or not item.spoken:
            raise RealtimeError("invalid_value", "only assistant items with audio can be truncated", "item_id")
        if event.get("content_index", 0) != 0:
            raise RealtimeError(
                "invalid_value", "content_index must be 0 (an answer has one content part)", "content_index"
            )
        if isinstance(end, bool) or not isinstance(end, int) or end < 0:
            raise RealtimeError("invalid_value", "audio_end_ms must be a whole number of ms, 0 or more", "audio_end_ms")
        if self.reply is not None and self.reply.item is item:  # cut while still being written: stop it first
            await self.cancel_answer()
        if end > item.audio_ms:
            raise RealtimeError(
                "invalid_value", f"audio_end_ms {end} is past the item's {item.audio_ms} ms of audio", "audio_end_ms"
            )
        await self._truncate(item, end)

    async def _truncate(self, item: Item, end_ms: int) -> None:
        item.text = heard(item.text, end_ms, item.audio_ms)
        item.audio_ms = end_ms
        await self.emit("conversation.item.truncated", item_id=item.id, content_index=0, audio_end_ms=end_ms)

    async def _item_delete(self, event: dict[str, Any], t_end: float) -> None:
        item = self._item_arg(event)
        if self.reply is not None and self.reply.item is item:
            raise RealtimeError(
                "invalid_value", "the item of a response in progress cannot be deleted: cancel it first", "item_id"
            )
        self.items.remove(item)
        await self.emit("conversation.item.deleted", item_id=item.id)

    async def _item_retrieve(self, event: dict[str, Any], t_end: float) -> None:
        await self.emit("conversation.item.retrieved", item=self._item_arg(event).to_json(self.names.beta))

    async def _response_create(self, event: dict[str, Any], t_end: float) -> None:
        opts, unsupported = parse_response_create(event.get("response"), self.settings)
        if self.reply is not None:
            raise RealtimeError(
                "conversation_already_has_active_response",
                f"response {self.reply.id} is in progress: cancel it or wait for its response.done",
            )
        if unsupported:
            await self.fail(
                RealtimeError("unsupported_parameter", f"not supported, left out: {unsupported}", unsupported[0]),
                event.get("event_id"),
            )
        await self._respond(opts, t_end)

    async def _response_cancel(self, event: dict[str, Any], t_end: float) -> None:
        wanted = event.get("response_id")
        if self.reply is None or (wanted is not None and wanted != self.reply.id):
            raise RealtimeError(
                "response_cancel_not_active",
                "there is no response in progress" + (f" with id {str(wanted)[:64]!r}" if wanted is not None else ""),
                "response_id",
            )
        await self.cancel_answer()

    # ---- responses ----
    async def _respond(self, opts: ResponseOptions, t_end: float) -> None:
        """Answer the latest user item, with the turns before it as context."""
        at = next((i for i in range(len(self.items) - 1, -1, -1) if self.items[i].role == "user"), None)
        if at is None:
            raise RealtimeError(
                "no_user_item",
                "the conversation has no user item to answer: commit audio or create a user message first",
            )
        question = self.items[at]
        if question.spoken and question.audio is None:
            raise RealtimeError("no_user_item", "the latest user item's audio is no longer held")
        reply = Reply(
            new_id("resp"),
            Item(new_id("item"), "assistant", spoken=opts.speak, status="in_progress"),
            opts,
            question,
            self._context(at),
            StreamResampler(self.engine.vocoder.sample_rate, RATE),
        )
        self._admitting = reply
        self.options.speak = opts.speak
        self.history = deque(reply.history, maxlen=self.cfg.history_turns)
        try:
            if question.spoken:
                await self._begin_turn("client", t_end, audio=question.audio)
            else:
                await self._begin_turn("text", t_end, text=question.text)
        finally:
            self._admitting = None

    def _context(self, at: int) -> list[tuple[str, str]]:
        """(question, answer) text pairs from the items before `at`: a user item and the assistant
        item that follows it (a spoken question enters as empty text, as on /ws)."""
        pairs, question = [], None
        for it in self.items[:at]:
            if it.role == "user":
                question = it.text
            elif it.role == "assistant" and question is not None and it.text:
                pairs.append((question, it.text))
                question = None
        return pairs[-self.cfg.history_turns :] if self.cfg.history_turns else []

    def _ids(self, reply: Reply) -> dict[str, Any]:
        return {"response_id": reply.id, "item_id": reply.item.id, "output_index": 0, "content_index": 0}

    def _response_json(self, reply: Reply, status: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        fmt = {"type": "audio/pcm", "rate": RATE}
        out: dict[str, Any] = {
            "id": reply.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [reply.item.to_json(self.names.beta)] if status != "in_progress" else [],
            "conversation_id": "conv_default" if reply.opts.in_conversation else None,
            "metadata": reply.opts.metadata,
            "max_output_tokens": "inf",
            "usage": None,
        }
        if self.names.beta:
            out["modalities"] = ["text", "audio"] if reply.opts.speak else ["text"]
            out["voice"], out["output_audio_format"] = self.settings.voice, "pcm16"
        else:
            out["output_modalities"] = ["audio"] if reply.opts.speak else ["text"]
            out["audio"] = {"output": {"format": fmt, "voice": self.settings.voice}}
        return out

    async def _response_started(self, turn: int) -> None:
        reply, self._admitting = self._admitting, None
        if reply is None:
            return
        reply.turn = turn
        self.reply = reply
        item = reply.item
        await self.emit("response.created", response=self._response_json(reply, "in_progress"))
        body = item.to_json(self.names.beta)
        await self.emit("response.output_item.added", response_id=reply.id, output_index=0, item=body)
        if reply.opts.in_conversation:
            previous = self.items[-1].id if self.items else None
            self.items.append(item)
            await self.emit("conversation.item.created", previous_item_id=previous, item=body)
            await self.emit("conversation.item.added", previous_item_id=previous, item=body)
        await self.emit("response.content_part.added", **self._ids(reply), part=self._part(reply))

    def _part(self, reply: Reply) -> dict[str, Any]:
        if reply.opts.speak:
            return {"type": "audio", "transcript": reply.item.text}
        return {"type": "text", "text": reply.item.text}

    async def _text_delta(self, reply: Reply, text: str) -> None:
        reply.item.text += text
        kind = "response.output_audio_transcript.delta" if reply.opts.speak else "response.output_text.delta"
        await self.emit(kind, **self._ids(reply), delta=text)

    async def _audio_delta(self, reply: Reply, pcm: np.ndarray) -> None:
        if len(pcm) == 0:
            return
        reply.first_audio_at = reply.first_audio_at or time.perf_counter()
        reply.samples += len(pcm)
        reply.item.audio_ms = round(1000 * reply.samples / RATE)
        await self.emit("response.output_audio.delta", **self._ids(reply), delta=encode_pcm16(pcm))

    async def _response_finished(self, turn: int, status: str, error: dict[str, Any] | None = None) -> None:
        reply = self.reply
        if reply is None or reply.turn != turn:
            return
        if reply.opts.speak:
            await self._audio_delta(reply, reply.resampler.flush())
        item, ids = reply.item, self._ids(reply)
        item.status = "completed" if status == "completed" else "incomplete"
        if reply.opts.speak:
            await self.emit("response.output_audio.done", **ids)
            await self.emit("response.output_audio_transcript.done", **ids, transcript=item.text)
        else:
            await self.emit("response.output_text.done", **ids, text=item.text)
        await self.emit("response.content_part.done", **ids, part=self._part(reply))
        body = item.to_json(self.names.beta)
        await self.emit("response.output_item.done", response_id=reply.id, output_index=0, item=body)
        if reply.opts.in_conversation and item in self.items:
            at = self.items.index(item)
            await self.emit("conversation.item.done", previous_item_id=self.items[at - 1].id if at else None, item=body)
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reply.reason}
        elif status == "failed":
            details = {"type": "failed", "error": error}
        response = self._response_json(reply, status, details)
        response["usage"] = self._usage(reply)
        self.reply = None
        await self.emit("response.done", response=response)

    def _usage(self, reply: Reply) -> dict[str, int]:
        """Model positions: the question's audio frames (25 Hz) and the text tokens of the
        question and its context in; the answer's text tokens and mel groups out."""
        model, tok = self.engine.model, self.engine.model.tokenizer
        n_text_in = sum(len(tok.encode(t)) for pair in reply.history for t in pair)
        n_audio_in = 0
        if reply.question.audio is not None:
            mel = model.cfg.input_mel
            n16 = -(-len(reply.question.audio) * mel.sample_rate // RATE)
            n_audio_in = n_adapter_frames(n16 // mel.hop_length + 1, model.cfg.encoder.stack)
        else:
            n_text_in += len(tok.encode(reply.question.text))
        out_mel = model.cfg.output_mel
        n_audio_out = round(reply.vocoder_samples / (out_mel.hop_length * model.cfg.group))
        n_text_out = len(tok.encode(reply.item.text)) if reply.item.text else 0
        return {
            "total_tokens": n_text_in + n_audio_in + n_text_out + n_audio_out,
            "input_tokens": n_text_in + n_audio_in,
            "output_tokens": n_text_out + n_audio_out,
            "input_token_details": {"text_tokens": n_text_in, "audio_tokens": n_audio_in, "cached_tokens": 0},
            "output_token_details": {"text_tokens": n_text_out, "audio_tokens": n_audio_out},
        }


async def _no_binary(data: bytes) -> None:
    raise AssertionError("a Realtime session sends no binary frames")


Handler = Callable[[RealtimeSession, dict[str, Any], float], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    "session.update": RealtimeSession._session_update,
    "input_audio_buffer.append": RealtimeSession._append,
    "input_audio_buffer.commit": RealtimeSession._commit_event,
    "input_audio_buffer.clear": RealtimeSession._clear,
    "conversation.item.create": RealtimeSession._item_create,
    "conversation.item.truncate": RealtimeSession._item_truncate,
    "conversation.item.delete": RealtimeSession._item_delete,
    "conversation.item.retrieve": RealtimeSession._item_retrieve,
    "response.create": RealtimeSession._response_create,
    "response.cancel": RealtimeSession._response_cancel,
}
