"""Server-side voice activity detection by frame energy, for hands-free turns.

Deliberately simple: a frame is "loud" when its RMS level is above a fixed floor and also
`margin_db` above the noise floor, the quietest frame of the last `noise_window_ms`
("minimum statistics": speech always has quiet gaps within a second or two, a fan or hum
does not, so steady noise stops counting as speech once it fills the window; a loud hum at
the very start of a stream is one spurious turn of about that window). Speech starts
after `min_speech_ms` of loud frames in a row (clicks and taps do not start a turn) and ends
after `silence_ms` without a loud frame. The utterance handed back keeps `preroll_ms` from
before the start (soft onsets such as "f" or "h" are quieter than the threshold) and a short
tail of the closing silence.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from flowomni.config import check_bounds
from flowomni.serving.vad_config import VadConfig

TAIL_MS = 150.0  # closing silence kept on the utterance


@dataclass
class VadEvent:
    kind: str  # "start" | "end"
    audio: np.ndarray | None = None  # for "end": the utterance, float32 at the stream's rate


def frame_db(frame: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dB)."""
    return float(frames_db(frame[None])[0])


def frames_db(frames: np.ndarray) -> np.ndarray:
    """`frame_db` of each row of [n, frame] at once (one numpy pass per message, not per frame)."""
    return 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)


class EnergyVAD:
    """Feed float32 PCM with `push`; get `start` when speech begins and `end` (with the
    utterance's audio) when it has been followed by enough silence."""

    def __init__(self, cfg: VadConfig, sample_rate: int) -> None:
        check_bounds(cfg, "vad")  # ConfigError naming the setting and its range
        self.cfg, self.sample_rate = cfg, sample_rate
        self.frame = max(1, round(sample_rate * cfg.frame_ms / 1000))
        ms_to_frames = lambda ms: max(1, math.ceil(ms / cfg.frame_ms))  # noqa: E731
        self.n_start = ms_to_frames(cfg.min_speech_ms)
        self.n_end = ms_to_frames(cfg.silence_ms)
        self.n_tail = min(self.n_end, ms_to_frames(TAIL_MS))
        self._pre: deque[np.ndarray] = deque(maxlen=ms_to_frames(cfg.preroll_ms) + self.n_start)
        self._window = ms_to_frames(cfg.noise_window_ms)
        # the window's levels that can still be its minimum, as (frame number, dB), rising:
        # the noise floor is the first, found in O(1) per frame whatever the window's length
        self._levels: deque[tuple[int, float]] = deque()
        self._heard = 0  # frames heard since the detector was made
        self.reset()

    def reset(self) -> None:
        """Forget any partial utterance (the noise floor is kept: it describes the room)."""
        self._rest = np.zeros(0, dtype=np.float32)
        self._pre.clear()
        self._speech: list[np.ndarray] | None = None
        self._loud_run = self._quiet_run = 0

    @property
    def in_speech(self) -> bool:
        return self._speech is not None

    @property
    def speech_seconds(self) -> float:
        return sum(len(f) for f in self._speech) / self.sample_rate if self._speech else 0.0

    @property
    def noise_db(self) -> float:
        """The quietest recent frame; until a whole window was heard, no more than
        `threshold_db - margin_db` (so speech at the very start of a stream still counts)."""
        floor = self._levels[0][1] if self._levels else 0.0
        if self._heard < self._window:
            floor = min(floor, self.cfg.threshold_db - self.cfg.margin_db)
        return floor

    def _note_level(self, db: float) -> None:
        while self._levels and self._levels[-1][1] >= db:
            self._levels.pop()
        self._levels.append((self._heard, db))
        self._heard += 1
        if self._levels[0][0] <= self._heard - 1 - self._window:
            self._levels.popleft()

    def is_loud(self, db: float) -> bool:
        return db > max(self.cfg.threshold_db, self.noise_db + self.cfg.margin_db)

    def push(self, pcm: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = np.concatenate([self._rest, np.asarray(pcm, dtype=np.float32)])
        n = len(data) // self.frame * self.frame
        self._rest = data[n:]
        frames = data[:n].reshape(-1, self.frame)
        for frame, db in zip(frames, frames_db(frames).tolist()):
            ev = self._frame(frame, db)
            if ev is not None:
                events.append(ev)
        return events

    def flush(self) -> np.ndarray | None:
        """End the utterance now (the client said its turn is over): its audio, or None when
        no speech had started."""
        audio = np.concatenate([*self._speech, self._rest]) if self._speech else None
        self.reset()
        return audio

    def is_speech(self, frame: np.ndarray, db: float) -> bool:
        """This frame's decision from its level `db` (subclasses decide differently, e.g. Silero;
        the segmenting is shared)."""
        loud = self.is_loud(db)
        self._note_level(db)
        return loud

    def _frame(self, frame: np.ndarray, db: float) -> VadEvent | None:
        loud = self.is_speech(frame, db)
        if self._speech is None:
            self._pre.append(frame)
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run >= self.n_start:
                self._speech, self._quiet_run = list(self._pre), 0
                self._pre.clear()
                return VadEvent("start")
            return None
        self._speech.append(frame)
        self._quiet_run = 0 if loud else self._quiet_run + 1
        if self._quiet_run < self.n_end:
            return None
        keep = len(self._speech) - (self._quiet_run - self.n_tail)
        audio = np.concatenate(self._speech[:keep])
        self._speech, self._loud_run, self._quiet_run = None, 0, 0
        return VadEvent("end", audio)
