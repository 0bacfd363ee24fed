"""Does `flowomni train` keep the device busy? Its frames/s against its model's own step.

Writes a synthetic spoken-QA corpus (noise clips with the shapes train_throughput.py uses:
questions and answers of the given seconds, +-20 %), warms its feature cache, then runs, each
in its own process: train_throughput.py (the bare model step on one fixed batch: the ceiling)
and `flowomni train` on the corpus for `--steps` steps with the same config, batch and
precision (speech-to-speech only, no history, no evaluation). Reports the loop's frames/s
(median over its log windows after the first, so start-up does not count) over the step's
(target >= 0.8, issue 21), and how long the loop took to start.

    python benchmarks/train_loop.py --json                                           # tiny, CPU
    python benchmarks/train_loop.py --config configs/paper_scale.yaml --device cuda --batch 16 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import emit, environment

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def write_corpus(root: Path, items: int, q_seconds: float, a_seconds: float, seed: int = 0) -> Path:
    """Noise clips (16 kHz questions, 22.05 kHz answers) and a manifest; speed does not depend
    on what the audio says."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(items):
        jitter = 1 + 0.2 * (i % 3 - 1)
        q, a = f"audio/q{i}.wav", f"audio/a{i}.wav"
        sf.write(root / q, (0.05 * rng.standard_normal(int(16000 * q_seconds * jitter))).astype(np.float32), 16000)
        sf.write(root / a, (0.05 * rng.standard_normal(int(22050 * a_seconds * jitter))).astype(np.float32), 22050)
        lines.append(
            json.dumps(
                {
                    "id": f"train-{i:06d}",
                    "question_text": "What is seven plus two?",
                    "answer_text": "Seven plus two is nine.",
                    "question_audio": q,
                    "answer_audio": a,
                    "kind": "qa",
                }
            )
        )
    manifest = root / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run(cmd: list[str], timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if there is one)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: the config's)")
    ap.add_argument("--question-seconds", type=float, default=2.0)
    ap.add_argument("--answer-seconds", type=float, default=2.5)
    ap.add_argument("--repeats", type=int, default=5, help="model steps timed by train_throughput.py")
    ap.add_argument("--timeout", type=float, default=900, help="per process")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    py = sys.executable
    step = json.loads(
        run(
            [
                py,
                str(HERE / "train_throughput.py"),
                "--config",
                args.config,
                "--batch",
                str(args.batch),
                "--question-seconds",
                str(args.question_seconds),
                "--answer-seconds",
                str(args.answer_seconds),
                "--repeats",
                str(args.repeats),
                "--device",
                device,
                "--json",
            ],
            args.timeout,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_corpus(
            root / "corpus", args.batch * (args.steps + 2), args.question_seconds, args.answer_seconds
        )
        sets = [
            "run_dir=" + str(root / "run"),
            f"data.train_manifest={manifest}",
            'data.valid_manifest=""',
            f"data.cache_dir={root / 'cache'}",
            "data.tasks=[s2s]",
            "data.stage1_tasks=[asr]",
            "data.history_prob=0",
            'data.text_manifest=""',
            f"train.batch_size={args.batch}",
            f"train.max_steps={args.steps}",
            "train.eval_every=1000000",
            "train.save_every=1000000",
            "train.log_every=5",
            "train.tensorboard=false",
            "train.warmup_steps=0",
            "model.encoder.pretrained=null",
            'init_from=""',
        ]
        if args.workers is not None:
            sets.append(f"train.num_workers={args.workers}")
        cfg_path = root / "config.yaml"
        cfg_path.write_text(f"base: {Path(args.config).resolve()}\n")
        t0 = time.perf_counter()
        run(
            [
                py,
                "-m",
                "flowomni.cli",
                "data",
                "features",
                "--from-config",
                str(cfg_path),
                str(manifest),
                "--cache",
                str(root / "cache"),
                "--workers",
                "4",
            ],
            args.timeout,
        )
        features_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        env_device = [] if device.startswith("cuda") else ["env", "CUDA_VISIBLE_DEVICES="]
        run(
            [*env_device, py, "-m", "flowomni.cli", "train", str(cfg_path), *[x for s in sets for x in ("--set", s)]],
            args.timeout,
        )
        train_s = time.perf_counter() - t0
        logs = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    windows = [r["frames_per_s"] for r in logs if "frames_per_s" in r]
    loop_fps = statistics.median(windows[1:] or windows)
    result = {
        "benchmark": "train_loop",
        "config": args.config,
        "device": device,
        "batch": args.batch,
        "steps": args.steps,
        "model_step_frames_per_s": step["frames_per_s"],
        "loop_frames_per_s": round(loop_fps, 1),
        "loop_windows_frames_per_s": [round(w, 1) for w in windows],
        "loop_over_model_step": round(loop_fps / step["frames_per_s"], 3),
        "target_loop_over_model_step": 0.8,
        "feature_cache_s": round(features_s, 1),
        "train_process_s": round(train_s, 1),
        "model_step": step,
        "environment": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
