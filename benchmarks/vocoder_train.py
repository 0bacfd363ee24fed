"""Vocoder training speed: seconds per step and audio seconds trained per second.

Times `VocoderTrainer.step` (forward, losses, backward, AdamW; the discriminators' update too
in the adversarial phase) on batches of random audio (speed does not depend on what the
audio says), for each model size x phase (reconstruction / GAN) x precision (fp32 / bf16
autocast), interleaved in one process. Ratios are paired (same repeat): gan_vs_reconstruction
and bf16_speedup. Use it to size a run: hours = max_steps * s_per_step / 3600.

    python benchmarks/vocoder_train.py --json [--device cuda] [--batch 16 64] [--sizes shipped wide]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from flowomni.config import load_config
from flowomni.vocoder.train import VocoderTrainConfig, VocoderTrainer

from common import emit, environment, peak_rss_mb, summary, time_interleaved

ROOT = Path(__file__).resolve().parent.parent
SIZES = {  # --set overrides of configs/vocoder.yaml
    "shipped": [],  # dim 128, 6 layers: ~0.8 M parameters, fast on a CPU
    "wide": ["model.dim=512", "model.intermediate=1536", "model.layers=8"],  # Vocos' size, for GPUs
}
PHASES = {"reconstruction": "train.gan_start_step=1000000000", "gan": "train.gan_start_step=0"}
PRECISIONS = {"fp32": "train.mixed_precision=fp32", "bf16": "train.mixed_precision=bf16"}


def trainer_for(size: str, phase: str, precision: str, device: str, batch: int) -> VocoderTrainer:
    overrides = [
        *SIZES[size],
        PHASES[phase],
        PRECISIONS[precision],
        f"train.device={device}",
        f"data.batch_size={batch}",
    ]
    return VocoderTrainer(load_config(VocoderTrainConfig, ROOT / "configs" / "vocoder.yaml", overrides))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:N")
    ap.add_argument("--batch", type=int, nargs="+", default=[16])
    ap.add_argument("--sizes", nargs="+", default=["shipped"], choices=sorted(SIZES))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=sorted(PRECISIONS))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    results: dict[str, dict] = {}
    for size in args.sizes:
        for batch in args.batch:
            trainers = {
                f"{size}/b{batch}/{phase}/{prec}": trainer_for(size, phase, prec, args.device, batch)
                for phase in PHASES
                for prec in args.precisions
            }
            first = next(iter(trainers.values()))
            cfg = first.cfg
            frames = cfg.data.segment_frames
            gen = torch.Generator().manual_seed(0)
            wav = 0.1 * torch.randn(batch, frames * cfg.mel.hop_length, generator=gen)
            mel = first.mel_loss.mel(wav.to(first.device)).cpu()[:, :frames]
            if first.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = time_interleaved(
                {k: (lambda t=t, mel=mel, wav=wav: t.step(mel, wav)) for k, t in trainers.items()},
                repeats=args.repeats,
                warmup=2,
            )
            audio_s = batch * frames * cfg.mel.hop_length / cfg.mel.sample_rate
            params_m = sum(p.numel() for p in first.generator.parameters()) / 1e6
            for key, ts in times.items():
                s = statistics.median(ts)
                results[key] = {
                    **summary(ts),
                    "audio_s_per_s": audio_s / s,
                    "batch": batch,
                    "segment_frames": frames,
                    "device": str(first.device),
                    "generator_params_m": params_m,
                }
            for prec in args.precisions:
                g, r = times[f"{size}/b{batch}/gan/{prec}"], times[f"{size}/b{batch}/reconstruction/{prec}"]
                results[f"{size}/b{batch}/gan/{prec}"]["gan_vs_reconstruction"] = statistics.median(
                    a / b for a, b in zip(g, r)
                )
            if {"fp32", "bf16"} <= set(args.precisions):
                for phase in PHASES:
                    f, b = times[f"{size}/b{batch}/{phase}/fp32"], times[f"{size}/b{batch}/{phase}/bf16"]
                    results[f"{size}/b{batch}/{phase}/bf16"]["bf16_speedup"] = statistics.median(
                        a / c for a, c in zip(f, b)
                    )
            if first.device.type == "cuda":
                results[f"{size}/b{batch}/peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            del trainers, first
    emit(
        {"benchmark": "vocoder_train", "environment": environment(), "results": results, "peak_rss_mb": peak_rss_mb()},
        args.json,
    )


if __name__ == "__main__":
    main()
