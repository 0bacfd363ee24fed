"""The flowomni voice-chat WebSocket protocol (served at `/ws`; this text is at `/protocol`).

One WebSocket is one conversation (a *session*). Text frames carry JSON objects with a
`type`; binary frames carry raw audio. Everything is ordered: the server handles the
client's messages one at a time, in the order sent.

Client -> server
----------------
  {"type": "start", "sample_rate": 16000, "format": "pcm_s16le", "speak": true,
   "mode": "ptt" | "vad", "vad": {"kind": "silero", "threshold": 0.5, "silence_ms": 700}}
      Declares the microphone stream; answered by `ready`. Every field is optional
      (defaults shown; `vad` overrides the server's VAD settings for this session). May be
      sent again between turns to change options (buffered audio is dropped).
  <binary frame>
      Microphone audio: 16-bit little-endian signed mono PCM at the declared rate (an even
      number of bytes). Only after `start`. In "ptt" (push-to-talk) mode all audio is kept
      until `end_of_turn`; a whole utterance may be sent as one binary frame followed by
      `end_of_turn`. In "vad" (hands-free) mode the server's voice-activity detector (`kind`
      "silero", a small neural model, or "energy", frame loudness) ends the turn itself after
      `silence_ms` of silence following speech; audio before the speech starts is dropped
      (except `preroll_ms`). Settings and their ranges: kind; threshold 0.05-0.95 (silero's
      speech probability); min_speech_ms 0-2000; silence_ms 100-5000; preroll_ms 0-2000;
      energy only: threshold_db -90-0, margin_db 0-40, noise_window_ms 200-10000, frame_ms 5-100.
  {"type": "end_of_turn"}            the user finished speaking: answer the buffered audio
  {"type": "text", "text": "What is two plus three?"}   a written question
  {"type": "interrupt"}              stop the current answer now (barge-in)
  {"type": "reset"}                  stop any answer, drop buffered audio, forget the history
  {"type": "ping"}                   answered by {"type": "pong"}

Server -> client
----------------
  {"type": "ready", "session": "...", "sample_rate": 16000, "mode": "ptt", "speak": true,
   "output_sample_rate": 22050, "output_format": "pcm_s16le", "limits": {...}}
  {"type": "speech", "state": "start" | "end"}        (vad mode) the detector heard speech begin / end
  {"type": "turn", "turn": 3, "by": "client" | "vad" | "text", "question_seconds": 1.8}
      A question was accepted as turn 3 and its answer is on the way.
  {"type": "text", "turn": 3, "text": "Two plus"}     a piece of the answer's text, as generated
  <binary frame>
      A piece of the answer's speech: 16-bit little-endian signed mono PCM at
      `output_sample_rate`. Binary frames between `turn` n and its `done` belong to turn n;
      concatenated they are the whole answer, so a client can play them back to back.
  {"type": "done", "turn": 3, "text": "...", "interrupted": false, "audio_seconds": 1.9,
   "audio_samples": 41984, "history": 2,
   "timings": {"first_text_ms": 41, "first_audio_ms": 96, "total_ms": 820, "rtf": 0.35,
               "audio_seconds": 1.9, "queue_ms": 0, ...}}
      The answer is complete (or was cut short: `interrupted`). Times are in ms from the end
      of the user's turn (when the server received `end_of_turn`/`text`, or the VAD decided);
      `rtf` is generation time over answer audio length; `history` is how many earlier turns
      the next answer will see.
  {"type": "error", "code": "...", "message": "...", "turn": 3}
      Something was wrong; the session stays open unless `code` is "idle_timeout" or
      "session_limit". `turn` is present when the error ends an accepted turn (instead of
      its `done`). Codes: bad_json, bad_message, unknown_type, not_started, bad_audio,
      too_large, turn_too_long, empty_turn, text_too_long, prompt_too_long, session_limit,
      idle_timeout, internal.
  {"type": "busy", "message": "...", "retry_after_ms": 1000}
      The server is at its limit of concurrent + waiting answers: the question was NOT
      accepted (no turn number was used); ask again later. Also sent on connect when the
      server is at its session limit, followed by close code 1013 (try again later).
  {"type": "pong"}, {"type": "reset"}

Rules
-----
- Every accepted turn ends with exactly one `done` or one `error` carrying its turn number,
  and no audio for it follows that message.
- Barge-in: a new question (the first audio of a new push-to-talk turn, speech detected in
  vad mode, a `text` message) or `interrupt` while an answer is running stops it promptly:
  its `done` comes with `"interrupted": true` and the partial text.
- Context: the session keeps the last few (question text, answer text) turns as the model's
  history. Spoken questions enter it with an empty question text (the model hears, but does
  not transcribe, them); interrupted answers are left out (the user did not hear them out).
- Browsers: a page may only open the socket from the server's own origin (or one listed in
  the server's `allowed_origins`); other sites' pages get HTTP 403 at the handshake, and so
  does a request whose Host is not a name the server answers to (loopback, its --host
  address, `allowed_hosts`): see guards.py.
- `vad` settings are checked against their ranges (an error names the setting and its
  range); the context the model sees is the last `history_turns` turns within
  `max_history_chars` characters (older turns are dropped).
- Limits (sent in `ready`): message size, seconds of audio per turn, characters per text
  question, turns per session, idle seconds. A message over the size limit (up to 4x it)
  gets `too_large` and is dropped; anything larger makes the transport close the socket
  (code 1009).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

CLIENT_TYPES = ("start", "end_of_turn", "text", "interrupt", "reset", "ping")
MODES = ("ptt", "vad")
INPUT_FORMAT = OUTPUT_FORMAT = "pcm_s16le"
MIN_RATE, MAX_RATE = 8000, 48000


class ProtocolError(Exception):
    """A client message the server cannot use; becomes an `error` reply, never a disconnect."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class StartOptions:
    sample_rate: int = 16000
    format: str = INPUT_FORMAT
    speak: bool = True
    mode: str = "ptt"
    vad: dict[str, float] | None = None


def _field(msg: dict[str, Any], key: str, tp: type, default: Any) -> Any:
    if key not in msg:
        return default
    value = msg[key]
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise ProtocolError("bad_message", f"{msg['type']}: field {key!r} must be {tp.__name__}, got {value!r}")
    return value


def parse_start(msg: dict[str, Any], vad_keys: tuple[str, ...]) -> StartOptions:
    unknown = set(msg) - {"type", "sample_rate", "format", "speak", "mode", "vad"}
    if unknown:
        raise ProtocolError("bad_message", f"start: unknown field(s) {sorted(unknown)}")
    rate = _field(msg, "sample_rate", int, 16000)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError("bad_message", f"start: sample_rate {rate} is outside {MIN_RATE}-{MAX_RATE} Hz")
    fmt = _field(msg, "format", str, INPUT_FORMAT)
    if fmt != INPUT_FORMAT:
        raise ProtocolError("bad_message", f"start: format {fmt!r} is not supported (only {INPUT_FORMAT!r})")
    mode = _field(msg, "mode", str, "ptt")
    if mode not in MODES:
        raise ProtocolError("bad_message", f"start: mode must be one of {list(MODES)}, got {mode!r}")
    vad = _field(msg, "vad", dict, None)
    if vad is not None:
        bad = set(vad) - set(vad_keys)
        if bad:
            raise ProtocolError("bad_message", f"start: unknown vad setting(s) {sorted(bad)}; known: {list(vad_keys)}")
        if not all(
            isinstance(v, str) if k == "kind" else isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in vad.items()
        ):
            raise ProtocolError("bad_message", 'start: vad settings must be numbers ("kind" a name)')
    return StartOptions(rate, fmt, _field(msg, "speak", bool, True), mode, vad)


def parse_message(raw: str) -> dict[str, Any]:
    """A client text frame -> a JSON object with a known `type` (else ProtocolError)."""
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("bad_json", f"message is not valid JSON ({e})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", 'message must be a JSON object with a string "type"')
    if msg["type"] not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {msg['type'][:40]!r}; known: {list(CLIENT_TYPES)}")
    if msg["type"] == "text":
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("bad_message", 'text: needs a non-empty string field "text"')
    return msg


def pcm16_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes -> float32 samples in [-1, 1)."""
    if len(data) % 2:
        raise ProtocolError("bad_audio", f"binary audio frame has {len(data)} bytes: 16-bit PCM needs an even number")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(pcm: np.ndarray) -> bytes:
    """float samples -> 16-bit little-endian PCM bytes (clipped)."""
    return (np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


def error(code: str, message: str, turn: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if turn is not None:
        out["turn"] = turn
    return out


def busy(message: str, retry_after_ms: int = 1000) -> dict[str, Any]:
    return {"type": "busy", "message": message, "retry_after_ms": retry_after_ms}
