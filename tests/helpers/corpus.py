"""A tiny corpus folder for the training CLIs: real speech, one corrupt file, one bad line."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from flowomni.data.manifest import Item, write_manifest


def make_corpus(root: Path, spoken_items: list[SimpleNamespace]) -> None:
    """train.jsonl (the items, a corrupt WAV and a line that is not JSON) and valid.jsonl in `root`."""
    root.mkdir()
    items = []
    for i in spoken_items:
        q, a = root / i.question_audio.name, root / i.answer_audio.name
        shutil.copy(i.question_audio, q), shutil.copy(i.answer_audio, a)
        items.append(Item(i.id, i.question_text, i.answer_text, q, a))
    bad = root / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    items.append(Item("bad", "What is bad?", "This is bad.", bad, root / spoken_items[0].answer_audio.name))
    write_manifest(root / "train.jsonl", items)
    write_manifest(root / "valid.jsonl", items[:2])
    (root / "train.jsonl").write_text((root / "train.jsonl").read_text() + "{not json\n")


def corpus_data(tmp_path: Path) -> dict[str, str]:
    """The `data` section of an experiment config for the corpus `make_corpus(tmp_path / "corpus", ...)`
    wrote, its features cached under tmp_path / "cache"."""
    return {
        "train_manifest": str(tmp_path / "corpus/train.jsonl"),
        "valid_manifest": str(tmp_path / "corpus/valid.jsonl"),
        "cache_dir": str(tmp_path / "cache"),
    }
