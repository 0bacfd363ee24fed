"""Disk cache of log-mel features: computed once per audio file, memory-mapped afterwards.

Layout: `root/<mel_cfg.fingerprint()>/<hh>/<key>.npy`, where key hashes the audio file's
absolute path, mtime and size. A change of feature config reads from another folder
(old features are never mistaken for new ones); an edited or replaced audio file gets a
new key and is recomputed. Writes are atomic, so dataloader workers and parallel
`precompute` processes may race on the same file safely.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from flowomni.audio.io import MISSING, AudioError, load_audio
from flowomni.audio.mel import MelConfig, MelSpectrogram
from flowomni.data.fsutil import atomic_path
from flowomni.data.manifest import SkipStats
from flowomni.data.parallel import run_jobs

log = logging.getLogger(__name__)


class FeatureCache:
    """`get(path)` -> float32 log-mel [frames, n_mels] (a copy-on-write memmap of the cache file).

    Unreadable audio raises `AudioError` naming the reason. A small LRU
    keeps the most recently used arrays' memory maps open.
    """

    def __init__(self, root: str | Path, cfg: MelConfig, *, memory_items: int = 256) -> None:
        self.cfg = cfg
        self.dir = Path(root) / cfg.fingerprint()
        self.memory_items = memory_items
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._mel: MelSpectrogram | None = None

    def key(self, path: str | Path) -> str:
        """Cache key of an audio file's current version; raises AudioError if it is missing.
        The path is resolved: a corpus that reaches another's clips through a symlinked folder
        (`data/spoken_qa_taught/audio -> ../spoken_qa/audio`) reuses their features."""
        path = Path(os.path.realpath(path))
        try:
            st = path.stat()
        except OSError as e:
            raise AudioError(f"{path}: file not found ({e.strerror or e})", MISSING) from e
        return hashlib.sha1(f"{path}\x1f{st.st_mtime_ns}\x1f{st.st_size}".encode()).hexdigest()[:24]

    def file_for(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def compute(self, path: str | Path) -> np.ndarray:
        """Log-mel of an audio file, bypassing the cache."""
        if self._mel is None:
            self._mel = MelSpectrogram(self.cfg)
        wav = load_audio(path, self.cfg.sample_rate)
        with torch.no_grad():
            return self._mel(torch.from_numpy(wav)).numpy().astype(np.float32, copy=False)

    def get(self, path: str | Path) -> np.ndarray:
        key = self.key(path)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        file = self.file_for(key)
        arr = self._load(file)
        if arr is None:
            mel = self.compute(path)
            with atomic_path(file) as tmp:
                np.save(tmp, mel)
            arr = self._load(file)
            if arr is None:  # unreadable right after writing: disk trouble, still serve the data
                arr = mel
        self._lru[key] = arr
        if len(self._lru) > self.memory_items:
            self._lru.popitem(last=False)
        return arr

    def _load(self, file: Path) -> np.ndarray | None:
        """The cached array, or None if absent or damaged (then it is recomputed).

        mode "c" (copy-on-write) gives a writable array, so torch.from_numpy works without
        warnings, while the file itself is never modified.
        """
        if not file.exists():
            return None
        try:
            arr = np.load(file, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("recomputing damaged cache file %s (%s)", file, e)
            return None
        if arr.ndim != 2 or arr.shape[1] != self.cfg.n_mels or arr.dtype != np.float32:
            log.warning("recomputing cache file %s with unexpected shape %s", file, arr.shape)
            return None
        return arr

    def precompute(self, paths: Iterable[str | Path], *, workers: int = 0, progress: bool = True) -> SkipStats:
        """Fill the cache for `paths` (deduplicated) with `workers` processes (0: one per core).

        Bad audio is skipped, warned about and counted by reason in the returned stats.
        """
        todo = sorted({os.path.abspath(p) for p in paths})
        stats = SkipStats()
        for path, reason, detail in run_jobs(
            _precompute_one,
            todo,
            workers=workers or os.cpu_count() or 1,
            init=_init_worker,
            init_args=(str(self.dir.parent), self.cfg),
            desc=f"features {self.dir.name}",
            unit="file",
            progress=progress,
        ):
            if reason:
                stats.add(reason, f"{path}: {detail}")
        return stats


_worker_cache: list[FeatureCache] = []


def _init_worker(root: str, cfg: MelConfig) -> None:
    _worker_cache[:] = [FeatureCache(root, cfg, memory_items=0)]


def _precompute_one(path: str) -> tuple[str, str, str]:
    cache = _worker_cache[0]
    try:
        key = cache.key(path)
        if cache._load(cache.file_for(key)) is None:
            cache.get(path)
        return path, "", ""
    except AudioError as e:
        return path, e.reason, str(e)
    except Exception as e:  # anything else is counted too; one file must not stop the run
        return path, "error", f"{type(e).__name__}: {e}"
