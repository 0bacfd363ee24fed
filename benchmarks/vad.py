"""Turn detection compared: Silero VAD vs the energy VAD, on spoken questions in noise.

Each question clip is streamed in 20 ms chunks, as a microphone sends it, with `--lead` s of
background before it and `--tail` s after, and noise mixed in at 20/10/5/0 dB SNR (the SNR
of the speech part; white, pink and babble noise from flowomni.data.augment). The truth is
where the clean clip's speech begins and ends (frames within 35 dB of its loudest). For each
detector and condition it counts:

- missed: no detected turn overlaps the question;
- cut: a turn ended before the question did (it would be answered half-heard);
- false starts: turns that overlap no speech (also on noise-only clips, per minute);
- late end: the question's turn ended more than `silence_ms + 300` ms after the speech, or
  never;
- start / end latency: when the detector said so, relative to the true start / end.

- early start: the question's turn began in the noise before it (>= 100 ms early).

Before each stream the detector hears `--warmup` s of the same background, unscored, as in a
session that is already listening (`--warmup 0`: a fresh detector per question). What a
fresh detector does with background alone is the noise-only count. Both detectors run with
the server's defaults (VadConfig) and their own threshold.

    python benchmarks/vad.py --manifest /tmp/qs/test.jsonl --limit 200 --json > reports/vad.json
    python benchmarks/vad.py --json --quick          # the examples/ questions only

To build a test split: `flowomni data synth /tmp/qs --size 1000 --test-frac 0.2 --no-unseen-voices`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.audio.io import load_audio  # noqa: E402
from flowomni.data.augment import make_noise  # noqa: E402
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.serving.detectors import make_vad  # noqa: E402
from flowomni.serving.vad_config import VadConfig  # noqa: E402

from common import describe, emit, environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHUNK_S = 0.02
SNRS = (None, 20.0, 10.0, 5.0, 0.0)  # None: clean (no noise)
KINDS = ("white", "pink", "babble")
LATE_SLACK_S = 0.3
EARLY_S = 0.1  # a turn that starts this long before the speech began in the noise


def speech_bounds(wav: np.ndarray, sr: int, below_peak_db: float = 35.0) -> tuple[float, float]:
    """(start, end) in seconds of the clean clip's speech: frames within `below_peak_db` of its loudest."""
    hop = sr // 100
    n = len(wav) // hop
    db = 10 * np.log10(np.mean(wav[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - below_peak_db)
    return loud[0] * hop / sr, (loud[-1] + 1) * hop / sr


def segments(
    kind: str, cfg: VadConfig, stream: np.ndarray, sr: int, warmup: np.ndarray | None = None
) -> tuple[list[tuple[float, float]], float]:
    """Turns the detector finds in `stream`, fed in 20 ms chunks: [(start, end)] in seconds
    (when it said so; end = inf when the stream ended inside a turn), and its CPU seconds.
    `warmup` is heard first and not scored (a session already listening in that room: the
    detector keeps what it learnt of the background, and forgets any turn in progress)."""
    vad = make_vad(dataclasses.replace(cfg, kind=kind), sr)
    step = round(sr * CHUNK_S)
    if warmup is not None:
        for i in range(0, len(warmup), step):
            vad.push(warmup[i : i + step])
        vad.reset()
    out: list[tuple[float, float]] = []
    start = None
    t0 = time.process_time()
    for i in range(0, len(stream), step):
        now = min(len(stream), i + step) / sr
        for ev in vad.push(stream[i : i + step]):
            if ev.kind == "start":
                start = now
            else:
                out.append((start if start is not None else now, now))
                start = None
    cpu = time.process_time() - t0
    if start is not None:
        out.append((start, float("inf")))
    return out, cpu


def score(segs: list[tuple[float, float]], t0: float, t1: float, silence_s: float) -> dict[str, Any]:
    """One clip's outcome, speech at [t0, t1]."""
    cover = [(a, b) for a, b in segs if a <= t1 + silence_s and b >= t0]
    false = len(segs) - len(cover)
    if not cover:
        return {"missed": True, "cut": False, "false_starts": false, "late_end": False}
    end = cover[-1][1]
    return {
        "missed": False,
        "cut": any(b < t1 for _, b in cover),
        "false_starts": false,
        "early_start": cover[0][0] < t0 - EARLY_S,
        "late_end": end > t1 + silence_s + LATE_SLACK_S,
        "start_ms": 1000 * (cover[0][0] - t0),
        "end_ms": 1000 * (end - t1) if np.isfinite(end) else None,
    }


def questions(args: argparse.Namespace, sr: int) -> list[np.ndarray]:
    if args.manifest and not args.quick:
        items, _ = read_manifest(args.manifest)
        return [load_audio(it.question_audio, sr) for it in items[: args.limit] if it.question_audio is not None]
    return [load_audio(p, sr) for p in sorted((REPO / "examples").glob("question_*.wav"))]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    start = [r["start_ms"] for r in rows if "start_ms" in r]
    end = [r["end_ms"] for r in rows if r.get("end_ms") is not None]
    return {
        "n": n,
        "missed_pct": 100 * sum(r["missed"] for r in rows) / n,
        "cut_pct": 100 * sum(r["cut"] for r in rows) / n,
        "early_start_pct": 100 * sum(r.get("early_start", False) for r in rows) / n,
        "false_starts_per_clip": sum(r["false_starts"] for r in rows) / n,
        "late_end_pct": 100 * sum(r["late_end"] or r.get("end_ms", 0) is None for r in rows) / n,
        "start_ms": describe(start) if start else None,
        "end_ms": describe(end) if end else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sr = args.rate
    cfg = VadConfig()
    rng = np.random.default_rng(args.seed)
    clips = questions(args, sr)
    if not clips:
        raise SystemExit("no question clips found")
    lead, tail = round(args.lead * sr), round(args.tail * sr)
    results: dict[str, Any] = {vad: {} for vad in args.vads}
    cpu = {vad: 0.0 for vad in args.vads}
    audio_s = 0.0
    conditions = [("clean", None, None)] + [
        (f"{k}_{snr:g}dB", k, snr) for snr in SNRS if snr is not None for k in args.noise
    ]
    for name, kind, snr in conditions:
        rows: dict[str, list[dict[str, Any]]] = {vad: [] for vad in args.vads}
        for wav in clips:
            t0, t1 = speech_bounds(wav, sr)
            stream = np.concatenate([np.zeros(lead, np.float32), wav, np.zeros(tail, np.float32)])
            warm = np.zeros(round(args.warmup * sr), np.float32)
            if kind is not None:
                p_speech = float(np.mean(wav[int(t0 * sr) : int(t1 * sr)].astype(np.float64) ** 2))
                noise = make_noise(kind, len(warm) + len(stream), sr, rng) * np.sqrt(p_speech / 10 ** (snr / 10))
                warm, stream = noise[: len(warm)].astype(np.float32), stream + noise[len(warm) :]
            stream = np.clip(stream, -1, 1).astype(np.float32)
            audio_s += len(stream) / sr
            for vad in args.vads:
                segs, c = segments(vad, cfg, stream, sr, warm if args.warmup else None)
                cpu[vad] += c
                rows[vad].append(score(segs, t0 + args.lead, t1 + args.lead, cfg.silence_ms / 1000))
        for vad in args.vads:
            results[vad][name] = summarise(rows[vad])
    # noise alone, at the levels the SNRs above put it for a speaker at -20 dBFS RMS
    noise_only: dict[str, Any] = {vad: {} for vad in args.vads}
    n_noise = round(args.noise_seconds * sr)
    for snr in (s for s in SNRS if s is not None):
        for kind in args.noise:
            level = 10 ** ((-20 - snr) / 20)
            counts = {vad: 0 for vad in args.vads}
            for _ in range(args.noise_clips):
                stream = (make_noise(kind, n_noise, sr, rng) * level).astype(np.float32)
                for vad in args.vads:
                    segs, _ = segments(vad, cfg, stream, sr)
                    counts[vad] += len(segs)
            minutes = args.noise_clips * args.noise_seconds / 60
            for vad in args.vads:
                noise_only[vad][f"{kind}_{-20 - snr:g}dBFS"] = round(counts[vad] / minutes, 2)
    return {
        "benchmark": "vad",
        "environment": environment(),
        "sample_rate": sr,
        "clips": len(clips),
        "lead_s": args.lead,
        "tail_s": args.tail,
        "warmup_s": args.warmup,
        "vad_config": dataclasses.asdict(cfg),
        "late_end_after_ms": cfg.silence_ms + 1000 * LATE_SLACK_S,
        "results": results,
        "noise_only_false_starts_per_minute": noise_only,
        "cpu_ms_per_audio_second": {v: round(1000 * cpu[v] / audio_s, 3) for v in args.vads},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=None, help="a manifest whose question audio is used (the test split)")
    p.add_argument("--limit", type=int, default=200, help="questions from the manifest")
    p.add_argument("--quick", action="store_true", help="the examples/ questions only")
    p.add_argument("--vads", nargs="+", default=["silero", "energy"])
    p.add_argument("--noise", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--rate", type=int, default=24000, help="stream sample rate (the Realtime API's 24 kHz)")
    p.add_argument("--lead", type=float, default=2.0, help="seconds of background before each question")
    p.add_argument("--tail", type=float, default=2.0, help="seconds after it")
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of the same background heard (not scored) "
        "before each stream: a session already listening; 0: a fresh detector per question",
    )
    p.add_argument("--noise-clips", type=int, default=10, help="noise-only clips per noise kind and level")
    p.add_argument("--noise-seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    emit(run(args), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
