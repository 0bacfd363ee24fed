"""The pieces under /v1/realtime, one at a time: streaming resampler, Silero VAD, VAD bounds,
the API key, and the Realtime event rules."""

from __future__ import annotations

import argparse
import base64

import numpy as np
import pytest

from flowomni.audio.io import load_audio
from flowomni.audio.stream_resample import StreamResampler
from flowomni.config import ConfigError
from flowomni.serving import auth
from flowomni.serving.cli import add_arguments, server_config
from flowomni.serving.config import ServerConfig
from flowomni.serving.detectors import make_vad
from flowomni.serving.realtime_events import (
    Namer,
    RealtimeError,
    Settings,
    apply_session_update,
    decode_pcm16,
    heard,
    parse_event,
    parse_item,
    parse_response_create,
)
from flowomni.serving.silero import SileroVAD
from flowomni.serving.vad import EnergyVAD
from flowomni.serving.vad_config import VadConfig, check_vad

from helpers.speech import espeak

# ---------------------------------------------------------------- streaming resampler


@pytest.mark.parametrize("rates", [(22050, 24000), (24000, 16000), (16000, 24000), (44100, 16000)])
def test_stream_resampler_is_seamless_and_accurate(rates: tuple[int, int]) -> None:
    src, dst = rates
    t = np.arange(src) / src
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    r = StreamResampler(src, dst)
    whole = np.concatenate([r.push(x), r.flush()])
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, 2000))
        parts.append(r.push(x[i : i + k]))
        i += k
    pieces = np.concatenate([*parts, r.flush()])
    assert len(whole) == len(pieces) == dst  # one second in, one second out
    np.testing.assert_array_equal(whole, pieces)  # chunking changes nothing
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(dst) / dst)
    assert np.abs(whole - expected)[200:-200].max() < 1e-3


def test_stream_resampler_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)


# ---------------------------------------------------------------- Silero VAD


@pytest.fixture(scope="module")
def utterance(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(espeak("What is two plus three?", tmp_path_factory.mktemp("vad") / "q.wav"))


@pytest.mark.parametrize("rate", [16000, 24000, 44100])
def test_silero_finds_one_turn_in_noise(utterance: str, rate: int) -> None:
    q = load_audio(utterance, rate)
    rng = np.random.default_rng(0)
    stream = np.concatenate([np.zeros(rate), q, np.zeros(rate)])
    p_speech = float(np.mean(q**2))
    stream = (stream + rng.standard_normal(len(stream)) * np.sqrt(p_speech / 10)).astype(np.float32)  # 10 dB SNR
    vad = make_vad(VadConfig(kind="silero", silence_ms=500), rate)
    assert isinstance(vad, SileroVAD)
    events = []
    step = rate // 50
    for i in range(0, len(stream), step):
        events += [(e.kind, i / rate, e.audio) for e in vad.push(stream[i : i + step])]
    assert [k for k, _, _ in events] == ["start", "end"]
    assert 1.0 <= events[0][1] <= 1.5  # speech starts at 1.0 s (plus min_speech and a frame)
    utt = events[1][2]
    assert len(q) / rate - 0.2 < len(utt) / rate < len(q) / rate + 0.8  # the question, with pre-roll and a tail


def test_silero_ignores_loud_noise_where_energy_hears_a_turn() -> None:
    rate = 24000
    noise = (np.random.default_rng(1).standard_normal(5 * rate) * 0.1).astype(np.float32)  # -20 dBFS white noise
    kinds = {}
    for kind in ("silero", "energy"):
        vad = make_vad(VadConfig(kind=kind), rate)
        kinds[kind] = [e.kind for i in range(0, len(noise), 480) for e in vad.push(noise[i : i + 480])]
    assert kinds["silero"] == []
    assert kinds["energy"][:1] == ["start"]  # the energy VAD's start-of-stream spurious turn


def test_vad_settings_are_bounded_and_named() -> None:
    check_vad(VadConfig())
    for key, (lo, hi) in VadConfig.BOUNDS.items():
        for bad in (lo - 1, hi + 1, float("nan")):
            with pytest.raises(ValueError, match=key):
                check_vad(VadConfig(**{key: bad}))
    with pytest.raises(ValueError, match="kind"):
        check_vad(VadConfig(kind="webrtc"))
    assert type(make_vad(VadConfig(kind="energy"), 16000)) is EnergyVAD


# ---------------------------------------------------------------- API key


def test_api_key_from_header_or_subprotocol() -> None:
    assert auth.authorized({}, None)
    assert auth.authorized({"authorization": "Bearer k1"}, "k1")
    assert not auth.authorized({"authorization": "Bearer k2"}, "k1")
    assert not auth.authorized({"authorization": "Basic k1"}, "k1")
    assert not auth.authorized({}, "k1")
    hdr = {"sec-websocket-protocol": "realtime, openai-insecure-api-key.k1"}
    assert auth.authorized(hdr, "k1") and auth.chosen_protocol(hdr) == "realtime"
    assert auth.chosen_protocol({}) is None
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("example.com")


def test_a_reachable_server_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="API key"):
        ServerConfig(host="0.0.0.0").check()
    ServerConfig(host="0.0.0.0", api_key="k").check()
    p = argparse.ArgumentParser()
    add_arguments(p)
    monkeypatch.delenv(auth.ENV, raising=False)
    with pytest.raises(ConfigError, match="FLOWOMNI_API_KEY"):
        server_config(p.parse_args(["--host", "0.0.0.0"]))
    assert server_config(p.parse_args(["--host", "0.0.0.0", "--api-key", "123"])).api_key == "123"
    monkeypatch.setenv(auth.ENV, "from-env")
    assert server_config(p.parse_args(["--host", "0.0.0.0"])).api_key == "from-env"


# ---------------------------------------------------------------- Realtime events


def settings() -> Settings:
    return Settings("sess_1", "m", VadConfig())


def test_parse_event_errors_name_the_problem() -> None:
    for raw, code in [
        ("{", "invalid_json"),
        ("[]", "invalid_event"),
        ('{"type": 3}', "invalid_event"),
        ('{"type": "x.y", "event_id": "e"}', "unknown_event"),
        ('{"type": "output_audio_buffer.clear"}', "unsupported_event"),
    ]:
        with pytest.raises(RealtimeError) as e:
            parse_event(raw)
        assert e.value.code == code
    with pytest.raises(RealtimeError) as e:
        parse_event('{"type": "x.y", "event_id": "e"}')
    assert e.value.event_id == "e"
    assert parse_event('{"type": "response.create"}')["type"] == "response.create"


def test_decode_pcm16() -> None:
    pcm = decode_pcm16(base64.b64encode(np.array([0, 16384, -32768], "<i2").tobytes()).decode(), "audio")
    np.testing.assert_array_equal(pcm, [0.0, 0.5, -1.0])
    for bad in ("@@", base64.b64encode(b"\x00").decode(), 7):
        with pytest.raises(RealtimeError, match="audio"):
            decode_pcm16(bad, "audio")


def test_session_update_in_ga_and_beta_form() -> None:
    ga, unsupported = apply_session_update(
        settings(),
        {
            "type": "realtime",
            "instructions": "Be short.",
            "output_modalities": ["text"],
            "model": "x",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.6,
                        "silence_duration_ms": 400,
                        "prefix_padding_ms": 100,
                        "min_speech_duration_ms": 200,
                        "create_response": False,
                    },
                },
                "output": {"voice": "cedar"},
            },
            "tools": [],
        },
        VadConfig(),
    )
    assert unsupported == []
    assert (ga.instructions, ga.speak, ga.voice, ga.model) == ("Be short.", False, "cedar", "x")
    assert (ga.vad.threshold, ga.vad.silence_ms, ga.vad.preroll_ms, ga.vad.min_speech_ms) == (0.6, 400, 100, 200)
    assert ga.create_response is False and ga.interrupt_response is True
    td = ga.to_json(beta=False)["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 400 and td["type"] == "server_vad"
    beta, unsupported = apply_session_update(
        settings(),
        {
            "modalities": ["text", "audio"],
            "input_audio_format": "pcm16",
            "turn_detection": None,
            "voice": "alloy",
            "temperature": 0.8,
            "tools": [{"type": "function", "name": "f"}],
        },
        VadConfig(),
    )
    assert beta.speak and not beta.server_vad and beta.voice == "alloy"
    assert unsupported == ["session.temperature", "session.tools"]
    assert beta.to_json(beta=True)["turn_detection"] is None
    before = settings()
    with pytest.raises(RealtimeError) as e:
        apply_session_update(before, {"instructions": "x", "input_audio_format": "g711_alaw"}, VadConfig())
    assert e.value.code == "unsupported_audio_format" and before.instructions == ""  # nothing applied


def test_response_create_options() -> None:
    opts, unsupported = parse_response_create(
        {"output_modalities": ["text"], "conversation": "none", "metadata": {"a": "b"}, "tools": [{"x": 1}]}, settings()
    )
    assert not opts.speak and not opts.in_conversation and opts.metadata == {"a": "b"}
    assert unsupported == ["response.tools"]
    with pytest.raises(RealtimeError, match="unknown"):
        parse_response_create({"colour": 1}, settings())


def test_items_and_what_was_heard() -> None:
    user = parse_item({"type": "message", "role": "user", "content": [{"type": "input_text", "text": " Hi. "}]}, 100)
    assert user.text == "Hi." and user.to_json(False)["content"] == [{"type": "input_text", "text": "Hi."}]
    audio = base64.b64encode(bytes(4800)).decode()
    spoken = parse_item({"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": audio}]}, 100)
    assert spoken.spoken and spoken.audio_ms == 100
    assistant = parse_item(
        {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hello there."}]}, 100
    )  # a beta content type
    assert assistant.text == "Hello there." and assistant.to_json(True)["content"][0]["type"] == "text"
    for bad, code in [
        ({"type": "function_call_output"}, "unsupported_item"),
        ({"type": "message", "role": "user", "content": []}, "invalid_value"),
        (
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "a"}, {"type": "input_audio", "audio": audio}],
            },
            "invalid_value",
        ),
        ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a" * 101}]}, "text_too_long"),
    ]:
        with pytest.raises(RealtimeError) as e:
            parse_item(bad, 100)
        assert e.value.code == code
    assert heard("one two three four", 500, 1000) == "one two"
    assert heard("one two", 1000, 1000) == "one two" and heard("one two", 0, 1000) == ""


def test_beta_names() -> None:
    ga, beta = Namer(False), Namer(True)
    assert ga.event("response.output_audio.delta")["type"] == "response.output_audio.delta"
    assert beta.event("response.output_audio.delta")["type"] == "response.audio.delta"
    assert beta.event("response.output_audio_transcript.done")["type"] == "response.audio_transcript.done"
    assert beta.event("conversation.item.added") is None and ga.event("conversation.item.added") is not None
    err = ga.error(RealtimeError("c", "m", "p"), "evt")
    assert err["type"] == "error" and err["error"] == {
        "type": "invalid_request_error",
        "code": "c",
        "message": "m",
        "param": "p",
        "event_id": "evt",
    }
