"""Training audio for the vocoder: clips of the answer voice, cut into random segments.

Sources are audio files, folders (searched recursively) or JSONL manifests whose lines carry
`answer_audio` (relative to the manifest's folder), as `flowomni data synth` writes them.
Each clip's mel is computed once over the whole clip, so a segment's input frames are exactly
what the vocoder sees at inference (no edge padding inside the segment).

A manifest line may also carry `answer_mel`: a safetensors file (relative to the manifest) whose
"mel" [T, n_mels] is the speech model's own drawing of that clip, frame-aligned with its audio
(`flowomni vocoder-mels` writes them, teacher-forced). The vocoder then learns to turn the
model's mel into the recorded audio ("ground-truth-aligned" fine-tuning, as Tacotron 2 did for
WaveNet): it is the model's mel, not the recorded one, that the vocoder hears at inference.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from flowomni.audio.io import AudioError, load_audio
from flowomni.audio.mel import MelConfig, MelSpectrogram
from flowomni.config import Bounds

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_MEL_SLACK = 8  # frames a model mel may differ from its clip by (the model pads to whole groups)


@dataclass
class VocoderDataConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "segment_frames": (1, 100_000),
        "batch_size": (1, 65536),
        "max_seconds": (0.01, 3600),
        "valid_items": (0, None),
    }

    train: list[str] = field(default_factory=lambda: ["data/voice/train.jsonl"])
    valid: list[str] = field(default_factory=lambda: ["data/voice/valid.jsonl"])
    segment_frames: int = 64  # 64 frames = 0.74 s at 22.05 kHz / 256
    batch_size: int = 16
    max_seconds: float = 30.0
    valid_items: int = 8  # held-out clips scored at each evaluation


def audio_paths(sources: list[str], skipped: Counter | None = None) -> list[Path]:
    """Expand files, folders and JSONL manifests into audio file paths (sorted per source)."""
    return [audio for audio, _ in clip_sources(sources, skipped)]


def clip_sources(sources: list[str], skipped: Counter | None = None) -> list[tuple[Path, Path | None]]:
    """(audio path, model mel path or None) for every clip of files, folders and manifests."""
    paths: list[tuple[Path, Path | None]] = []
    for src in sources:
        p = Path(src)
        if p.suffix == ".jsonl":
            if not p.is_file():
                raise FileNotFoundError(f"vocoder data: manifest {p} not found")
            for n, line in enumerate(p.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    mel = obj.get("answer_mel")
                    paths.append((p.parent / obj["answer_audio"], None if mel is None else p.parent / mel))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    if skipped is not None:
                        skipped["manifest line without answer_audio"] += 1
                    log.warning("%s:%d: no answer_audio, skipped", p, n)
        elif p.is_dir():
            paths.extend((f, None) for f in sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES))
        elif p.is_file():
            paths.append((p, None))
        else:
            raise FileNotFoundError(f"vocoder data: {p} is not an audio file, folder or .jsonl manifest")
    return paths


class Clips:
    """Decoded clips with their whole-clip mels (or the model's, see the module docstring);
    unreadable files are skipped and counted."""

    def __init__(self, sources: list[str], mel_cfg: MelConfig, max_seconds: float = 30.0, limit: int = 0) -> None:
        self.mel_cfg, self.hop = mel_cfg, mel_cfg.hop_length
        self.skipped: Counter = Counter()
        mel_fn = MelSpectrogram(mel_cfg)
        self.mels: list[torch.Tensor] = []  # [T, n_mels]
        self.wavs: list[torch.Tensor] = []  # [T * hop], zero-padded
        self.paths: list[Path] = []
        for path, mel_path in clip_sources(sources, self.skipped):
            if limit and len(self.paths) >= limit:
                break
            try:
                wav = torch.from_numpy(load_audio(path, mel_cfg.sample_rate, max_seconds=max_seconds))
            except AudioError as e:
                self.skipped[str(e).split(": ", 1)[-1].split(" (")[0]] += 1
                log.warning("skipped: %s", e)
                continue
            if mel_path is None:
                with torch.inference_mode():
                    mel = mel_fn(wav)
            else:  # the model's mel replaces the recording's: only its length is needed
                try:
                    mel = self.model_mel(mel_path, mel_fn.frames(wav.shape[0]))
                except ValueError as e:
                    self.skipped[str(e).split(": ", 1)[0]] += 1
                    log.warning("skipped %s: %s", path, e)
                    continue
                wav = wav[: mel.shape[0] * self.hop]
            self.mels.append(mel)
            self.wavs.append(torch.nn.functional.pad(wav, (0, mel.shape[0] * self.hop - wav.shape[0])))
            self.paths.append(path)
        if not self.paths:
            raise ValueError(f"vocoder data: no usable audio in {sources} (skipped: {dict(self.skipped)})")

    def model_mel(self, path: Path, frames: int) -> torch.Tensor:
        """The model's mel for a clip of `frames` frames; ValueError("<reason>: <detail>")."""
        try:
            mel = load_file(str(path))["mel"].float()
        except (OSError, SafetensorError, KeyError) as e:
            raise ValueError(f"unreadable model mel: {path} ({e})") from None
        n_mels = self.mel_cfg.n_mels
        fits = mel.ndim == 2 and mel.shape[1] == n_mels and abs(mel.shape[0] - frames) <= MAX_MEL_SLACK
        if not fits:
            raise ValueError(
                f"model mel does not fit its clip: {path} is {tuple(mel.shape)}, the clip has {frames} "
                f"frames of {n_mels} bands"
            )
        if not torch.isfinite(mel).all():
            raise ValueError(f"model mel not finite: {path}")
        return mel

    def __len__(self) -> int:
        return len(self.paths)

    def seconds(self) -> float:
        return sum(w.shape[0] for w in self.wavs) / self.mel_cfg.sample_rate

    def batch(self, batch_size: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random segments: (mel [B, frames, n_mels], wav [B, frames * hop]).

        Clips are drawn in proportion to their length, starts uniformly; clips shorter than a
        segment are padded with silence. Uses torch's global RNG, so a resumed run (whose RNG
        state is restored) draws the same batches as an uninterrupted one."""
        lengths = torch.tensor([m.shape[0] for m in self.mels], dtype=torch.float)
        idx = torch.multinomial(lengths, batch_size, replacement=True)
        silence = torch.log(torch.tensor(self.mel_cfg.log_floor))
        mels, wavs = [], []
        for i in idx.tolist():
            mel, wav = self.mels[i], self.wavs[i]
            start = int(torch.randint(0, max(1, mel.shape[0] - frames + 1), ()).item())
            m = mel[start : start + frames]
            w = wav[start * self.hop : (start + frames) * self.hop]
            if m.shape[0] < frames:
                m = torch.cat([m, silence.expand(frames - m.shape[0], m.shape[1])])
                w = torch.nn.functional.pad(w, (0, frames * self.hop - w.shape[0]))
            mels.append(m)
            wavs.append(w)
        return torch.stack(mels), torch.stack(wavs)
