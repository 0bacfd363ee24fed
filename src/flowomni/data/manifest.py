"""JSONL corpus manifests: one item per line, audio paths relative to the manifest's folder.

Schema (one JSON object per line; README "Corpora" documents it for users):

    id              str, unique within the manifest                        required
    question_text   str                                                    required
    answer_text     str            (kind "utterance": defaults to question_text)
    question_audio  str | null     path relative to the manifest's folder
    answer_audio    str | null     (kind "utterance": defaults to question_audio)
    kind            "qa" (default) | "utterance" (audio + its own transcript: ASR/TTS only)
    any other key   e.g. skill, combo, voice, split, question_seconds -> Item.meta

Audio paths must stay inside the corpus root (the manifest's folder unless `root` is
given): absolute paths and `..` that climb out are rejected, so a manifest from elsewhere
cannot make us read arbitrary files. The check is lexical: a symlink placed inside the
root (e.g. to a big corpus on another disk) is the user's explicit choice and is followed.

A bad line (invalid JSON, missing or mistyped field, duplicate id, escaping path) is
skipped, warned about and counted in `SkipStats`; `strict=True` raises instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowomni.data.fsutil import atomic_write_text

log = logging.getLogger(__name__)

KINDS = ("qa", "utterance")
CORE_KEYS = ("id", "question_text", "answer_text", "question_audio", "answer_audio", "kind")
WARNINGS_PER_REASON = 5  # then count silently: a broken 100k-line corpus must not flood the log
MAX_PATH_CHARS, MAX_NAME_BYTES = 4096, 255  # Linux PATH_MAX and NAME_MAX: longer paths cannot be opened


class ManifestError(ValueError):
    """A manifest line (strict mode) or an item to be written that breaks the schema."""


class LineProblem(ValueError):
    """Why one manifest line is unusable: a short `reason` (the skip-count key) and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Item:
    id: str
    question_text: str
    answer_text: str
    question_audio: Path | None = None  # absolute once read
    answer_audio: Path | None = None
    kind: str = "qa"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SkipStats:
    """Problems met while reading or building a corpus, counted by reason."""

    counts: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)  # reason -> first detail, for the summary

    def add(self, reason: str, detail: str = "", *, warn: bool = True) -> None:
        self.counts[reason] += 1
        self.first.setdefault(reason, detail)
        if warn and self.counts[reason] <= WARNINGS_PER_REASON:
            more = " (further ones counted silently)" if self.counts[reason] == WARNINGS_PER_REASON else ""
            log.warning("skipped (%s): %s%s", reason, detail, more)

    def update(self, other: SkipStats) -> None:
        self.counts.update(other.counts)
        for k, v in other.first.items():
            self.first.setdefault(k, v)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "nothing skipped"
        parts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
        return f"skipped {self.total} ({parts})"


def within(path: Path, root: Path) -> bool:
    """Whether `path` lies inside `root`, lexically (both absolute, normalised)."""
    path, root = Path(os.path.normpath(path)), Path(os.path.normpath(root))
    return path == root or root in path.parents


def resolve_audio_path(value: Any, base: Path, root: Path) -> Path:
    """A manifest's relative audio path -> absolute path; raises LineProblem."""
    if not isinstance(value, str) or not value.strip():
        raise LineProblem("bad audio path", f"expected a non-empty string, got {value!r}")
    if len(value) > MAX_PATH_CHARS or any(len(part.encode()) > MAX_NAME_BYTES for part in value.split("/")):
        raise LineProblem("bad audio path", f"{value[:60]!r}... ({len(value)} characters) is too long for a file name")
    if os.path.isabs(value) or value.startswith("~") or (len(value) > 1 and value[1] == ":"):
        raise LineProblem("absolute path", f"{value!r}: audio paths must be relative to the manifest")
    path = Path(os.path.normpath(base / value))
    if not within(path, root):
        raise LineProblem("path escapes root", f"{value!r} leaves the corpus root {root}")
    return path


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise LineProblem("missing field", f"no {key!r}")
    if not isinstance(value, str) or not value.strip():
        raise LineProblem("bad field", f"{key!r} must be a non-empty string, got {value!r}")
    return value


def parse_item(obj: Any, base: Path, root: Path) -> Item:
    """One decoded JSON line -> Item; raises LineProblem."""
    if not isinstance(obj, dict):
        raise LineProblem("not an object", f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind", "qa")
    if kind not in KINDS:
        raise LineProblem("bad field", f"kind must be one of {KINDS}, got {kind!r}")
    item_id = obj.get("id")
    if item_id is None:
        raise LineProblem("missing field", "no 'id'")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id) == "":
        raise LineProblem("bad field", f"'id' must be a non-empty string, got {item_id!r}")
    question = _text(obj, "question_text")
    if kind == "utterance":  # absent or null answer fields: the utterance's own text and audio
        obj = {
            **obj,
            "answer_text": obj.get("answer_text") or question,
            "answer_audio": obj.get("answer_audio") or obj.get("question_audio"),
        }
    answer = _text(obj, "answer_text")
    audio = {
        k: None if obj.get(k) is None else resolve_audio_path(obj[k], base, root)
        for k in ("question_audio", "answer_audio")
    }
    meta = {k: v for k, v in obj.items() if k not in CORE_KEYS}
    return Item(str(item_id), question, answer, audio["question_audio"], audio["answer_audio"], kind, meta)


def _parse_line(line: str, base: Path, root: Path) -> Item:
    """One manifest line -> Item. Whatever goes wrong is a LineProblem: one line must never
    end the reading of a corpus (a line nested 100,000 deep makes the JSON parser recurse)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:  # (ValueError: also a 5,000-digit number)
        raise LineProblem("bad json", str(e) or "nested too deeply") from None
    try:
        return parse_item(obj, base, root)
    except LineProblem:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure is this line's problem too
        raise LineProblem("unreadable line", f"{type(e).__name__}: {e}") from None


def read_manifest(
    path: str | Path, *, root: str | Path | None = None, strict: bool = False
) -> tuple[list[Item], SkipStats]:
    """Items of a JSONL manifest with absolute audio paths, and the lines skipped.

    `root` (default: the manifest's folder) bounds where audio may live. Audio files are
    not opened here (see `flowomni.data.check` and `flowomni data check`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.absolute().parent
    root = Path(os.path.normpath(Path(root).absolute())) if root is not None else base
    items: list[Item] = []
    seen: set[str] = set()
    stats = SkipStats()
    with path.open(encoding="utf-8", errors="replace", newline="\n") as f:  # JSONL: only \n ends a line
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                item = _parse_line(line, base, root)
                if item.id in seen:
                    raise LineProblem("duplicate id", f"id {item.id!r} already used (first one kept)")
            except LineProblem as e:
                if strict:
                    raise ManifestError(f"{where}: {e}") from None
                stats.add(e.reason, f"{where}: {e.detail}")
                continue
            seen.add(item.id)
            items.append(item)
    return items, stats


def item_to_json(item: Item, base: Path, root: Path | None = None) -> dict[str, Any]:
    """The manifest line of `item` for a manifest in folder `base` (paths made relative)."""
    if item.kind not in KINDS:
        raise ManifestError(f"item {item.id!r}: kind must be one of {KINDS}, got {item.kind!r}")
    clash = set(item.meta) & set(CORE_KEYS)
    if clash:
        raise ManifestError(f"item {item.id!r}: meta must not hold schema keys {sorted(clash)}")
    root = root or base
    out: dict[str, Any] = {"id": item.id, "question_text": item.question_text, "answer_text": item.answer_text}
    for key in ("question_audio", "answer_audio"):
        p = getattr(item, key)
        if p is None:
            out[key] = None
            continue
        p = Path(os.path.normpath(Path(p).absolute()))
        if not within(p, root):
            raise ManifestError(f"item {item.id!r}: {key} {p} is outside the corpus root {root}")
        out[key] = Path(os.path.relpath(p, base)).as_posix()
    out["kind"] = item.kind
    out.update(item.meta)
    return out


def write_manifest(path: str | Path, items: list[Item], *, root: str | Path | None = None) -> None:
    """Write `items` atomically as JSONL, audio paths relative to `path`'s folder."""
    path = Path(path)
    base = path.absolute().parent
    root_p = Path(os.path.normpath(Path(root).absolute())) if root is not None else None
    ids: set[str] = set()
    lines = []
    for item in items:
        if item.id in ids:
            raise ManifestError(f"duplicate id {item.id!r}")
        ids.add(item.id)
        lines.append(json.dumps(item_to_json(item, base, root_p), ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
