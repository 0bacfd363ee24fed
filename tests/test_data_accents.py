"""Synthetic accents: real espeak phonemes in, real espeak phonemes out, a distinct rendering,
and a corpus where only the accented training questions change."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from flowomni.data.accents import SOUND_CHANGES, accent_changes, accented_phonemes, shift, tokenize
from flowomni.data.synth import SynthConfig, plan
from flowomni.data.voices import Speaker, Voice

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_tokens_keep_diphthongs_whole():
    assert tokenize("f'aIv t'eIk") == ["f", "'", "aI", "v", " ", "t", "'", "eI", "k"]
    # "a" -> "e" must not split "aI" (five) into "eI" (fave)
    assert shift("f'aIv k'at", {"a": "e"}) == "f'aIv k'et"
    assert shift("k'aUnt ,Vp", {"aU": "u:", "V": "U"}) == "k'u:nt ,Up"


def test_an_accent_is_a_fixed_draw_of_sound_changes():
    a = accent_changes(12345)
    assert a == accent_changes(12345)
    assert len({frozenset(accent_changes(s).items()) for s in range(1, 40)}) > 30
    for s in range(1, 40):
        m = accent_changes(s)
        names = [n for n, c in SOUND_CHANGES.items() if all(m.get(k) == v for k, v in c.items())]
        assert len(names) >= 2, (s, m)  # at least the drawn minimum survives overlaps
    with pytest.raises(ValueError, match="> 0"):
        accent_changes(0)


@needs_espeak
def test_every_replacement_is_a_phoneme_espeak_speaks():
    """espeak drops a mnemonic it does not know without a word: each one must echo back."""
    for change in SOUND_CHANGES.values():
        for dst in change.values():
            if not dst:
                continue
            out = subprocess.run(["espeak-ng", "-v", "en", "-q", "-x", f"[[t'{dst}d]]"], capture_output=True)
            assert out.stdout.decode().strip().replace("'", "") == f"t{dst}d", dst  # consonants lose the stress


@needs_espeak
def test_an_accented_voice_renders_other_audio_and_keeps_unaccented_file_names():
    text = "Count up from five to nine."
    assert accented_phonemes(text, "en-us", 4) == "k'u:nt ,Up frUm f'OIv t@ n'OIn"  # "coont up frum foive"
    plain = Voice("espeak", "en-us+m3", rate=160, pitch=50)
    accented = Voice("espeak", "en-us+m3", rate=160, pitch=50, accent=4)  # "count" -> "coont", "five" -> "foive"
    a, sr = Speaker().speak(text, plain)
    b, _ = Speaker().speak(text, accented)
    assert sr == 22050 and np.abs(b).max() > 0.05
    assert a.shape != b.shape or not np.allclose(a, b)
    # file names of voices without an accent are those of corpora built before accents existed
    fields = {"engine": "espeak", "name": "en-us+m3", "rate": 160, "pitch": 50, "peak_db": -1.0}
    assert plain.fingerprint() == json.dumps({**fields, "tempo": 1.0, "cents": 0.0}, sort_keys=True)
    assert accented.fingerprint() != plain.fingerprint() and accented.params()["accent"] == 4


def test_accent_share_changes_only_the_training_questions_it_draws():
    base, acc = plan(SynthConfig(size=400, seed=3)), plan(SynthConfig(size=400, seed=3, accent_share=0.5))
    assert base.keys() == acc.keys()
    for name in base:
        changed = [(p, q) for p, q in zip(base[name], acc[name]) if p != q]
        if name != "train":
            assert not changed, name
            continue
        assert all(p.qa == q.qa and q.voice.accent and p.voice.accent == 0 for p, q in changed)
        assert all(p.question_file != q.question_file for p, q in changed)
        espeak = sum(p.voice.engine == "espeak" for p in base[name])
        assert 0.4 < len(changed) / espeak < 0.6
    with pytest.raises(ValueError, match="accent_share"):
        SynthConfig(accent_share=1.5)
