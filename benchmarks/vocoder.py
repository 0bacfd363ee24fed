"""Vocoder quality and speed on held-out recordings of the answer voice.

For each held-out piper clip (never seen in vocoder training) the true log-mel is
resynthesised by every vocoder. Reported per vocoder:
  - wer: the independent ASR's (Whisper tiny.en) WER on the resyntheses against the known
    texts, next to its WER on the original recordings (the ceiling);
  - mcd_db: mel-cepstral distortion between resynthesis and original, from cepstra of the
    log-mel (orthonormal DCT, coefficients 1-24) over speech frames; no time warping: lengths
    are exact;
  - rtf: synthesis seconds per audio second on CPU (one-shot, one clip at a time, timed
    interleaved across vocoders so load drifts hit all alike), and stream_rtf for chunked
    synthesis (4-frame pushes, as the engine pushes mel groups) on 4 clips, with
    stream_over_one_shot, the median paired ratio to one-shot synthesis of the same clips
    timed interleaved (target <= 2, issue 21), and stream_paced_over_one_shot for the same
    pushes paced as decode steps at RTF 0.2 would pace them (the stream chunks by the time a
    listener has left: base.py). Timing runs before the ASR model is loaded:
    faster-whisper (CTranslate2) in the same process slows torch ~2x on a 2-core machine;
  - speed_vs_griffin_lim_32: how many times faster than Griffin-Lim-32 (median over repeats of
    the paired ratio), at each thread count of --threads (default 2 and 1).
Targets (issue 4): neural >= 10x faster than Griffin-Lim-32 at equal or better WER, RTF <= 0.05.

    python benchmarks/vocoder.py --json [--quick] [--neural models/vocoder] [--griffin-lim-iters 8 32 64]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from flowomni.audio import MelSpectrogram, answer_mel_config, load_audio
from flowomni.evaluation.asr import Transcriber
from flowomni.evaluation.intervals import paired_wer_difference
from flowomni.evaluation.text import wer
from flowomni.vocoder import NeuralVocoder, Vocoder, load_vocoder
from flowomni.vocoder.load import load_neural
from flowomni.vocoder.vocos import VOCODER_DTYPES

from common import emit, environment, peak_rss_mb, summary, time_interleaved

ROOT = Path(__file__).resolve().parent.parent
N_CEPSTRA = 24


def held_out(data_dir: Path, n: int) -> list[dict]:
    """The first `n` held-out clips: never a training sentence, rendered as the model's answers
    are (deterministic piper; the missing ones are made here)."""
    manifest = data_dir / "valid.jsonl"

    def read() -> list[dict]:
        return (
            [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
            if manifest.is_file()
            else []
        )

    lines = read()
    if len(lines) < n or any(
        x.get("rendering") != "answer" or not (data_dir / x["answer_audio"]).is_file() for x in lines[:n]
    ):
        from flowomni.vocoder.voice_data import splits, write_split

        _, valid = splits(600, n)  # the first clips stay what they were: the split is a prefix
        write_split(data_dir, "valid", valid, "answer")
        lines = read()
    lines = lines[:n]
    return [{"text": x["text"], "path": manifest.parent / x["answer_audio"]} for x in lines]


def cepstra(log_mel: torch.Tensor) -> torch.Tensor:
    """Mel-cepstra [T, N_CEPSTRA]: orthonormal DCT-II of the log-mel, c0 (energy) dropped."""
    n = log_mel.shape[-1]
    k = torch.arange(n, dtype=torch.float64)
    basis = torch.cos(math.pi / n * (k[None, :] + 0.5) * k[:, None]) * math.sqrt(2 / n)
    basis[0] /= math.sqrt(2)
    return (log_mel.double() @ basis.T)[:, 1 : N_CEPSTRA + 1]


def mcd_db(ref_mel: torch.Tensor, mel: torch.Tensor) -> float:
    """Mean mel-cepstral distortion (dB) over the reference's speech frames (mean log-mel
    within 40 dB of its loudest frame: the log floor of digital silence would dominate)."""
    level = ref_mel.mean(-1)
    speech = level > level.max() - math.log(100)
    diff = cepstra(ref_mel[speech]) - cepstra(mel[: ref_mel.shape[0]][speech])
    return float((10 / math.log(10)) * torch.sqrt(2 * (diff**2).sum(-1)).mean())


PACED_RTF = 0.2  # the decode steps' own RTF in the paced measurement (the shipped model's on 2 cores)


class PacedClock:
    """Wall time plus the time a decoder at `rtf` would have taken to make the frames pushed so
    far: a stream fed by it chunks as it would behind real decode steps (the pushes themselves
    come at once, so only the vocoder's work is timed)."""

    def __init__(self, rtf: float, frame_s: float) -> None:
        self.rtf, self.frame_s, self.offset = rtf, frame_s, 0.0

    def advance(self, frames: int) -> None:
        self.offset += self.rtf * frames * self.frame_s

    def __call__(self) -> float:
        return time.perf_counter() + self.offset


def stream_once(voc: Vocoder, mel: torch.Tensor, chunk: int = 4, paced_rtf: float = 0.0) -> np.ndarray:
    clock = PacedClock(paced_rtf, voc.hop_length / voc.sample_rate)
    s = voc.stream(clock=clock)
    parts = []
    for i in range(0, mel.shape[0], chunk):
        clock.advance(min(chunk, mel.shape[0] - i))
        parts.append(s.push(mel[i : i + chunk]))
    return np.concatenate([*parts, s.flush()])


def stream_calls_for(voc: Vocoder, mel: torch.Tensor, chunk: int = 4) -> int:
    """Windows a stream synthesises for one clip pushed `chunk` frames at a time."""
    s = voc.stream()
    for i in range(0, mel.shape[0], chunk):
        s.push(mel[i : i + chunk])
    s.flush()
    return s.calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="8 clips, 3 timing repeats")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "voice")
    ap.add_argument("--items", type=int, default=None, help="held-out clips (default 150, --quick 8)")
    ap.add_argument(
        "--neural",
        nargs="*",
        default=[str(ROOT / "models" / "vocoder")],
        metavar="[LABEL=]DIR",
        help="trained vocoder folders (export or training run/checkpoint); the first is the one the "
        "targets judge; none to skip",
    )
    ap.add_argument(
        "--neural-dtypes",
        nargs="+",
        default=["auto"],
        choices=VOCODER_DTYPES,
        help="ConvNeXt precisions to measure (auto: bf16 on CPUs with native bf16)",
    )
    ap.add_argument(
        "--eager",
        action="store_true",
        help="also time each neural vocoder with its trunk run eagerly (not a frozen TorchScript graph)",
    )
    ap.add_argument("--griffin-lim-iters", type=int, nargs="+", default=[32])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="torch threads to time at; the first is the one the targets judge (and the ASR uses)",
    )
    args = ap.parse_args()
    n_items = args.items or (8 if args.quick else 150)
    repeats = args.repeats or (3 if args.quick else 5)

    cfg = answer_mel_config()
    mel_fn = MelSpectrogram(cfg)
    items = held_out(args.data, n_items)
    wavs = [load_audio(it["path"], cfg.sample_rate) for it in items]
    with torch.inference_mode():
        mels = [mel_fn(torch.from_numpy(w)) for w in wavs]
    seconds = sum(m.shape[0] for m in mels) * cfg.hop_length / cfg.sample_rate
    texts = [it["text"] for it in items]

    vocoders: dict[str, Vocoder] = {
        f"griffin-lim-{n}": load_vocoder(f"griffin-lim-{n}", cfg) for n in args.griffin_lim_iters
    }
    for i, spec in enumerate(args.neural):
        label, _, path = spec.rpartition("=")
        label = label or ("neural" if i == 0 else Path(path).name)
        for dtype in args.neural_dtypes:
            key = label if args.neural_dtypes == ["auto"] else f"{label}-{dtype}"
            vocoders[key] = load_neural(path, cfg, dtype=dtype)
            if args.eager:
                vocoders[f"{key}-eager"] = load_neural(path, cfg, dtype=dtype, freeze=False)
    judged = next((k for k, v in vocoders.items() if isinstance(v, NeuralVocoder)), None)

    def synth_all(voc: Vocoder):
        return lambda: [voc(m) for m in mels]

    # speed first: the ASR model, once loaded, slows torch in this process (see the docstring)
    times_by_threads = {}
    for threads in reversed(args.threads):  # ends at the first: streaming and ASR run there
        torch.set_num_threads(threads)
        times_by_threads[threads] = time_interleaved(
            {k: synth_all(v) for k, v in vocoders.items()}, repeats=repeats, warmup=1
        )
    few = mels[:4]
    few_s = sum(m.shape[0] for m in few) * cfg.hop_length / cfg.sample_rate
    # streamed (one group of 4 frames per push, as the engine pushes) against one-shot on the
    # same clips, interleaved: the paired ratio is what the target judges
    stream_fns = {}
    for k, v in vocoders.items():
        stream_fns[k] = lambda v=v: [stream_once(v, m) for m in few]
        stream_fns[f"{k} paced"] = lambda v=v: [stream_once(v, m, paced_rtf=PACED_RTF) for m in few]
        stream_fns[f"{k} one-shot"] = lambda v=v: [v(m) for m in few]
    stream_times = time_interleaved(stream_fns, repeats=repeats, warmup=1)
    stream_calls = {k: statistics.mean(stream_calls_for(v, m) for m in few) for k, v in vocoders.items()}
    outputs = {name: [voc(m).numpy() for m in mels] for name, voc in vocoders.items()}

    asr = Transcriber()
    original = asr.transcribe_many(wavs, cfg.sample_rate)
    result: dict = {
        "benchmark": "vocoder",
        "environment": environment(),
        "items": len(items),
        "audio_seconds": round(seconds, 2),
        "original": {"wer": wer(texts, original)},
        "vocoders": {},
    }
    heard_by: dict[str, list[str]] = {}
    for name, voc in vocoders.items():
        outs = outputs[name]
        heard = asr.transcribe_many(outs, cfg.sample_rate)
        with torch.inference_mode():
            mcd = [mcd_db(m, mel_fn(torch.from_numpy(o))) for m, o in zip(mels, outs)]
        entry = {"wer": wer(texts, heard), "mcd_db": float(np.mean(mcd))}
        heard_by[name] = heard
        if isinstance(voc, NeuralVocoder):
            entry["parameters"] = voc.num_parameters()
            entry["dtype"] = voc.dtype
            entry["frozen"] = voc.frozen
        entry["stream_lookahead_ms"] = round(voc.lookahead_frames * 1000 / cfg.frame_rate, 1)
        entry["errors"] = [{"text": t, "heard": h} for t, h in zip(texts, heard) if wer([t], [h]) > 0][:5]
        rtf = {t: summary(ts[name])["median_s"] / seconds for t, ts in times_by_threads.items()}
        entry.update(
            rtf=rtf[args.threads[0]],
            time_s=summary(times_by_threads[args.threads[0]][name]),
            stream_rtf=statistics.median(stream_times[name]) / few_s,
            stream_one_shot_rtf=statistics.median(stream_times[f"{name} one-shot"]) / few_s,
            stream_over_one_shot=statistics.median(
                a / b for a, b in zip(stream_times[name], stream_times[f"{name} one-shot"])
            ),
            stream_paced_over_one_shot=statistics.median(
                a / b for a, b in zip(stream_times[f"{name} paced"], stream_times[f"{name} one-shot"])
            ),
            stream_calls_per_clip=stream_calls[name],
            rtf_by_threads=rtf,
        )
        result["vocoders"][name] = entry
    gl32 = result["vocoders"].get("griffin-lim-32")
    if gl32 is not None:
        for name, entry in result["vocoders"].items():
            # per repeat, then the median: a paired ratio, so load drift between repeats cancels
            speed = {
                t: statistics.median(g / v for g, v in zip(ts["griffin-lim-32"], ts[name]))
                for t, ts in times_by_threads.items()
            }
            entry["speed_vs_griffin_lim_32"] = speed[args.threads[0]]
            entry["speed_vs_griffin_lim_32_by_threads"] = speed
            if name != "griffin-lim-32":
                entry["wer_minus_griffin_lim_32"] = paired_wer_difference(
                    texts, heard_by[name], heard_by["griffin-lim-32"]
                )
    if judged is not None and gl32 is not None:
        neural = result["vocoders"][judged]
        result["targets"] = {
            "judged": judged,
            "threads": args.threads[0],
            "neural_10x_faster_than_gl32": neural["speed_vs_griffin_lim_32"] >= 10,
            "neural_wer_not_worse_than_gl32": neural["wer"] <= gl32["wer"],
            "neural_rtf_at_most_0.05": neural["rtf"] <= 0.05,
            "neural_stream_at_most_2x_one_shot": neural["stream_over_one_shot"] <= 2,
        }
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    emit(result, args.json)


if __name__ == "__main__":
    main()
