"""Silero VAD for server-side turn detection, on onnxruntime.

The `silero-vad` wheel ships its ONNX model; the package itself imports torch and declares
torchaudio (which does not work with this project's torch), so it is installed with
`--no-deps` and only its model file is used here: found on disk without importing the
package, run with onnxruntime. The model scores 32 ms windows of 16 kHz audio (512 samples
plus the previous window's last 64 as context, and a recurrent state) with a speech
probability. Segmenting (minimum speech, closing silence, pre-roll, the utterance handed
back) is EnergyVAD's, so both detectors end turns by the same rules and differ only in how
a frame is judged.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from flowomni.audio.stream_resample import StreamResampler
from flowomni.serving.vad import EnergyVAD
from flowomni.serving.vad_config import VadConfig

RATE = 16000
WINDOW = 512  # samples per decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees
HYSTERESIS = 0.15  # once in speech, frames stay speech down to threshold - this (Silero's own rule)


class SileroUnavailable(RuntimeError):
    """The silero-vad wheel (its ONNX model) is not installed."""


def model_path() -> Path:
    spec = importlib.util.find_spec("silero_vad")  # finds the package without running its torch imports
    if spec is None or not spec.submodule_search_locations:
        raise SileroUnavailable(
            "the Silero VAD needs the silero-vad package (`pip install --no-deps silero-vad`); "
            "or choose the energy detector (vad.kind=energy)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise SileroUnavailable(f"the silero-vad package has no model at {path}")
    return path


@functools.lru_cache(maxsize=1)
def onnx_session() -> Any:
    """One inference session for every detector: the model's state is an input, so it is shared
    safely (onnxruntime sessions may be run from several threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # 0.2 ms a window; threads only add overhead
    return ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])


class SileroVAD(EnergyVAD):
    """Same interface and segmenting as EnergyVAD; a frame is speech when Silero says so."""

    def __init__(self, cfg: VadConfig, sample_rate: int) -> None:
        super().__init__(dataclasses.replace(cfg, frame_ms=1000 * WINDOW / RATE), sample_rate)
        self.session = onnx_session()
        self.resampler = StreamResampler(sample_rate, RATE) if sample_rate != RATE else None
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self.probability = 0.0  # the latest window's speech probability

    def _score(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[None, :]
        out, self._state = self.session.run(
            None, {"input": x, "state": self._state, "sr": np.array(RATE, dtype=np.int64)}
        )
        self._context = window[-CONTEXT:]
        return float(out[0, 0])

    def is_speech(self, frame: np.ndarray, db: float) -> bool:
        x = self.resampler.push(frame) if self.resampler is not None else frame
        self._pending = np.concatenate([self._pending, x.astype(np.float32, copy=False)])
        while len(self._pending) >= WINDOW:
            self.probability = self._score(self._pending[:WINDOW])
            self._pending = self._pending[WINDOW:]
        floor = self.cfg.threshold - HYSTERESIS if self.in_speech else self.cfg.threshold
        return self.probability >= floor
