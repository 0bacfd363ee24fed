"""Hugging Face `datasets` corpora in the VoiceAssistant-400K style -> WAV files + manifests.

Exporting once to our manifest format keeps one code path for training and evaluation.
The dataset is read from a LOCAL path only: a `save_to_disk` folder (Dataset or
DatasetDict) or a folder of data files that `load_dataset` understands (parquet, json...).

Audio cells may be `Audio` features (read undecoded: bytes or a path, decoded here with
soundfile, so no torchcodec is needed), plain dicts with `array` + `sampling_rate`, or
path strings (relative to the dataset folder). VoiceAssistant-400K's `answer_snac` holds
SNAC codec tokens, not audio: without an audio answer column, items have text answers only
(usable for speech->text and text->text).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from flowomni.audio.io import CORRUPT, MISSING, AudioError, save_audio, validate
from flowomni.data.fsutil import atomic_path
from flowomni.data.manifest import Item, SkipStats, write_manifest

log = logging.getLogger(__name__)


@dataclass
class HFColumns:
    question_text: str = "question"
    answer_text: str = "answer"
    question_audio: str = "question_audio"
    answer_audio: str = "answer_audio"
    id: str = ""  # empty: "<split>-<row>"


def open_dataset(path: str | Path) -> dict[str, Any]:
    """split name -> `datasets.Dataset`, from a local folder (never the hub)."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset not found: {p} (only local paths are read)")
    if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
        ds = datasets.load_from_disk(str(p))
    else:
        ds = datasets.load_dataset(str(p))
    return {"train": ds} if isinstance(ds, datasets.Dataset) else dict(ds)


def decode_audio(value: Any, base: Path, name: str) -> tuple[np.ndarray, int] | None:
    """One audio cell -> (mono float32 samples, rate), None if empty; AudioError if unusable."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise AudioError(f"{name}: unsupported audio cell of type {type(value).__name__}", CORRUPT)
    try:
        if value.get("array") is not None:
            if not value.get("sampling_rate"):
                raise AudioError(f"{name}: array without sampling_rate", CORRUPT)
            wav, sr = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
            if wav.ndim == 2 and wav.shape[0] < wav.shape[1] and wav.shape[0] <= 8:
                wav = wav.T  # datasets gives [channels, samples]; soundfile's order is [samples, channels]
        elif value.get("bytes"):
            wav, sr = sf.read(io.BytesIO(value["bytes"]), dtype="float32")
        elif value.get("path"):
            path = Path(value["path"])
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise AudioError(f"{name}: missing file ({path} not found)", MISSING)
            wav, sr = sf.read(str(path), dtype="float32")
        else:
            return None
    except AudioError:
        raise
    except Exception as e:  # soundfile raises several types for corrupt data
        raise AudioError(f"{name}: cannot decode audio ({type(e).__name__}: {e})", CORRUPT) from e
    return validate(wav, int(sr), name), int(sr)


def _undecoded(ds: Any, columns: list[str]) -> Any:
    import datasets

    for col in columns:
        if isinstance(ds.features.get(col), datasets.Audio):
            ds = ds.cast_column(col, datasets.Audio(decode=False))
    return ds


def export_hf(
    path: str | Path,
    out_dir: str | Path,
    columns: HFColumns | None = None,
    *,
    splits: list[str] | None = None,
    max_items: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Path], SkipStats]:
    """Export each split to `out_dir/<split>.jsonl` + `out_dir/audio/<split>/`; returns the
    manifests written and the rows skipped (counted by reason)."""
    from tqdm import tqdm

    cols = columns or HFColumns()
    base, out = Path(path), Path(out_dir)
    data = open_dataset(base)
    if splits:
        unknown = sorted(set(splits) - set(data))
        if unknown:
            raise ValueError(f"split(s) {unknown} not in the dataset (it has {sorted(data)})")
        data = {s: data[s] for s in splits}
    stats = SkipStats()
    written: dict[str, Path] = {}
    for split, ds in data.items():
        names = set(ds.column_names)
        for need in (cols.question_text, cols.answer_text):
            if need not in names:
                raise ValueError(
                    f"split {split!r} has no column {need!r} (columns: {sorted(names)}); "
                    "name it with --question-col/--answer-col"
                )
        audio_cols = [c for c in (cols.question_audio, cols.answer_audio) if c in names]
        for c in (cols.question_audio, cols.answer_audio):
            if c not in names:
                log.warning("split %r has no column %r: items get no audio for it", split, c)
        wanted = [c for c in (cols.id, cols.question_text, cols.answer_text, *audio_cols) if c and c in names]
        ds = _undecoded(ds.select_columns(wanted), audio_cols)
        if max_items and len(ds) > max_items:
            ds = ds.select(range(max_items))
        items: list[Item] = []
        seen: set[str] = set()
        for i, row in enumerate(tqdm(ds, desc=f"export {split}", unit="row", disable=not progress)):
            item_id = str(row[cols.id]) if cols.id and row.get(cols.id) is not None else f"{split}-{i:07d}"
            q, a = row.get(cols.question_text), row.get(cols.answer_text)
            if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
                stats.add("missing field", f"{split} row {i}: empty question or answer text")
                continue
            if item_id in seen:
                stats.add("duplicate id", f"{split} row {i}: {item_id}")
                continue
            try:
                audio = {
                    k: decode_audio(row.get(c), base, f"{split} row {i} {c}") if c in names else None
                    for k, c in (("q", cols.question_audio), ("a", cols.answer_audio))
                }
            except AudioError as e:
                stats.add(e.reason, str(e))
                continue
            paths: dict[str, Path | None] = {}
            h = hashlib.sha1(item_id.encode()).hexdigest()[:20]
            for k, decoded in audio.items():
                if decoded is None:
                    paths[k] = None
                    continue
                dst = out / "audio" / split / h[:2] / f"{h}_{k}.wav"
                with atomic_path(dst) as tmp:
                    save_audio(tmp, *decoded)
                paths[k] = dst
            seen.add(item_id)
            items.append(
                Item(
                    item_id,
                    q.strip(),
                    a.strip(),
                    paths["q"],
                    paths["a"],
                    "qa",
                    {"source": "hf", "split": split, "row": i},
                )
            )
        written[split] = out / f"{split}.jsonl"
        write_manifest(written[split], items)
    return written, stats
