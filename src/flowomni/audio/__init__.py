"""Audio front end: decoding, resampling and log-mel features (torch.stft, no torchaudio)."""

from flowomni.audio.io import AudioError, load_audio, save_audio
from flowomni.audio.mel import (
    MelConfig,
    MelSpectrogram,
    answer_mel_config,
    input_mel_config,
    mel_filterbank,
)
from flowomni.audio.stats import FeatureStats

__all__ = [
    "AudioError",
    "FeatureStats",
    "MelConfig",
    "MelSpectrogram",
    "answer_mel_config",
    "input_mel_config",
    "load_audio",
    "mel_filterbank",
    "save_audio",
]
