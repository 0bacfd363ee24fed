"""The synthetic corpus build: deterministic (same seed -> same items and bytes, whatever the
number of workers), resumable, answers shared per text, test voices really unseen, the voice sets
ask the test questions, written questions need no audio."""

import json
import shutil

import pytest
import soundfile as sf

from flowomni.cli import main
from flowomni.data.manifest import read_manifest
from flowomni.data.synth import SynthConfig, build, plan, trim_silence
from flowomni.data.voices import ANSWER_VOICE, seen_espeak_voices

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

MANIFESTS = [
    "train.jsonl",
    "valid.jsonl",
    "test.jsonl",
    "test_seen_voices.jsonl",
    "test_shifted_voices.jsonl",
    "train_text.jsonl",
]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "audio").rglob("*.wav"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    ra = build(a, SynthConfig(size=12, seed=7, workers=1, text_size=20), progress=False)
    rb = build(b, SynthConfig(size=12, seed=7, workers=2, text_size=20), progress=False)
    return a, b, ra, rb


def test_same_seed_same_items_and_same_audio_bytes(built):
    a, b, ra, rb = built
    for m in MANIFESTS:
        assert (a / m).read_text() == (b / m).read_text(), m
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and all(fa[k] == fb[k] for k in fa)
    assert ra.synthesized == rb.synthesized == len(fa)
    sizes = {k: v["items"] for k, v in json.loads((a / "corpus.json").read_text())["splits"].items()}
    assert sizes == {
        "train": 10,
        "valid": 1,
        "test": 1,
        "test_seen_voices": 1,
        "test_shifted_voices": 1,
        "train_text": 20,
    }
    other = plan(SynthConfig(size=12, seed=8))
    assert [p.qa for p in other["train"]] != [p.qa for p in plan(SynthConfig(size=12, seed=7))["train"]]


def test_manifests_are_readable_and_audio_is_as_documented(built):
    a = built[0]
    items, stats = read_manifest(a / "train.jsonl")
    assert stats.total == 0 and len(items) == 10
    written, stats = read_manifest(a / "train_text.jsonl")
    assert stats.total == 0 and len(written) == 20
    assert all(it.question_audio is None and it.answer_audio is not None for it in written)
    for it in items:
        q, ans = sf.info(str(it.question_audio)), sf.info(str(it.answer_audio))
        assert q.samplerate == 16000 and ans.samplerate == 22050 and q.subtype == ans.subtype == "PCM_16"
        assert abs(q.duration - it.meta["question_seconds"]) < 1e-3
        assert 0.4 < ans.duration < 3.5, it.answer_text  # short answers, trimmed silence
        assert it.meta["skill"] and it.meta["combo"] and it.meta["voice"].split(":")[0] in ("espeak", "piper")
    # answer audio is a function of its text: one shared file per distinct answer
    by_text = {}
    for m in MANIFESTS:
        for it in read_manifest(a / m)[0]:
            assert by_text.setdefault(it.answer_text, it.answer_audio) == it.answer_audio
    assert len(list((a / "audio" / "answers").rglob("*.wav"))) == len(by_text)


def test_test_voices_are_unseen_and_voice_sets_ask_the_test_questions(built):
    a = built[0]
    test, _ = read_manifest(a / "test.jsonl")
    seen = {f"espeak:{v}" for v in seen_espeak_voices()} | {f"piper:{ANSWER_VOICE.name}"}
    assert all(t.meta["voice"] not in seen for t in test)
    train_voices = {it.meta["voice"] for m in MANIFESTS[:2] for it in read_manifest(a / m)[0]}
    assert train_voices <= seen
    for name in ("test_seen_voices.jsonl", "test_shifted_voices.jsonl"):
        other, _ = read_manifest(a / name)
        assert [t.question_text for t in test] == [u.question_text for u in other]
        assert [t.answer_audio for t in test] == [u.answer_audio for u in other]
    assert all(u.meta["voice"] in seen for u in read_manifest(a / "test_seen_voices.jsonl")[0])
    shifted = read_manifest(a / "test_shifted_voices.jsonl")[0]
    assert all(u.meta["voice"] == "piper:joe-us" and u.meta["voice_params"]["cents"] for u in shifted)


def test_rerun_resumes_and_rebuilds_only_missing_clips(built, tmp_path):
    a = built[0]
    before = _files(a)
    report = build(a, SynthConfig(size=12, seed=7, workers=1, text_size=20), progress=False)
    assert report.synthesized == 0 and report.reused == len(before)
    victim = sorted(before)[0]
    (a / victim).unlink()
    stale = (a / victim).parent / ".x.123.abcd1234.tmp.wav"
    stale.write_bytes(b"half a file from a killed worker")
    report = build(a, SynthConfig(size=12, seed=7, workers=1, text_size=20), progress=False)
    assert report.synthesized == 1 and _files(a) == before
    assert not list(a.rglob("*.tmp*"))  # no temporary files left behind


def test_cli_prints_items_per_second_and_hours(tmp_path, capsys):
    assert (
        main(["data", "synth", str(tmp_path / "c"), "--size", "4", "--workers", "1", "--quiet", "--no-voice-sets"]) == 0
    )
    out = capsys.readouterr().out
    assert "items/s" in out and "questions" in out and " h" in out
    assert not (tmp_path / "c" / "test_seen_voices.jsonl").exists()
    assert main(["data", "synth", str(tmp_path / "d"), "--size", "2"]) == 2  # a clear error, not a traceback


def test_only_builds_the_named_manifests_with_the_full_builds_items(built, tmp_path):
    a = built[0]
    test_sets = ["test", "test_seen_voices", "test_shifted_voices"]
    cmd = ["data", "synth", str(tmp_path), "--size", "12", "--seed", "7", "--workers", "1", "--quiet"]
    assert main([*cmd, "--text-size", "20", "--only", *test_sets]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == sorted(f"{m}.jsonl" for m in test_sets)
    for m in test_sets:
        assert (tmp_path / f"{m}.jsonl").read_text() == (a / f"{m}.jsonl").read_text(), m
    assert set(_files(tmp_path)) < set(_files(a))  # no training clip rendered
    assert main([*cmd, "--only", "train"]) == 0  # a second slice keeps the first's corpus.json entry
    assert set(json.loads((tmp_path / "corpus.json").read_text())["splits"]) == {"train", *test_sets}
    assert main([*cmd, "--only", "tset"]) == 2  # a clear error naming the manifests there are


def test_train_items_builds_the_first_training_items_of_the_full_build(built, tmp_path):
    a = built[0]
    full, cut = plan(SynthConfig(size=12, seed=7)), plan(SynthConfig(size=12, seed=7, train_items=4))
    assert cut["train"] == full["train"][:4] and cut["valid"] == full["valid"] and cut["test"] == full["test"]
    cmd = ["data", "synth", str(tmp_path), "--size", "12", "--seed", "7", "--workers", "1", "--quiet"]
    assert main([*cmd, "--train-items", "3", "--only", "train"]) == 0
    assert (tmp_path / "train.jsonl").read_text().splitlines() == (a / "train.jsonl").read_text().splitlines()[:3]
    assert main([*cmd, "--train-items", "-1"]) == 2  # a clear error, not a traceback


def test_tts_size_speaks_training_questions_in_the_answer_voice(tmp_path):
    """train_tts.jsonl: "utterance" items whose text is a training question (training templates
    and combinations only: no held-out phrasing leaks in), spoken by the answer voice with word
    timings (aligned pacing reads them)."""
    from flowomni.data.skills import assign_splits

    cmd = ["data", "synth", str(tmp_path), "--size", "12", "--seed", "7", "--workers", "1", "--quiet"]
    assert main([*cmd, "--tts-size", "3", "--only", "train_tts"]) == 0
    items, stats = read_manifest(tmp_path / "train_tts.jsonl")
    assert len(items) == 3 and not stats.counts
    planned = plan(SynthConfig(size=12, seed=7, tts_size=3))["train_tts"]
    train_templates = {
        t.text for groups in assign_splits().templates["train"].values() for ts in groups.values() for t in ts
    }
    for it, p in zip(items, planned, strict=True):
        assert it.kind == "utterance" and it.question_text == it.answer_text == p.qa.question
        assert it.question_audio is None and it.answer_audio.is_file() and it.meta["answer_words"]
        assert p.qa.template in train_templates
    assert main([*cmd, "--tts-size", "-2"]) == 2  # a clear error, not a traceback


def test_trim_silence_keeps_speech_and_a_short_margin():
    import numpy as np

    sr = 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr).astype(np.float32)
    wav = np.concatenate([np.zeros(sr), tone, np.zeros(sr // 2)]).astype(np.float32)
    out = trim_silence(wav, sr)
    assert sr <= len(out) <= sr + 0.15 * sr
    assert np.abs(out).max() == pytest.approx(0.5, abs=1e-3)
