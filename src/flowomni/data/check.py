"""`flowomni data check`: decode every audio file a manifest names and count the problems.

The reasons (missing file, not audio, truncated, silent, ...) are flowomni.audio.io's: the same
vocabulary the feature cache, the corpus builders and training count their skips by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from flowomni.audio.io import UNREADABLE, AudioError, load_audio
from flowomni.data.manifest import SkipStats, read_manifest


@dataclass
class CheckReport:
    items: int = 0
    ok_items: int = 0
    question_seconds: float = 0.0
    answer_seconds: float = 0.0
    lines: SkipStats = field(default_factory=SkipStats)  # manifest lines skipped
    problems: SkipStats = field(default_factory=SkipStats)  # audio files unusable

    def format(self, name: str | Path) -> str:
        return "\n".join(
            [
                f"{name}: {self.items} items read, {self.ok_items} usable; "
                f"question audio {self.question_seconds / 3600:.2f} h, answer audio {self.answer_seconds / 3600:.2f} h",
                f"  manifest lines: {self.lines.summary()}",
                f"  audio files: {self.problems.summary()}",
            ]
        )


def check_manifest(path: str | Path, *, max_seconds: float | None = None, progress: bool = True) -> CheckReport:
    """Decode every audio file a manifest names (each once); count problems by reason."""
    from tqdm import tqdm

    items, lines = read_manifest(path)
    report = CheckReport(items=len(items), lines=lines)
    seconds: dict[Path, float | None] = {}
    for it in tqdm(items, desc="check", unit="item", disable=not progress):
        ok = True
        for key in ("question_audio", "answer_audio"):
            p = getattr(it, key)
            if p is None:
                continue
            if p not in seconds:
                try:
                    wav = load_audio(p, max_seconds=max_seconds)
                    seconds[p] = len(wav) / sf.info(str(p)).samplerate
                except AudioError as e:
                    seconds[p] = None
                    report.problems.add(e.reason, str(e))
                except Exception as e:  # noqa: BLE001 - any failure is this file's, never the whole check's
                    seconds[p] = None
                    report.problems.add(UNREADABLE, f"{str(p)[:200]}: {type(e).__name__}: {e}")
            if seconds[p] is None:
                ok = False
            elif key == "question_audio":
                report.question_seconds += seconds[p] or 0.0
            else:
                report.answer_seconds += seconds[p] or 0.0
        report.ok_items += ok
    return report
