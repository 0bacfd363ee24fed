"""Disk cache of a frozen speech encoder's outputs, per question clip and augmentation variant.
With `model.encoder.tune_top: N` it holds the output below the top N layers, which learn.

The paper keeps the Whisper encoder frozen in both stages, so its output for a clip never
changes: computing it once and reading it back makes a training step skip the encoder's
forward pass (and its activations) entirely. Augmentation would defeat the cache if drawn
afresh each time, so each clip gets `augment.variants` fixed versions (version 0 clean, the
others drawn by `augment.random_spec` from a seed of the clip and version) and training picks
one per epoch (TaskDataset.set_epoch).

Layout: `root/enc-<fingerprint>/<hh>/<key>_<variant>.npy` (float16 [frames at 50 Hz, d]). The
fingerprint covers everything an output depends on: the front end, the encoder's shape,
window and weights digest, and the augmentation settings; the key is the audio file's
(path, mtime, size), as in the log-mel cache. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from flowomni.audio.io import AudioError, load_audio
from flowomni.audio.mel import MelSpectrogram
from flowomni.checkpoint import state_digest
from flowomni.data.augment import AugmentConfig, augment, random_spec
from flowomni.data.features import FeatureCache
from flowomni.data.fsutil import atomic_path
from flowomni.data.manifest import SkipStats

log = logging.getLogger(__name__)


class EncoderCache:
    """`get(path, variant)` -> encoder frames [T, d] (float16) of one version of a question clip."""

    def __init__(self, root: str | Path, model: torch.nn.Module, augment_cfg: AugmentConfig | None = None) -> None:
        """`model`: a FlowOmni whose encoder is frozen (its weights, stats and front end are used)."""
        cfg = model.cfg  # type: ignore[attr-defined]
        self.aug = augment_cfg or AugmentConfig(variants=1)
        self.variants = self.aug.variants
        self.encoder, self.stats = model.encoder, model.in_stats  # type: ignore[attr-defined]
        self.mel = MelSpectrogram(cfg.input_mel)
        self.sample_rate = cfg.input_mel.sample_rate
        enc = asdict(cfg.encoder)
        enc.pop("pretrained", None)  # the digest names the weights; a moved folder is the same encoder
        if not enc["tune_top"]:
            del enc["tune_top"]  # caches made before the field existed stay valid
        if not cfg.encoder.pretrained_digest:  # an own (CTC) encoder: hash its weights
            enc["weights"] = state_digest(model.encoder.state_dict())
        aug = asdict(self.aug)
        aug.pop("variants")  # version v is the same whatever the count: caches of 2 and 4 versions share files
        spec = {
            "mel": asdict(cfg.input_mel),
            "encoder": enc,
            "augment": aug,
            "stats": [float(self.stats.mean.sum()), float(self.stats.std.sum())],
        }
        self.fingerprint = hashlib.sha1(json.dumps(spec, sort_keys=True, default=list).encode()).hexdigest()[:12]
        self.dir = Path(root) / f"enc-{self.fingerprint}"
        self._keys = FeatureCache(root, cfg.input_mel, memory_items=0)  # for its file keys

    def file_for(self, path: str | Path, variant: int) -> Path:
        key = self._keys.key(path)
        return self.dir / key[:2] / f"{key}_{variant}.npy"

    def spec(self, path: str | Path, variant: int):  # -> AugmentSpec | None
        """The augmentation of one version (None for version 0, the clean clip)."""
        if variant == 0:
            return None
        seed = int.from_bytes(hashlib.sha1(f"{self._keys.key(path)}/{variant}".encode()).digest()[:8], "little")
        return random_spec(np.random.default_rng(seed), self.aug)

    def _audio(self, path: str | Path, variant: int) -> np.ndarray:
        wav = load_audio(path, self.sample_rate)
        spec = self.spec(path, variant)
        if spec is not None:
            seed = int.from_bytes(
                hashlib.sha1(f"noise/{self._keys.key(path)}/{variant}".encode()).digest()[:8], "little"
            )
            wav = augment(wav, self.sample_rate, spec, np.random.default_rng(seed))
        return wav

    @torch.no_grad()
    def encode(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder frames of several clips in one padded batch (padding is masked)."""
        mels = [self.mel(torch.from_numpy(w)) for w in wavs]
        lengths = torch.tensor([m.shape[0] for m in mels])
        x = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
        valid = (torch.arange(x.shape[1])[None] < lengths[:, None])[..., None]
        x = torch.where(valid, self.stats.normalize(x), torch.zeros(()))
        dtype = next(self.encoder.parameters()).dtype
        h, n = self.encoder.bottom(x.to(dtype), lengths)  # below the layers that learn
        return [h[i, : int(n[i])].to(torch.float16).numpy() for i in range(len(wavs))]

    def get(self, path: str | Path, variant: int = 0) -> np.ndarray:
        if not 0 <= variant < self.variants:
            raise ValueError(f"variant {variant} outside 0..{self.variants - 1}")
        file = self.file_for(path, variant)
        arr = self._load(file)
        if arr is None:
            arr = self.encode([self._audio(path, variant)])[0]
            self._save(file, arr)
        return arr

    def _load(self, file: Path) -> np.ndarray | None:
        if not file.exists():
            return None
        try:
            arr = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("recomputing damaged encoder cache file %s (%s)", file, e)
            return None
        if arr.ndim != 2 or arr.dtype != np.float16:
            log.warning("recomputing encoder cache file %s of unexpected shape %s", file, arr.shape)
            return None
        return arr

    @staticmethod
    def _save(file: Path, arr: np.ndarray) -> None:
        with atomic_path(file) as tmp:
            np.save(tmp, arr)

    def precompute(self, paths: Iterable[str | Path], *, batch_size: int = 16, progress: bool = True) -> SkipStats:
        """Fill the cache for every version of every clip, in batches of similar length.
        Unreadable clips are skipped and counted by reason."""
        from tqdm import tqdm

        stats = SkipStats()
        todo = []
        for p in sorted({os.path.abspath(p) for p in paths}):
            try:
                todo += [(p, v) for v in range(self.variants) if self._load(self.file_for(p, v)) is None]
            except AudioError as e:
                stats.add(e.reason, str(e))
        bar = tqdm(total=len(todo), desc=f"encoder {self.dir.name}", unit="clip", disable=not progress, file=sys.stderr)
        pending: list[tuple[str, int, np.ndarray]] = []

        def flush() -> None:
            pending.sort(key=lambda t: len(t[2]))
            for i in range(0, len(pending), batch_size):
                chunk = pending[i : i + batch_size]
                for (p, v, _), out in zip(chunk, self.encode([w for _, _, w in chunk])):
                    self._save(self.file_for(p, v), out)
                bar.update(len(chunk))
            pending.clear()

        failed: set[str] = set()  # a clip is counted once, not once per version
        for p, v in todo:
            if p in failed:
                bar.update()
                continue
            try:
                pending.append((p, v, self._audio(p, v)))
            except Exception as e:  # one bad clip must not stop the run
                failed.add(p)
                if isinstance(e, AudioError):
                    stats.add(e.reason, str(e))
                else:
                    stats.add("error", f"{p}: {type(e).__name__}: {e}")
                bar.update()
            if len(pending) >= batch_size * 16:
                flush()
        flush()
        bar.close()
        return stats
