"""The training loop: one code path for CPU, one GPU and `accelerate launch` (DDP/FSDP).

Exact resumption is designed in rather than hoped for: batch order is a pure function of
(seed, epoch) (see sampler.py), the random numbers of each optimizer step are seeded from
(seed, step, rank), and a checkpoint records the data position at a step boundary. A run
resumed from step N therefore replays steps N+1... exactly as the uninterrupted run would.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from flowomni.checkpoint import (
    latest_checkpoint,
    load_meta,
    load_training_state,
    load_weights_into,
    nonfinite_tensors,
    prune_checkpoints,
    save_checkpoint,
    step_dir,
)
from flowomni.training.config import TrainConfig
from flowomni.training.guard import NonFiniteGuard, TrainingDiverged
from flowomni.training.optim import build_optimizer, warmup_cosine
from flowomni.training.runlog import RunLog
from flowomni.training.sampler import BucketBatchSampler
from flowomni.training.sharding import FullStateOptimizer, check_sharding, full_model_state, shard_model

log = logging.getLogger(__name__)
LOSS_KEYS = ("loss", "text_ce", "flow", "state_ce")


class RunDirError(ValueError):
    """The run folder holds an earlier run that this one would overwrite."""


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs

    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Without a GPU, a multi-process launch (torchrun / accelerate launch) is multi-CPU with gloo.
    # A batch may lack whole modalities (no question audio, no spoken answer), leaving the
    # encoder or mel projections unused; DDP must know, or their gradients go un-averaged.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**31 - 1)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def make_loader(
    dataset: Dataset, batches: list[list[int]], collate_fn: Callable, cfg: TrainConfig, device: torch.device
) -> DataLoader:
    """Batches made by `num_workers` processes, each `prefetch` batches ahead, into pinned
    memory on a GPU (so `to_device`'s copies do not block the host)."""
    workers = cfg.num_workers
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=cfg.prefetch if workers else None,
        persistent_workers=False,
    )


class Position:
    """Where in the data stream the next micro-batch comes from."""

    def __init__(self, epoch: int = 0, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch


def train(
    model: torch.nn.Module,
    train_set: Dataset,
    valid_set: Dataset | None,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
    cfg: TrainConfig,
    run_dir: Path,
    *,
    config_yaml: str,
    files: dict[str, str | bytes] | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    accelerator: Any | None = None,
    after_load: Callable[[torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train `model` (a module whose forward(batch) returns a dict with "loss") and return
    the final metrics. Checkpoints go to `run_dir/step_*`. `after_load(model)` runs once the
    weights are in place (fresh or resumed), e.g. to swap in a pretrained encoder."""
    acc = accelerator or make_accelerator(cfg)
    run_dir = Path(run_dir)
    stop_at = min(cfg.max_steps, max_steps) if max_steps else cfg.max_steps
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    check_sharding(cfg.sharding)
    sharded = cfg.sharding == "fsdp" and acc.num_processes > 1
    start = start_or_resume(model, cfg, acc, run_dir, resume=resume, sharded=sharded, after_load=after_load)
    step, pos, scheduler = start.step, start.pos, start.scheduler
    raw_model = model
    if sharded:  # already distributed: accelerate must not wrap it in DDP as well
        optimizer = acc.prepare(start.optimizer)
    else:
        model, optimizer = acc.prepare(model, start.optimizer)
    runlog = (
        RunLog(run_dir, tensorboard=cfg.tensorboard, resume_step=step if resume else None)
        if acc.is_main_process
        else None
    )
    sampler = BucketBatchSampler(
        train_set.lengths,
        cfg.batch_size,
        max_positions=cfg.max_positions,
        bucket_batches=cfg.bucket_batches,  # type: ignore[attr-defined]
        seed=cfg.seed,
        rank=acc.process_index,
        world_size=acc.num_processes,
    )
    if not sampler.batches(0):
        raise ValueError(f"training set of {len(train_set)} examples gives no batch on {acc.num_processes} process(es)")
    save = Saver(
        raw_model,
        optimizer,
        start.opt_io if sharded else None,
        scheduler,
        acc,
        run_dir,
        cfg,
        config_yaml=config_yaml,
        files=files,
    )

    evaluator = Evaluator(raw_model, valid_set, collate_fn, cfg, run_dir, acc.device) if valid_set is not None else None
    bar = _progress(acc, step, stop_at)
    meter = LossMeter()
    pending: dict[str, Any] = {}  # losses of the step being accumulated (on the device until it ends)
    guard = NonFiniteGuard(cfg.max_nonfinite_steps)
    n_micro, t_start = 0, time.perf_counter()
    last: dict[str, Any] = {}
    boundary = Position(pos.epoch, pos.batch)  # data position after the last completed step
    stop_signal = _StopSignal()
    model.train()
    try:
        while step < stop_at and not stop_signal.raised:
            batches = sampler.batches(pos.epoch)[pos.batch :]
            if hasattr(train_set, "set_epoch"):  # before the loader copies it to workers
                train_set.set_epoch(pos.epoch)
            loader = make_loader(train_set, batches, collate_fn, cfg, acc.device)
            for batch in loader:
                if n_micro % cfg.grad_accum == 0:
                    torch.manual_seed(step_seed(cfg.seed, step, acc.process_index))
                sync = (n_micro + 1) % cfg.grad_accum == 0
                meter.frames += int(batch["num_frames"]) * acc.num_processes  # still on the host: no sync
                batch = to_device(batch, acc.device)
                with nullcontext() if sync else acc.no_sync(model), acc.autocast():
                    out = model(batch)
                    acc.backward(out["loss"] / cfg.grad_accum)
                for k in LOSS_KEYS:  # summed on the device: one read per step, for the non-finite check
                    pending[k] = pending.get(k, 0.0) + out[k].detach().float() / cfg.grad_accum
                n_micro += 1
                pos.batch += 1
                if not sync:
                    continue
                pending = dict(zip(pending, torch.stack(list(pending.values())).tolist()))
                finite, grad_norm = optimizer_step(model, optimizer, scheduler, acc, guard, cfg, step, pending)
                meter.add(pending, finite)
                pending = {}
                step += 1
                boundary = Position(pos.epoch, pos.batch)
                if step % cfg.log_every == 0 or step == stop_at:
                    last = meter.line(
                        lr=scheduler.get_last_lr()[0],
                        grad_norm=grad_norm if finite else None,
                        nonfinite_steps=guard.total,
                    )
                    if runlog:
                        runlog.log(step, "train", last)
                    bar.set_postfix(
                        loss=f"{last.get('loss', math.nan):.3f}",
                        flow=f"{last.get('flow', math.nan):.3f}",
                        fps=f"{last['frames_per_s']:.0f}",
                    )
                bar.update(1)
                if evaluator and (step % cfg.eval_every == 0 or step == stop_at):
                    valid = evaluator.run(step)
                    if runlog:
                        runlog.log(step, "valid", valid)
                        runlog.plot(run_dir / "loss_curves.png")
                    last.update({f"valid_{k}": v for k, v in valid.items()})
                    model.train()
                if step % cfg.save_every == 0 or step == stop_at:
                    save(step, boundary)
                if step >= stop_at or stop_signal.raised:
                    break
            else:
                pos = Position(pos.epoch + 1, 0)
    except KeyboardInterrupt:
        stop_signal.raised = True
    except TrainingDiverged:
        if runlog:
            runlog.close()
        raise
    finally:
        stop_signal.restore()
        bar.close()
    if stop_signal.raised and step > 0:
        path = save(step, boundary)
        log.warning("interrupted: saved %s; continue with --resume", path)
    if runlog:
        runlog.close()
    acc.wait_for_everyone()
    return {
        "step": step,
        "interrupted": stop_signal.raised,
        "wall_s": time.perf_counter() - t_start,
        "checkpoint": str(latest_checkpoint(run_dir)),
        **last,
    }


@dataclass
class Start:
    """Where a run starts: its step, data position, optimizer (`opt_io`: what checkpoints
    read and write, under FSDP a full single-process view of the shards) and schedule."""

    step: int
    pos: Position
    optimizer: torch.optim.Optimizer
    opt_io: Any
    scheduler: torch.optim.lr_scheduler.LambdaLR


def start_or_resume(
    model: torch.nn.Module,
    cfg: TrainConfig,
    acc: Any,
    run_dir: Path,
    *,
    resume: bool,
    sharded: bool,
    after_load: Callable[[torch.nn.Module], None] | None,
) -> Start:
    """Set the training stage, load the newest checkpoint's weights when resuming (before
    sharding: every rank reads the full file), shard, build the optimizer and schedule and
    restore their state. A run folder that holds checkpoints is refused unless resuming."""
    model.set_stage(cfg.stage)  # type: ignore[operator]
    step, pos = 0, Position()
    ckpt = latest_checkpoint(run_dir)
    if resume and ckpt is not None:
        load_weights_into(model, ckpt)
    if after_load is not None:
        after_load(model)
    if sharded:
        shard_model(model.to(acc.device))
    optimizer = build_optimizer(list(model.named_parameters()), cfg.lr, cfg.weight_decay, cfg.betas, cfg.lr_scale)
    opt_io: Any = FullStateOptimizer(model, optimizer) if sharded else optimizer
    lr_factor = warmup_cosine(cfg.warmup_steps, cfg.max_steps, cfg.lr, cfg.min_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    if resume and ckpt is not None:
        load_training_state(ckpt, opt_io, scheduler)
        meta = load_meta(ckpt)
        step = int(meta["step"])
        pos = Position(int(meta.get("epoch", 0)), int(meta.get("batch_in_epoch", 0)))
        if not (ckpt / "optimizer.safetensors").is_file():
            # a weights-only checkpoint (e.g. an exported model): fresh Adam moments, but the
            # learning-rate schedule continues from its step
            for g in optimizer.param_groups:
                g["initial_lr"] = cfg.lr
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor, last_epoch=step - 1)
            log.warning("%s has no optimizer state: continuing with fresh optimizer moments", ckpt)
        else:  # the saved learning rate followed the saved schedule: this config's (e.g. a
            # changed train.max_steps) applies from the first resumed step on
            for g, base in zip(optimizer.param_groups, scheduler.base_lrs):
                g["lr"] = base * lr_factor(step)
        log.info("resumed from %s (step %d, epoch %d, batch %d)", ckpt, step, pos.epoch, pos.batch)
    elif resume:
        log.warning("--resume: no checkpoint in %s yet, starting from scratch", run_dir)
    elif ckpt is not None and acc.is_main_process:
        raise RunDirError(
            f"{run_dir} already holds checkpoints (newest {ckpt.name}); "
            "pass --resume to continue it, or choose another --run-dir"
        )
    return Start(step, pos, optimizer, opt_io, scheduler)


def optimizer_step(
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    acc: Any,
    guard: NonFiniteGuard,
    cfg: TrainConfig,
    step: int,
    pending: dict[str, float],
) -> tuple[bool, float]:
    """Clip, check and take (or skip) the step whose micro-batches are accumulated, and
    advance the schedule: (finite, grad norm). `pending`: the step's losses."""
    # (no clipping at grad_clip 0: an infinite bound only measures the norm)
    grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    finite = all(map(math.isfinite, pending.values())) and math.isfinite(float(grad_norm))
    if acc.num_processes > 1:  # every process takes (or skips) the same step
        finite = float(acc.reduce(torch.tensor(float(not finite), device=acc.device), "sum")) == 0
    if acc.scaler is not None:  # fp16: the grad scaler skips non-finite steps itself (and rescales)
        optimizer.step()
        finite = finite and not optimizer.step_was_skipped
        guard.update_ok(finite, step + 1)
    elif guard.update_ok(finite, step + 1):
        optimizer.step()
    scheduler.step()  # a skipped step still counts: the schedule and the data order stay exact
    optimizer.zero_grad(set_to_none=True)
    return finite, float(grad_norm)


class LossMeter:
    """Mean losses of the finite steps, and frames per second, since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.frames, self.n_good, self.t = 0, 0, time.perf_counter()

    def add(self, losses: dict[str, float], finite: bool) -> None:
        if finite:
            for k, v in losses.items():
                self.sums[k] = self.sums.get(k, 0.0) + v
            self.n_good += 1

    def line(self, *, lr: float, grad_norm: float | None, nonfinite_steps: int) -> dict[str, Any]:
        """The log line (then counting starts again); no losses when every step was skipped."""
        now = time.perf_counter()
        out: dict[str, Any] = {k: v / self.n_good for k, v in self.sums.items()}
        out["frames_per_s"] = self.frames / max(now - self.t, 1e-9)
        out["lr"] = lr
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        out["nonfinite_steps"] = nonfinite_steps
        self.sums, self.frames, self.n_good, self.t = {}, 0, 0, now
        return out


class Saver:
    """Writes `run_dir/step_N` (and prunes old ones). Under FSDP gathering the full state is
    collective: every rank calls it, the main process writes. Weights holding NaN/Inf are
    never written (nor pruned for) over a good checkpoint: TrainingDiverged."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Any,
        full_optimizer: FullStateOptimizer | None,
        scheduler: Any,
        acc: Any,
        run_dir: Path,
        cfg: TrainConfig,
        *,
        config_yaml: str,
        files: dict[str, str | bytes] | None,
    ) -> None:
        self.model, self.optimizer, self.full_optimizer, self.scheduler = model, optimizer, full_optimizer, scheduler
        self.acc, self.run_dir, self.keep = acc, run_dir, cfg.keep_checkpoints
        self.config_yaml, self.files = config_yaml, files

    def __call__(self, step: int, at: Position) -> Path | None:
        sharded = self.full_optimizer is not None
        full = full_model_state(self.model) if sharded else None
        opt_state = self.full_optimizer.state_dict() if self.full_optimizer is not None else self.optimizer
        if not self.acc.is_main_process:
            return None
        state = self.model.checkpoint_state(full)  # type: ignore[operator]
        if bad := nonfinite_tensors(state):
            raise TrainingDiverged(
                f"training diverged: at step {step} {len(bad)} weight tensor(s) hold NaN/Inf "
                f"(e.g. {bad[0]}); not saved, the last checkpoint "
                f"({latest_checkpoint(self.run_dir)}) is kept"
            )
        meta = {"step": step, "epoch": at.epoch, "batch_in_epoch": at.batch, "time": time.time()}
        path = save_checkpoint(
            step_dir(self.run_dir, step),
            model_state=state,
            config_yaml=self.config_yaml,
            meta=meta,
            optimizer=opt_state,
            scheduler=self.scheduler,
            files=self.files,
        )
        prune_checkpoints(self.run_dir, self.keep)
        return path


class Evaluator:
    """Validation losses on fixed batches with fixed noise, plus a mel plot of one answer."""

    def __init__(
        self,
        model: torch.nn.Module,
        valid_set: Dataset,
        collate_fn: Callable,
        cfg: TrainConfig,
        run_dir: Path,
        device: torch.device,
    ) -> None:
        self.model, self.device, self.run_dir = model, device, run_dir
        sampler = BucketBatchSampler(
            valid_set.lengths,
            cfg.batch_size,
            bucket_batches=cfg.bucket_batches,  # type: ignore[attr-defined]
            seed=cfg.seed,
            shuffle=True,
        )
        self.batches = [collate_fn([valid_set[i] for i in b]) for b in sampler.batches(0)[: cfg.eval_batches]]
        spoken = next((i for i, ex in enumerate(valid_set.examples) if ex.task.speech_out), None)  # type: ignore[attr-defined]
        self.plot_batch = collate_fn([valid_set[spoken]]) if spoken is not None else None
        self.seed = cfg.seed

    @torch.no_grad()
    def run(self, step: int) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        with torch.random.fork_rng(devices=[]):  # same noise every eval; training RNG untouched
            torch.manual_seed(self.seed + 12345)
            for b in self.batches:
                out = self.model(to_device(b, self.device))
                for k in LOSS_KEYS:
                    sums[k] = sums.get(k, 0.0) + float(out[k]) / len(self.batches)
            if self.plot_batch is not None and hasattr(self.model, "plot_example"):
                plots = self.run_dir / "plots"
                plots.mkdir(parents=True, exist_ok=True)
                self.model.plot_example(to_device(self.plot_batch, self.device), plots / f"mels_step_{step:08d}.png")
        return sums


def _progress(acc: Any, start: int, total: int) -> Any:
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=start,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not acc.is_main_process,
        mininterval=0.5 if tty else 30.0,
    )


class _StopSignal:
    """SIGTERM (schedulers, `kill`) stops at the next step boundary and saves, like Ctrl-C."""

    def __init__(self) -> None:
        self.raised = False
        self._old = None
        if os.name == "posix" and _in_main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_: Any) -> None:
        self.raised = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
