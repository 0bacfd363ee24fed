"""Vocoders: mel frames -> waveform (Griffin-Lim, and a Vocos-style neural vocoder).

voc = load_vocoder("griffin-lim" | "griffin-lim-N" | "models/vocoder", answer_mel_config())
wav = voc(mel)                      # [T, n_mels] -> [T * hop]; batches too
s = voc.stream(); s.push(chunk) ... s.flush()
"""

from flowomni.vocoder.base import Vocoder, VocoderStream
from flowomni.vocoder.griffin_lim import GriffinLim
from flowomni.vocoder.load import VocoderError, load_neural, load_vocoder
from flowomni.vocoder.vocos import NeuralVocoder, VocosConfig, VocosGenerator

__all__ = [
    "GriffinLim",
    "NeuralVocoder",
    "Vocoder",
    "VocoderError",
    "VocoderStream",
    "VocosConfig",
    "VocosGenerator",
    "load_neural",
    "load_vocoder",
]
