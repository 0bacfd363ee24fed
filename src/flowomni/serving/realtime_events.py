"""The OpenAI Realtime-compatible protocol (served at `/v1/realtime`; this text is at `/protocol`).

Existing Realtime clients (the official `openai` SDK, LiveKit agents, pipecat, ...) talk to
flowomni unchanged: point them at `ws://HOST:PORT/v1/realtime?model=ANY` (the SDK:
`AsyncOpenAI(base_url="http://HOST:PORT/v1", websocket_base_url="ws://HOST:PORT/v1")`;
`examples/realtime_client.py`). Text frames carry JSON events; audio is base64 16-bit
little-endian PCM, 24 kHz mono, both ways. The GA event names are used; a client that sends
`OpenAI-Beta: realtime=v1` at the handshake (the SDK's beta client) gets the beta names where
they differ (`response.audio.delta`, `response.audio_transcript.delta`, `response.text.delta`,
content types `audio`/`text`). Session fields are accepted in either form.

Access: when the server has an API key (`--api-key` or $FLOWOMNI_API_KEY; required when it
listens on a non-loopback address), clients send `Authorization: Bearer KEY` (browsers: the
subprotocol `openai-insecure-api-key.KEY`); without it the handshake gets HTTP 401. Pages from
other sites get 403, as on /ws. Sessions count towards `max_sessions` (more: an `error` with
code `busy`, then close 1013); answers share the bounded queue with /ws and /v1/respond.

Client events
-------------
  session.update            instructions, voice and model are accepted and echoed (the model
                            has one voice and no system prompt); output_modalities ["audio"]
                            (speech + transcript) or ["text"]; audio formats: only
                            {"type": "audio/pcm", "rate": 24000} / "pcm16"; turn_detection:
                            null (the client commits) or {"type": "server_vad", "threshold"
                            0.05-0.95, "silence_duration_ms" 100-5000, "prefix_padding_ms"
                            0-2000, "min_speech_duration_ms" 0-2000 (an extension),
                            "create_response", "interrupt_response"} (the default: server_vad
                            with the server's VAD settings). Answered by session.updated. An
                            unsupported field with a non-default value (tools, tool_choice,
                            transcription, noise_reduction, temperature, tracing, ...) is named
                            in an `error` and the rest is applied; a bad value (a format, a
                            setting out of range) gets an `error` and changes nothing.
  input_audio_buffer.append {"audio": base64}. With server_vad the detector listens: speech
                            that starts while an answer runs cancels it (barge-in), and its end
                            commits the audio and (create_response) starts a response. Without
                            it audio is buffered, up to max_turn_seconds (a longer append is
                            refused with an error and not added).
  input_audio_buffer.commit the buffer becomes a user item (at least 100 ms of audio).
  input_audio_buffer.clear  answered by input_audio_buffer.cleared.
  conversation.item.create  a message: user (input_text, or input_audio with base64 audio),
                            assistant (output_text / output_audio with its transcript: context)
                            or system (kept, not used by the model); previous_item_id places it.
  conversation.item.truncate  cut an assistant item's audio at audio_end_ms (what the user heard);
                            its transcript keeps the same share of its words, and that is what
                            later answers see as context. Answered by conversation.item.truncated.
  conversation.item.delete / .retrieve
  response.create           answers the latest user item; earlier (user, assistant) pairs are the
                            model's context (the last `history_turns`). Options: output_modalities,
                            conversation "auto" | "none", metadata. One response at a time.
  response.cancel           stops the response within one decode step (status "cancelled").

Server events
-------------
  session.created / session.updated       the effective session
  input_audio_buffer.speech_started / .speech_stopped   (server_vad) with audio_start_ms /
                            audio_end_ms from the session's first audio, and the item id to come
  input_audio_buffer.committed, input_audio_buffer.cleared
  conversation.item.created (and, GA only, conversation.item.added / .done)
  response.created, response.output_item.added, response.content_part.added
  response.output_audio_transcript.delta  the answer's text as it is written
  response.output_audio.delta             its speech, streamed as it is drawn
  response.output_audio.done, response.output_audio_transcript.done (or, for ["text"],
  response.output_text.delta / .done), response.content_part.done, response.output_item.done
  response.done             status completed | cancelled (status_details.reason
                            "turn_detected" or "client_cancelled") | failed, with usage:
                            model positions, i.e. the question's audio frames (25 Hz) and the text
                            tokens of the question and context in, the answer's text tokens and
                            mel groups (21.5 Hz) out
  conversation.item.truncated   also sent by the server after a barge-in: the interrupted item is
                            cut where playback had got to (audio is sent faster than real time;
                            a client that knows better may truncate again)
  conversation.item.deleted, conversation.item.retrieved
  error                     {"error": {"type", "code", "message", "param", "event_id"}}:
                            event_id is the client event that caused it. The session stays open
                            (except idle_timeout and session_limit, as on /ws).

Not supported (each gets an `error` naming it): tools and function calls (function_call /
function_call_output items, non-empty tools), images (input_image), input audio transcription,
noise reduction, semantic_vad, G.711 and other formats or rates, out-of-band `input` in
response.create, transcription sessions, WebRTC/SIP events (output_audio_buffer.*), and
binary frames.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowomni.serving.vad_config import VadConfig

RATE = 24000  # the Realtime API's PCM rate, both ways
MIN_COMMIT_MS = 100  # shorter commits are refused, as by the OpenAI service

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)
UNSUPPORTED_EVENTS = {
    "output_audio_buffer.clear": "is for WebRTC/SIP connections; over a WebSocket the client owns playback",
    "transcription_session.update": "transcription sessions are not served (the model answers, it does not transcribe)",
}
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
}
GA_ONLY = ("conversation.item.added", "conversation.item.done")
BETA_CONTENT = {"output_audio": "audio", "output_text": "text"}
# realtime turn_detection key -> VadConfig field
VAD_KEYS = {
    "threshold": "threshold",
    "prefix_padding_ms": "preroll_ms",
    "silence_duration_ms": "silence_ms",
    "min_speech_duration_ms": "min_speech_ms",
}
TURN_FLAGS = ("create_response", "interrupt_response")


class RealtimeError(Exception):
    """A client event the server cannot use: becomes an `error` event; the session goes on."""

    def __init__(self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind
        self.event_id: str | None = None  # the client event that caused it, once known


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# ---------------------------------------------------------------- client events


def parse_event(raw: str) -> dict[str, Any]:
    """A text frame -> a client event with a known `type` (RealtimeError otherwise)."""
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise RealtimeError("invalid_json", f"event is not valid JSON ({e})") from None
    if not isinstance(event, dict):
        raise RealtimeError("invalid_event", "an event must be a JSON object", "type")
    if not isinstance(event.get("event_id"), (str, type(None))):
        raise RealtimeError("invalid_event", "event_id must be a string", "event_id")
    try:
        return _known(event)
    except RealtimeError as e:
        e.event_id = event.get("event_id")
        raise


def _known(event: dict[str, Any]) -> dict[str, Any]:
    kind = event.get("type")
    if not isinstance(kind, str):
        raise RealtimeError("invalid_event", 'an event needs a string "type"', "type")
    if kind in UNSUPPORTED_EVENTS:
        raise RealtimeError("unsupported_event", f"{kind} is not supported: {UNSUPPORTED_EVENTS[kind]}", "type")
    if kind not in CLIENT_EVENTS:
        raise RealtimeError(
            "unknown_event", f"unknown event type {kind[:60]!r}; supported: {list(CLIENT_EVENTS)}", "type"
        )
    return event


def decode_pcm16(b64: Any, param: str) -> np.ndarray:
    """base64 PCM16 little-endian mono -> float32 samples."""
    if not isinstance(b64, str):
        raise RealtimeError("invalid_audio", f"{param} must be a base64 string", param)
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RealtimeError("invalid_audio", f"{param} is not valid base64 ({e})", param) from None
    if len(data) % 2:
        raise RealtimeError("invalid_audio", f"{param} holds {len(data)} bytes: 16-bit PCM needs an even number", param)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm16(pcm: np.ndarray) -> str:
    return base64.b64encode((np.clip(pcm, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()).decode()


def _typed(obj: dict[str, Any], key: str, tp: type, where: str) -> Any:
    """obj[key] when it is a `tp` (a bool is no number here), None when absent or null."""
    value = obj.get(key)
    if value is not None and (not isinstance(value, tp) or (isinstance(value, bool) and tp is not bool)):
        raise RealtimeError(
            "invalid_value", f"{where}{key} must be {tp.__name__}, got {type(value).__name__}", f"{where}{key}"
        )
    return value


@dataclass
class Settings:
    """A session's effective configuration (what `session.updated` reports)."""

    id: str
    model: str
    vad: VadConfig
    instructions: str = ""
    voice: str = "joe-us"
    speak: bool = True  # output_modalities ["audio"] (audio + transcript) or ["text"]
    server_vad: bool = True
    create_response: bool = True
    interrupt_response: bool = True

    def turn_detection(self) -> dict[str, Any] | None:
        if not self.server_vad:
            return None
        out: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.vad.threshold,
            "prefix_padding_ms": round(self.vad.preroll_ms),
            "silence_duration_ms": round(self.vad.silence_ms),
            "min_speech_duration_ms": round(self.vad.min_speech_ms),
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
            "idle_timeout_ms": None,
        }
        return out

    def to_json(self, beta: bool) -> dict[str, Any]:
        if beta:
            return {
                "id": self.id,
                "object": "realtime.session",
                "model": self.model,
                "modalities": ["text", "audio"] if self.speak else ["text"],
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": None,
                "turn_detection": self.turn_detection(),
                "tools": [],
                "tool_choice": "auto",
                "max_response_output_tokens": "inf",
            }
        fmt = {"type": "audio/pcm", "rate": RATE}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "output_modalities": ["audio"] if self.speak else ["text"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": self.turn_detection(),
                },
                "output": {"format": fmt, "voice": self.voice, "speed": 1.0},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
        }


# Fields accepted only at their "off" value: named in an error otherwise (the rest of the update applies).
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "auto", "none"),
    "tracing": (None,),
    "prompt": (None,),
    "include": (None, []),
    "truncation": (None, "auto"),
    "max_output_tokens": (None, "inf"),
    "max_response_output_tokens": (None, "inf"),
    "input_audio_transcription": (None,),
    "input_audio_noise_reduction": (None,),
    "temperature": (None,),
    "speed": (None, 1, 1.0),
    "client_secret": (None,),
    "parallel_tool_calls": (None, False),
    "reasoning": (None,),
}
WHY = {
    "tools": "tools and function calls",
    "tool_choice": "tools and function calls",
    "input_audio_transcription": "input transcription",
    "temperature": "sampling settings over the API",
}


def _unsupported(key: str, value: Any, where: str, out: list[str]) -> None:
    if key in NEUTRAL and value not in NEUTRAL[key]:
        out.append(f"{where}{key}")


def _format(value: Any, param: str) -> None:
    """An audio format: PCM16 at 24 kHz is the only one (GA object or beta name)."""
    if value is None or value == "pcm16":
        return
    if (
        isinstance(value, dict)
        and value.get("type", "audio/pcm") == "audio/pcm"
        and value.get("rate", RATE) == RATE
        and set(value) <= {"type", "rate"}
    ):
        return
    raise RealtimeError(
        "unsupported_audio_format",
        f"{param} {json.dumps(value)[:80]} is not supported: audio is "
        f'16-bit PCM at {RATE} Hz mono ({{"type": "audio/pcm", "rate": {RATE}}} or "pcm16")',
        param,
    )


def apply_turn_detection(settings: Settings, value: Any, defaults: VadConfig, param: str) -> None:
    """`turn_detection`: null (the client commits) or server_vad with bounded settings."""
    if value is None:
        settings.server_vad = False
        return
    if not isinstance(value, dict):
        raise RealtimeError("invalid_value", f"{param} must be an object or null", param)
    kind = value.get("type", "server_vad")
    if kind != "server_vad":
        raise RealtimeError(
            "unsupported_turn_detection",
            f"{param}.type {kind!r} is not supported (only server_vad, or null to commit by hand)",
            f"{param}.type",
        )
    known = {"type", *VAD_KEYS, *TURN_FLAGS, "idle_timeout_ms"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise RealtimeError("unknown_parameter", f"{param}: unknown or unsupported setting(s) {unknown}", param)
    if value.get("idle_timeout_ms") is not None:
        raise RealtimeError("unsupported_parameter", f"{param}.idle_timeout_ms is not supported", param)
    vad = VadConfig(**{**defaults.__dict__})
    for key, attr in VAD_KEYS.items():
        if value.get(key) is None:
            continue
        v = value[key]
        lo, hi = VadConfig.BOUNDS[attr]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise RealtimeError(
                "invalid_value", f"{param}.{key} must be a number from {lo:g} to {hi:g}, got {v!r}", f"{param}.{key}"
            )
        setattr(vad, attr, float(v))
    flags = {k: _typed(value, k, bool, f"{param}.") for k in TURN_FLAGS}
    settings.vad, settings.server_vad = vad, True
    settings.create_response = True if flags["create_response"] is None else flags["create_response"]
    settings.interrupt_response = True if flags["interrupt_response"] is None else flags["interrupt_response"]


def _modalities(value: Any, param: str) -> bool:
    """output_modalities ["audio"] / ["text"] (GA) or modalities ["text", "audio"] / ["text"] (beta) -> speak."""
    if not isinstance(value, list) or not value or not all(m in ("text", "audio") for m in value):
        raise RealtimeError("invalid_value", f'{param} must be ["audio"] or ["text"]', param)
    return "audio" in value


def apply_session_update(settings: Settings, session: Any, defaults: VadConfig) -> tuple[Settings, list[str]]:
    """A `session.update`'s session object applied to a copy of `settings`: (new settings,
    unsupported fields that were given non-default values). Bad values raise and change nothing."""
    if not isinstance(session, dict):
        raise RealtimeError("invalid_value", "session must be an object", "session")
    new = Settings(**settings.__dict__)
    unsupported: list[str] = []
    if session.get("type", "realtime") != "realtime":
        raise RealtimeError(
            "unsupported_session_type",
            f"session.type {session.get('type')!r} is not supported (only realtime)",
            "session.type",
        )
    for key, value in session.items():
        p = f"session.{key}"
        if key in ("type", "object", "id"):
            continue
        if key == "model":
            new.model = _typed(session, key, str, "session.") or new.model
        elif key == "instructions":
            new.instructions = _typed(session, key, str, "session.") or ""
        elif key == "voice":
            new.voice = _typed(session, key, str, "session.") or new.voice
        elif key in ("output_modalities", "modalities"):
            new.speak = _modalities(value, p)
        elif key in ("input_audio_format", "output_audio_format"):
            _format(value, p)
        elif key == "turn_detection":
            apply_turn_detection(new, value, defaults, p)
        elif key == "audio":
            _apply_audio(new, value, defaults, unsupported)
        elif key in NEUTRAL:
            _unsupported(key, value, "session.", unsupported)
        else:
            raise RealtimeError("unknown_parameter", f"unknown session field {key[:60]!r}", p)
    return new, unsupported


def _apply_audio(new: Settings, audio: Any, defaults: VadConfig, unsupported: list[str]) -> None:
    if not isinstance(audio, dict):
        raise RealtimeError("invalid_value", "session.audio must be an object", "session.audio")
    for side in audio:
        if side not in ("input", "output") or not isinstance(audio[side], dict):
            raise RealtimeError(
                "unknown_parameter", f"session.audio.{side[:40]} is not a known object", f"session.audio.{side[:40]}"
            )
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    for key, value in inp.items():
        p = f"session.audio.input.{key}"
        if key == "format":
            _format(value, p)
        elif key == "turn_detection":
            apply_turn_detection(new, value, defaults, p)
        elif key in ("transcription", "noise_reduction"):
            if value is not None:
                unsupported.append(p)
        else:
            raise RealtimeError("unknown_parameter", f"unknown field {p[:80]}", p)
    for key, value in out.items():
        p = f"session.audio.output.{key}"
        if key == "format":
            _format(value, p)
        elif key == "voice":
            new.voice = value if isinstance(value, str) else json.dumps(value)[:60]
        elif key == "speed":
            _unsupported("speed", value, "session.audio.output.", unsupported)
        else:
            raise RealtimeError("unknown_parameter", f"unknown field {p[:80]}", p)


RESPONSE_FIELDS = {
    "output_modalities",
    "modalities",
    "instructions",
    "voice",
    "conversation",
    "metadata",
    "audio",
    "output_audio_format",
    *NEUTRAL,
}


@dataclass
class ResponseOptions:
    speak: bool
    in_conversation: bool = True  # conversation "auto"; "none" answers out of band
    metadata: dict[str, Any] | None = None


def parse_response_create(params: Any, settings: Settings) -> tuple[ResponseOptions, list[str]]:
    """`response.create`'s optional `response` object -> options and unsupported fields."""
    opts = ResponseOptions(settings.speak)
    if params is None:
        return opts, []
    if not isinstance(params, dict):
        raise RealtimeError("invalid_value", "response must be an object", "response")
    unknown = sorted(set(params) - RESPONSE_FIELDS - {"input"})
    if unknown:
        raise RealtimeError("unknown_parameter", f"unknown response field(s) {unknown}", "response")
    unsupported: list[str] = []
    for key, value in params.items():
        if key in ("output_modalities", "modalities"):
            opts.speak = _modalities(value, f"response.{key}")
        elif key == "conversation":
            if value not in (None, "auto", "none"):
                raise RealtimeError(
                    "invalid_value", 'response.conversation must be "auto" or "none"', "response.conversation"
                )
            opts.in_conversation = value != "none"
        elif key == "metadata":
            opts.metadata = _typed(params, key, dict, "response.")
        elif key == "input":
            if value not in (None, []):
                unsupported.append("response.input")
        elif key == "audio":
            fmt = ((value or {}).get("output") or {}).get("format") if isinstance(value, dict) else None
            _format(fmt, "response.audio.output.format")
        elif key == "output_audio_format":
            _format(value, "response.output_audio_format")
        elif key in NEUTRAL:
            _unsupported(key, value, "response.", unsupported)
    return opts, unsupported


# ---------------------------------------------------------------- conversation items


@dataclass
class Item:
    """One message of the conversation. Only what the model can use is kept: text, the audio
    of the latest user item (the next question) and how much answer audio was sent."""

    id: str
    role: str  # user | assistant | system
    text: str = ""  # user text, system text, or the assistant's transcript (as heard, after truncation)
    audio: np.ndarray | None = None  # user audio at 24 kHz
    spoken: bool = False  # content is audio (user input_audio, assistant output_audio)
    audio_ms: int = 0  # assistant: audio sent; user: audio length
    status: str = "completed"

    def to_json(self, beta: bool) -> dict[str, Any]:
        if self.role == "assistant":
            kind = "output_audio" if self.spoken else "output_text"
            part: dict[str, Any] = {"type": BETA_CONTENT[kind] if beta else kind}
            part["transcript" if self.spoken else "text"] = self.text
        elif self.spoken:
            part = {"type": "input_audio", "transcript": None}
        else:
            part = {"type": "input_text", "text": self.text}
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "role": self.role,
            "status": self.status,
            "content": [part],
        }


def parse_item(item: Any, max_chars: int) -> Item:
    """`conversation.item.create`'s item -> an Item (text or audio; one kind per item)."""
    if not isinstance(item, dict):
        raise RealtimeError("invalid_value", "item must be an object", "item")
    if item.get("type", "message") != "message":
        raise RealtimeError(
            "unsupported_item",
            f"item type {item.get('type')!r} is not supported (function calls "
            "and their outputs need tools, which this model does not have)",
            "item.type",
        )
    role = item.get("role")
    if role not in ("user", "assistant", "system"):
        raise RealtimeError("invalid_value", 'item.role must be "user", "assistant" or "system"', "item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise RealtimeError("invalid_value", "item.content must be a non-empty list", "item.content")
    allowed = {
        "user": ("input_text", "input_audio"),
        "system": ("input_text",),
        "assistant": ("output_text", "text", "output_audio", "audio"),
    }[role]
    texts: list[str] = []
    audio: list[np.ndarray] = []
    for i, part in enumerate(content):
        p = f"item.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image":
            raise RealtimeError("unsupported_content", f"{p}: images are not supported (the model hears and reads)", p)
        if kind not in allowed:
            raise RealtimeError("invalid_value", f"{p}.type must be one of {list(allowed)} for a {role} item", p)
        if kind == "input_audio":
            audio.append(decode_pcm16(part.get("audio"), f"{p}.audio"))
        elif kind in ("output_audio", "audio"):
            if part.get("audio") is not None:
                raise RealtimeError(
                    "unsupported_content", f"{p}: assistant audio cannot be added (give its transcript)", p
                )
            texts.append(_typed(part, "transcript", str, f"{p}.") or "")
        else:
            texts.append(_typed(part, "text", str, f"{p}.") or "")
    if audio and texts:
        raise RealtimeError(
            "invalid_value",
            "a user item holds text or audio, not both (the model takes one question at a time)",
            "item.content",
        )
    text = " ".join(t.strip() for t in texts if t.strip())
    if len(text) > max_chars:
        raise RealtimeError(
            "text_too_long", f"item text of {len(text)} characters is over the limit of {max_chars}", "item.content"
        )
    if not audio and not text and role != "assistant":
        raise RealtimeError("invalid_value", "item has no text or audio", "item.content")
    pcm = np.concatenate(audio) if audio else None
    spoken = pcm is not None or any(isinstance(c, dict) and c.get("type") in ("output_audio", "audio") for c in content)
    item_id = item.get("id")
    if item_id is not None and (not isinstance(item_id, str) or not 0 < len(item_id) <= 64):
        raise RealtimeError("invalid_value", "item.id must be a string of 1-64 characters", "item.id")
    return Item(
        item_id or new_id("item"), role, text, pcm, spoken, round(1000 * len(pcm) / RATE) if pcm is not None else 0
    )


def heard(text: str, played_ms: int, total_ms: int) -> str:
    """The part of an answer's transcript that was heard when its audio was cut at
    `played_ms` of `total_ms`: the same share of its words (text and speech advance together)."""
    if total_ms <= 0 or played_ms >= total_ms:
        return text
    words = text.split()
    return " ".join(words[: math.floor(len(words) * played_ms / total_ms)])


# ---------------------------------------------------------------- server events


@dataclass
class Namer:
    """Event names and content types for one connection (GA, or beta when the client asked)."""

    beta: bool = False
    sent: int = field(default=0)

    def event(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """A server event with a fresh event_id; None where this flavour has no such event."""
        if self.beta and kind in GA_ONLY:
            return None
        self.sent += 1
        return {"type": BETA_NAMES.get(kind, kind) if self.beta else kind, "event_id": new_id("event"), **fields}

    def error(self, err: RealtimeError, event_id: str | None) -> dict[str, Any]:
        return self.event(
            "error",
            error={
                "type": err.kind,
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": event_id,
            },
        )  # type: ignore[return-value]
