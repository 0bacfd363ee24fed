"""Atomic file writes: readers (other dataloader workers, a resumed build) never see half a file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `dst`; on success it is renamed onto `dst`.

    The temporary name keeps `dst`'s suffix (soundfile and numpy pick the format from it)
    and is unique per process, so concurrent writers of the same file cannot collide; the
    last rename wins, and every version is complete.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{dst.suffix}")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(dst: str | Path, text: str) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_text(text, encoding="utf-8")
