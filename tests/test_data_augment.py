"""Augmentation: SNR as requested, speed changes duration by the factor, gain with a clipping guard."""

import numpy as np
import pytest
import soundfile as sf

from flowomni.cli import main
from flowomni.data.augment import AugmentSpec, augment, make_noise
from flowomni.data.manifest import Item, read_manifest, write_manifest

from helpers.speech import espeak


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = espeak("Which is bigger, four or nine?", tmp_path_factory.mktemp("aug") / "q.wav")
    wav, sr = sf.read(path, dtype="float32")
    return 0.5 * wav / np.abs(wav).max(), sr


def _snr(clean, noisy):
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((noisy - clean).astype(np.float64) ** 2))


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_measured_snr_equals_requested(speech, kind, snr):
    wav, sr = speech
    noisy = augment(wav, sr, AugmentSpec(noise_snr_db=snr, noise_kind=kind), np.random.default_rng(0))
    assert len(noisy) == len(wav)
    assert abs(_snr(wav, noisy) - snr) < 0.5


def test_noise_kinds_have_their_spectra():
    sr, n = 16000, 64000
    rng = np.random.default_rng(1)

    def low_high(x, low=(100, 500)):
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / sr)
        return p[(f > low[0]) & (f < low[1])].mean() / p[(f > 5000) & (f < 7000)].mean()

    white, pink, babble = (make_noise(k, n, sr, rng) for k in ("white", "pink", "babble"))
    assert all(abs(np.sqrt(np.mean(x**2)) - 1) < 1e-3 for x in (white, pink, babble))
    assert 0.5 < low_high(white) < 2 and low_high(pink) > 5
    assert low_high(babble, (500, 2500)) > 100  # speech band
    env = np.abs(babble).reshape(-1, 160).mean(axis=1)
    assert env.std() / env.mean() > 0.3  # babble comes and goes like syllables


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.2])
def test_speed_changes_duration_by_the_factor(speech, factor):
    wav, sr = speech
    out = augment(wav, sr, AugmentSpec(speed=factor), np.random.default_rng(0))
    assert len(out) / len(wav) == pytest.approx(1 / factor, rel=0.01)


def test_gain_and_clipping_guard(speech):
    wav, sr = speech
    rng = np.random.default_rng(0)
    quiet = augment(wav, sr, AugmentSpec(gain_db=-6), rng)
    assert np.abs(quiet).max() == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-3)
    loud = augment(wav, sr, AugmentSpec(gain_db=12), rng)  # would peak at 2.0
    assert np.abs(loud).max() <= 0.99 + 1e-6
    np.testing.assert_allclose(loud / np.abs(loud).max(), wav / np.abs(wav).max(), atol=1e-5)  # scaled, not clipped
    with pytest.raises(ValueError):
        AugmentSpec(speed=3.0)


def test_deterministic_given_the_seed(speech):
    wav, sr = speech
    spec = AugmentSpec(noise_snr_db=5, noise_kind="babble", speed=1.1)
    a = augment(wav, sr, spec, np.random.default_rng(3))
    assert np.array_equal(a, augment(wav, sr, spec, np.random.default_rng(3)))
    assert not np.array_equal(a, augment(wav, sr, spec, np.random.default_rng(4)))


def test_augment_manifest_changes_questions_only(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    q = espeak("What is the capital of France?", corpus / "q.wav")
    a = espeak("The capital of France is Paris.", corpus / "a.wav")
    (corpus / "broken.wav").write_bytes(b"RIFF")
    items = [
        Item("x", "What is the capital of France?", "The capital of France is Paris.", q, a, "qa", {"skill": "facts"}),
        Item("y", "Broken?", "Yes.", corpus / "broken.wav", a),
    ]
    write_manifest(corpus / "test.jsonl", items)
    assert (
        main(
            [
                "data",
                "augment",
                str(corpus / "test.jsonl"),
                str(tmp_path / "noisy"),
                "--noise-snr",
                "10",
                "--speed",
                "0.9",
            ]
        )
        == 0
    )
    out, stats = read_manifest(tmp_path / "noisy" / "test.jsonl")
    assert stats.total == 0 and [it.id for it in out] == ["x"]
    it = out[0]
    assert it.meta["augment"] == "white10dB_speed0.9" and it.meta["skill"] == "facts"
    assert it.question_audio.parent.parent.parent == tmp_path / "noisy"
    assert it.answer_audio.read_bytes() == a.read_bytes()  # the answer is untouched, reached via `source`
    assert sf.info(str(it.question_audio)).duration == pytest.approx(sf.info(str(q)).duration / 0.9, rel=0.01)
    assert main(["data", "augment", str(corpus / "test.jsonl"), str(tmp_path / "n2")]) == 2  # nothing to do
