"""Manifests: round trip, path-escape rejection, bad lines skipped and counted by reason."""

import json
from pathlib import Path

import pytest

from flowomni.data.manifest import Item, ManifestError, SkipStats, read_manifest, write_manifest


def _write_lines(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _line(i, **kw):
    return {"id": f"x{i}", "question_text": "What is one plus one?", "answer_text": "One plus one is two.", **kw}


def test_round_trip_keeps_every_field(tmp_path):
    corpus = tmp_path / "corpus"
    items = [
        Item(
            "a",
            "What is two plus three?",
            "Two plus three is five.",
            corpus / "audio/q/a.wav",
            corpus / "audio/ans/5.wav",
            "qa",
            {"skill": "arithmetic", "voice": "espeak:en-gb", "n": 3},
        ),
        Item(
            "b",
            "Hello there.",
            "Hello there.",
            corpus / "libri/b.flac",
            corpus / "libri/b.flac",
            "utterance",
            {"speaker": "19"},
        ),
        Item("c", "Text only?", "Yes, text only.", None, None),
    ]
    write_manifest(corpus / "train.jsonl", items)
    lines = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines()]
    assert lines[0]["question_audio"] == "audio/q/a.wav"  # relative, posix
    assert lines[0]["skill"] == "arithmetic" and "meta" not in lines[0]  # meta flattened into the line
    back, stats = read_manifest(corpus / "train.jsonl")
    assert stats.total == 0 and stats.summary() == "nothing skipped"
    assert back == items


def test_write_rejects_audio_outside_the_corpus_and_duplicate_ids(tmp_path):
    with pytest.raises(ManifestError, match="outside"):
        write_manifest(tmp_path / "c/m.jsonl", [Item("a", "q", "a", tmp_path / "elsewhere.wav")])
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(tmp_path / "m.jsonl", [Item("a", "q", "a"), Item("a", "q2", "a2")])
    assert not (tmp_path / "m.jsonl").exists()  # nothing half-written


def test_paths_are_relative_to_the_manifest_and_may_not_escape(tmp_path):
    m = _write_lines(
        tmp_path / "corpus" / "m.jsonl",
        [
            _line(0, question_audio="a/q.wav"),
            _line(1, question_audio="a/../b/q.wav"),  # `..` that stays inside is fine
            _line(2, question_audio="/etc/passwd"),
            _line(3, question_audio="../secret.wav"),
            _line(4, answer_audio="a/../../../x.wav"),
            _line(5, question_audio="~/x.wav"),
            _line(6, question_audio="C:/x.wav"),
            _line(7, question_audio=""),
        ],
    )
    items, stats = read_manifest(m)
    assert [it.id for it in items] == ["x0", "x1"]
    assert items[0].question_audio == tmp_path / "corpus" / "a" / "q.wav"
    assert items[1].question_audio == tmp_path / "corpus" / "b" / "q.wav"
    assert items[0].question_audio.is_absolute()
    assert stats.counts == {"absolute path": 3, "path escapes root": 2, "bad audio path": 1}
    # a wider root (given explicitly) admits `..` up to it, and no further
    items, stats = read_manifest(m, root=tmp_path)
    assert [it.id for it in items] == ["x0", "x1", "x3"]
    assert items[2].question_audio == tmp_path / "secret.wav"
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: absolute path"):
        read_manifest(m, strict=True)


def test_bad_lines_are_skipped_and_counted_by_reason(tmp_path, caplog):
    m = _write_lines(
        tmp_path / "m.jsonl",
        [
            _line(0),
            "{not json",
            "[1, 2]",
            {"id": "x9", "answer_text": "no question"},
            {"question_text": "q", "answer_text": "no id"},
            _line(0),  # duplicate id: first one kept
            _line(1, kind="video"),
            _line(2, question_text=7),
            "",  # blank lines are not problems
            _line(3, kind="utterance", answer_text=None, answer_audio=None, question_audio="u.flac"),
        ],
    )
    items, stats = read_manifest(m)
    assert [it.id for it in items] == ["x0", "x3"]
    assert stats.counts == {"bad json": 1, "not an object": 1, "missing field": 2, "duplicate id": 1, "bad field": 2}
    assert "skipped 7" in stats.summary() and "duplicate id: 1" in stats.summary()
    assert "m.jsonl:2" in caplog.text  # warnings name the line
    # utterances default the answer to the question (audio + its own transcript)
    u = items[1]
    assert u.kind == "utterance" and u.answer_text == u.question_text
    assert u.answer_audio == u.question_audio == tmp_path / "u.flac"


def test_utterance_answer_audio_defaults_to_question_audio(tmp_path):
    m = _write_lines(
        tmp_path / "m.jsonl", [{"id": 1, "question_text": "Hi.", "question_audio": "u.flac", "kind": "utterance"}]
    )
    (item,), _ = read_manifest(m)
    assert item.id == "1" and item.answer_text == "Hi." and item.answer_audio == item.question_audio


def test_skip_stats_warn_a_few_times_then_count_silently(caplog):
    s = SkipStats()
    for i in range(20):
        s.add("bad json", f"line {i}")
    assert s.counts["bad json"] == 20
    assert caplog.text.count("skipped (bad json)") == 5
    other = SkipStats()
    other.add("missing file", "x", warn=False)
    s.update(other)
    assert s.total == 21 and s.first["missing file"] == "x"


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
