"""Every question voice of the corpus is a distinct voice, and test voices are never training voices."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from flowomni.data.voices import seen_espeak_voices, unseen_espeak_voices


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_every_espeak_voice_renders_distinctly():
    """espeak-ng 1.51 silently ignores some voice names (en-gb+VARIANT is plain en-gb, klatt and
    caleb are one voice): a voice list must be verified by rendering."""
    renders: dict[str, list[str]] = {}
    for voice in seen_espeak_voices() + unseen_espeak_voices():
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "160", "-p", "50", "--stdout", "What is seven plus two?"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        renders.setdefault(hashlib.sha1(wav[44:]).hexdigest(), []).append(voice)
    same = [voices for voices in renders.values() if len(voices) > 1]
    assert not same, f"voices that render identically: {same}"


def test_unseen_voices_are_disjoint_from_training_voices():
    seen, unseen = set(seen_espeak_voices()), set(unseen_espeak_voices())
    assert len(seen) >= 250 and len(unseen) >= 150
    assert not seen & unseen


def test_word_spans_from_phoneme_durations():
    from flowomni.data.voices import word_spans

    # ^ b i g _ r e d . $  (piper's sentence marks, a word gap and a pause belong to no word)
    phonemes = [
        ("^", 100),
        ("b", 10),
        ("ɪ", 20),
        ("ɡ", 10),
        (" ", 50),
        ("ɹ", 10),
        ("ɛ", 30),
        ("d", 10),
        (".", 40),
        ("$", 5),
    ]
    assert word_spans(phonemes) == [(100, 140), (190, 240)]


def test_words_run_together_by_the_phonemizer_share_their_span():
    from flowomni.data.voices import fit_words

    words = "The twelfth month of the year".split()
    spans = [(0, 30), (40, 110), (120, 170), (180, 240), (250, 300)]  # "of the" is one stretch
    fitted = fit_words(spans, words)
    assert len(fitted) == len(words)
    assert fitted[:3] == spans[:3] and fitted[-1] == spans[-1]
    assert fitted[3][0] == 180 and fitted[4][1] == 240 and fitted[3][1] == fitted[4][0]
    assert fit_words(spans, words[:3]) is None  # more stretches than words: no timing, not a wrong one
