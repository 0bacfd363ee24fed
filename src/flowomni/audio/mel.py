"""Log-mel spectrograms with torch.stft and a Slaney-style mel filterbank.

The same code serves two configurations: the encoder's input features (16 kHz, Whisper-like)
and the speaker's output features (the answer voice's rate, predicted by the flow head and
consumed by the vocoder). Both are described by a `MelConfig` stored with each checkpoint.

Two styles: "natural" (natural log of the magnitude mel, floored: what the flow head draws and
the vocoders read) and "whisper" (exactly Whisper's front end, which a pretrained Whisper
encoder needs: power mel, log10, clamped at the clip's max - 8, then (x + 4) / 4; the clip is
padded with 160 zero samples and the last frame dropped, as faster-whisper does).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from flowomni.config import Bounds


@dataclass
class MelConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "sample_rate": (1000, 384000),
        "n_fft": (8, 16384),
        "hop_length": (1, 16384),
        "win_length": (1, 16384),
        "n_mels": (1, 512),
        "f_min": (0, None),
        "f_max": (0, None),
        "log_floor": (1e-12, 1.0),
    }

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    win_length: int | None = None
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-5  # log(max(mel, floor)): bounds the dynamic range of silence ("natural")
    style: str = "natural"  # or "whisper" (see the module docstring)

    def __post_init__(self) -> None:
        if self.style not in MEL_STYLES:
            raise ValueError(f"mel style must be one of {MEL_STYLES}, got {self.style!r}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def fingerprint(self) -> str:
        """Stable short hash; feature caches key on it so a config change invalidates them."""
        fields = asdict(self)
        if fields["style"] == "natural":  # configs from before the field existed keep their hash
            del fields["style"]
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


MEL_STYLES = ("natural", "whisper")
WHISPER_PAD = 160  # samples faster-whisper appends before its STFT (then drops the last frame)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    mel = f / f_sp
    log_region = f >= min_log_hz
    return torch.where(log_region, min_log_hz / f_sp + torch.log(f / min_log_hz) / logstep, mel)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Slaney-normalised triangular filters, shape [n_mels, n_fft // 2 + 1] (as librosa)."""
    f_max = f_max or sample_rate / 2
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_pts = torch.linspace(
        _hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_pts = _mel_to_hz(mel_pts)
    fdiff = hz_pts[1:] - hz_pts[:-1]
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    enorm = 2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels])
    return (weights * enorm[:, None]).float()


class MelSpectrogram(torch.nn.Module):
    """waveform [..., samples] -> natural-log mel [..., frames, n_mels].

    Frames are centred (reflect padding), so frame i covers sample i * hop_length; a clip
    of N samples gives N // hop + 1 frames.
    """

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        win = cfg.win_length or cfg.n_fft
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("fb", fb, persistent=False)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude [..., frames, n_fft//2+1]."""
        shape = wav.shape[:-1]
        x = wav.reshape(-1, wav.shape[-1]).float()
        pad = self.cfg.n_fft // 2
        if x.shape[-1] <= pad:  # reflect padding needs more samples than the pad
            x = torch.nn.functional.pad(x, (0, pad + 1 - x.shape[-1]))
        spec = torch.stft(
            x,
            self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length or self.cfg.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mag = spec.abs().transpose(-1, -2)
        return mag.reshape(*shape, *mag.shape[-2:])

    def frames(self, samples: int) -> int:
        """How many frames the mel of a clip of `samples` samples has, without computing it
        (the padding of `magnitude`, and Whisper's pad-and-drop-last)."""
        if self.cfg.style == "whisper":
            return self._stft_frames(samples + WHISPER_PAD) - 1
        return self._stft_frames(samples)

    def _stft_frames(self, samples: int) -> int:
        return max(samples, self.cfg.n_fft // 2 + 1) // self.cfg.hop_length + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if self.cfg.style == "whisper":
            return self.whisper(wav)
        mel = self.magnitude(wav) @ self.fb.T
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))

    def whisper(self, wav: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of one clip or a batch of equal-length clips (the clamp at max - 8
        is per clip): [..., samples] -> [..., samples // hop + 1, n_mels]."""
        wav = torch.nn.functional.pad(wav.float(), (0, WHISPER_PAD))
        mel = self.magnitude(wav)[..., :-1, :].square() @ self.fb.T
        log = torch.log10(torch.clamp(mel, min=1e-10))
        peak = log.flatten(-2).amax(-1)[..., None, None]
        return (torch.maximum(log, peak - 8.0) + 4.0) / 4.0


def input_mel_config(style: str = "natural") -> MelConfig:
    """The encoder's features: Whisper-compatible 16 kHz, 80 bins, 100 frames/s."""
    return MelConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, style=style)


def answer_mel_config() -> MelConfig:
    """The speaker's features (flow head targets, vocoder input): the piper answer voice's
    22.05 kHz, 80 bins over the full band, ~86 frames/s."""
    return MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80)
