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
        wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-p", "50", "--stdout", "What is seven plus two?"],
                             capture_output=True, check=True, timeout=30).stdout
        renders.setdefault(hashlib.sha1(wav[44:]).hexdigest(), []).append(voice)
    same = [voices for voices in renders.values() if len(voices) > 1]
    assert not same, f"voices that render identically: {same}"


def test_unseen_voices_are_disjoint_from_training_voices():
    seen, unseen = set(seen_espeak_voices()), set(unseen_espeak_voices())
    assert len(seen) >= 250 and len(unseen) >= 150
    assert not seen & unseen
