"""Training the Vocos-style vocoder: reconstruction losses first, adversarial ones later.

Until `gan_start_step` only the mel L1 and multi-resolution STFT losses train the generator;
that alone gives an intelligible vocoder within minutes on a CPU. From then on the
discriminators (multi-period + multi-resolution) are trained too and add adversarial and
feature-matching terms, which mostly sharpen phase and high frequencies. (On a CPU budget
they did not: 900 GAN steps on top of a reconstruction-trained vocoder took its valid mel L1
from 0.31 to 0.43-0.53 and its MCD from 13.5 to 20 dB, ASR WER 5.6 -> 5.9 %; see README.
`init_from` starts a run from a trained vocoder.)

A run folder holds `step_XXXXXXXX/` checkpoints (generator + discriminators, both
optimizers, schedulers and RNG; atomic), `metrics.jsonl` and `loss_curves.png`.
`export_generator` writes the part that ships: the generator's weights and the config.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import yaml
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flowomni.audio.mel import MelConfig, answer_mel_config
from flowomni.checkpoint import (
    latest_checkpoint,
    load_meta,
    load_model_state,
    load_training_state,
    optimizer_from_flat,
    optimizer_to_flat,
    prune_checkpoints,
    save_checkpoint,
    step_dir,
)
from flowomni.config import Bounds, to_dict
from flowomni.vocoder.data import Clips, VocoderDataConfig
from flowomni.vocoder.discriminators import DiscriminatorConfig, Discriminators
from flowomni.vocoder.losses import (
    MelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
)
from flowomni.vocoder.vocos import VocosConfig, VocosGenerator

log = logging.getLogger(__name__)


@dataclass
class VocoderOptimConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "max_steps": (1, 10**10),
        "lr": (0, 10),
        "lr_min": (0, 10),
        "warmup_steps": (0, None),
        "betas": (0, 0.99999),
        "weight_decay": (0, 100),
        "grad_clip": (0, None),
        "gan_start_step": (0, None),
        "lambda_mel": (0, 1e4),
        "lambda_stft": (0, 1e4),
        "lambda_adv": (0, 1e4),
        "lambda_fm": (0, 1e4),
        "log_every": (1, None),
        "eval_every": (1, None),
        "save_every": (1, None),
        "keep_checkpoints": (0, None),
        "threads": (0, 1024),
    }

    max_steps: int = 20000
    lr: float = 5e-4
    lr_min: float = 2e-5
    warmup_steps: int = 200
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    gan_start_step: int = 0  # adversarial training from this step on (reconstruction only before)
    gan_loss: str = "hinge"  # or "lsgan"
    lambda_mel: float = 45.0
    lambda_stft: float = 15.0
    lambda_adv: float = 1.0
    lambda_fm: float = 2.0
    stft_resolutions: list[list[int]] = field(
        default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]
    )
    log_every: int = 50
    eval_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 3
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    device: str = "auto"  # auto: the GPU when there is one, else the CPU; or cpu / cuda / cuda:N
    # fp32 (TF32 products on a GPU) or bf16 (autocast: products and convs in bf16; weights,
    # optimizer states, spectra and losses stay fp32). fp32 is the default because bf16 was the
    # slower one where measured: 0.83-0.97x fp32's speed on an H200, for 0.8 M and 13.5 M
    # generators at batch 16 and 64 (the steps are bound by kernel launches, not arithmetic;
    # benchmarks/vocoder_train.py, reports/vocoder_train_h200.json)
    mixed_precision: str = "fp32"


@dataclass
class VocoderTrainConfig:
    model: VocosConfig = field(default_factory=VocosConfig)
    mel: MelConfig = field(default_factory=answer_mel_config)
    data: VocoderDataConfig = field(default_factory=VocoderDataConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: VocoderOptimConfig = field(default_factory=VocoderOptimConfig)
    run_dir: str = "runs/vocoder"
    # a trained vocoder (export or checkpoint folder) whose generator starts this run, e.g. to
    # add the adversarial phase to a reconstruction-only vocoder or adapt one to a new voice;
    # discriminators, optimizers and the step count start fresh
    init_from: str = ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but torch sees no GPU: use 'auto' or 'cpu'")
    return device


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    """The dtype the forward passes autocast to, or None for plain fp32."""
    if mixed_precision not in ("fp32", "bf16"):
        raise ValueError(f"train.mixed_precision must be 'fp32' or 'bf16', got {mixed_precision!r}")
    return torch.bfloat16 if mixed_precision == "bf16" else None


def config_yaml(cfg: VocoderTrainConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def lr_lambda(cfg: VocoderOptimConfig):
    """Linear warm-up, then cosine decay from lr to lr_min at max_steps (a factor of lr)."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return (cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))) / cfg.lr

    return f


class VocoderTrainer:
    """Holds generator, discriminators, optimizers and losses; `step()` does one update."""

    def __init__(self, cfg: VocoderTrainConfig) -> None:
        self.cfg = cfg
        t = cfg.train
        if t.gan_loss not in ("hinge", "lsgan"):
            raise ValueError(f"train.gan_loss must be 'hinge' or 'lsgan', got {t.gan_loss!r}")
        if not 0 < t.lr_min <= t.lr:
            raise ValueError(f"train.lr ({t.lr}) and train.lr_min ({t.lr_min}) must satisfy 0 < lr_min <= lr")
        self.device = resolve_device(t.device)
        self.amp_dtype = autocast_dtype(t.mixed_precision)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(t.seed)
        self.generator = VocosGenerator(cfg.model, cfg.mel).to(self.device)
        self.disc = Discriminators(cfg.disc).to(self.device)
        adam = dict(betas=tuple(t.betas), weight_decay=t.weight_decay)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), t.lr, **adam)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), t.lr, **adam)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lr_lambda(t))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lr_lambda(t))
        self.mel_loss = MelLoss(cfg.mel).to(self.device)
        self.stft_loss = MultiResolutionSTFTLoss(t.stft_resolutions).to(self.device)
        self.step_count = 0
        self.skipped_updates = 0

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def reconstruction(self, y: torch.Tensor, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        y, wav = y.float(), wav.float()  # spectra of audio in fp32, whatever the autocast
        return {"mel": self.mel_loss(y, wav), "stft": self.stft_loss(y, wav)}

    def step(self, mel: torch.Tensor, wav: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch (mel [B, T, M], wav [B, T * hop]); returns losses."""
        t = self.cfg.train
        mel, wav = mel.to(self.device, non_blocking=True), wav.to(self.device, non_blocking=True)
        self.generator.train()
        with self.autocast():
            y = self.generator(mel)  # fp32 audio: the trunk's head casts back before the iSTFT
        logs: dict[str, float] = {}
        gan = self.step_count >= t.gan_start_step
        if gan:
            self.disc.train()
            with self.autocast():
                real, _ = self.disc(wav)
                fake, _ = self.disc(y.detach())
            loss_d = discriminator_loss(real, fake, t.gan_loss)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self._apply(self.opt_d, self.disc, t.grad_clip)
            self.sched_d.step()  # the discriminators' warm-up starts with their training
            logs["disc"] = loss_d.item()
        rec = self.reconstruction(y, wav)
        loss_g = t.lambda_mel * rec["mel"] + t.lambda_stft * rec["stft"]
        if gan:
            self.disc.requires_grad_(False)
            with self.autocast():
                fake, fake_feats = self.disc(y)
                with torch.no_grad():
                    _, real_feats = self.disc(wav)
            self.disc.requires_grad_(True)
            adv, fm = generator_adv_loss(fake, t.gan_loss), feature_matching_loss(real_feats, fake_feats)
            loss_g = loss_g + t.lambda_adv * adv + t.lambda_fm * fm
            logs.update(adv=adv.item(), fm=fm.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        logs["grad_norm"] = self._apply(self.opt_g, self.generator, t.grad_clip)
        self.sched_g.step()
        self.step_count += 1
        logs.update(
            loss=loss_g.item(),
            mel=rec["mel"].item(),
            stft=rec["stft"].item(),
            lr=self.sched_g.get_last_lr()[0],
            skipped_updates=self.skipped_updates,
        )
        return logs

    def _apply(self, opt: torch.optim.Optimizer, module: nn.Module, clip: float) -> float:
        """Clip and apply the gradients, unless they are not finite: one NaN update would ruin
        the weights for good, so it is skipped and counted (`skipped_updates` in the logs)."""
        norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), clip))
        if math.isfinite(norm):
            opt.step()
        else:
            self.skipped_updates += 1
            log.warning(
                "non-finite gradient (norm %s) in %s at step %d: update skipped",
                norm,
                type(module).__name__,
                self.step_count,
            )
        return norm

    @torch.inference_mode()
    def evaluate(self, clips: Clips) -> dict[str, float]:
        """Mean reconstruction losses over whole held-out clips."""
        self.generator.eval()
        totals = {"mel": 0.0, "stft": 0.0}
        for mel, wav in zip(clips.mels, clips.wavs):
            with self.autocast():
                y = self.generator(mel[None].to(self.device))
            rec = self.reconstruction(y, wav[None].to(self.device))
            for k in totals:
                totals[k] += rec[k].item() / len(clips)
        return {f"valid_{k}": v for k, v in totals.items()}

    def state(self) -> dict[str, torch.Tensor]:
        return {
            **{f"generator.{k}": v for k, v in self.generator.state_dict().items()},
            **{f"disc.{k}": v for k, v in self.disc.state_dict().items()},
        }

    def save(self, path: Path, meta: dict[str, Any] | None = None) -> Path:
        d_tensors, d_js = optimizer_to_flat(self.opt_d)
        d_js["scheduler"] = self.sched_d.state_dict()
        return save_checkpoint(
            path,
            model_state=self.state(),
            config_yaml=config_yaml(self.cfg),
            meta={"step": self.step_count, "kind": "vocoder", **(meta or {})},
            optimizer=self.opt_g,
            scheduler=self.sched_g,
            files={"optimizer_d.safetensors": st_save(d_tensors), "optimizer_d.json": json.dumps(d_js)},
        )

    def init_generator(self, path: str | Path) -> None:
        """Start the generator from a trained vocoder's weights (its model config must match)."""
        from flowomni.vocoder.load import load_neural

        trained = load_neural(path, self.cfg.mel, dtype="float32").generator
        if trained.cfg != self.generator.cfg:
            raise ValueError(
                f"init_from {str(path)!r} has model {to_dict(trained.cfg)}, "
                f"this config asks for {to_dict(self.generator.cfg)}"
            )
        self.generator.load_state_dict(trained.state_dict())

    def load(self, path: Path) -> None:
        """Restore everything `save` wrote, so training continues as if never stopped."""
        state = load_model_state(path)
        self.generator.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
        self.disc.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("disc.")})
        d_js = json.loads((path / "optimizer_d.json").read_text())
        optimizer_from_flat(self.opt_d, st_load((path / "optimizer_d.safetensors").read_bytes()), d_js)
        self.sched_d.load_state_dict(d_js["scheduler"])
        load_training_state(path, self.opt_g, self.sched_g)
        self.step_count = int(load_meta(path)["step"])


def export_generator(checkpoint: str | Path, out_dir: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the shippable vocoder: generator weights + config (no discriminators/optimizers)."""
    checkpoint = Path(checkpoint)
    state = {k: v for k, v in load_model_state(checkpoint).items() if k.startswith("generator.")}
    src_meta = load_meta(checkpoint)
    return save_checkpoint(
        out_dir,
        model_state=state,
        config_yaml=(checkpoint / "config.yaml").read_text(),
        meta={**src_meta, "exported_from": str(checkpoint), **(meta or {})},
        save_rng=False,
    )


def train_vocoder(
    cfg: VocoderTrainConfig, *, resume: bool = False, max_steps: int | None = None, export: str | None = None
) -> dict[str, Any]:
    """Train (or resume) in `cfg.run_dir`; returns the last logged metrics."""
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = VocoderTrainer(cfg)
    train_clips = Clips(cfg.data.train, cfg.mel, cfg.data.max_seconds)
    valid_clips = (
        Clips(cfg.data.valid, cfg.mel, cfg.data.max_seconds, limit=cfg.data.valid_items) if cfg.data.valid else None
    )
    log.info(
        "vocoder: %d train clips (%.0f s), %d valid; generator %.2f M params; skipped %s; on %s, autocast %s",
        len(train_clips),
        train_clips.seconds(),
        len(valid_clips) if valid_clips else 0,
        sum(p.numel() for p in trainer.generator.parameters()) / 1e6,
        dict(train_clips.skipped),
        trainer.device,
        trainer.amp_dtype or "off",
    )
    if resume and (ckpt := latest_checkpoint(run_dir)) is not None:
        trainer.load(ckpt)
        log.info("resumed from %s at step %d", ckpt, trainer.step_count)
    elif cfg.init_from:
        trainer.init_generator(cfg.init_from)
        log.info("generator initialised from %s", cfg.init_from)
    end = min(t.max_steps, max_steps if max_steps is not None else t.max_steps)
    metrics: dict[str, Any] = {"step": trainer.step_count}
    t0, last = time.time(), trainer.step_count
    with open(run_dir / "metrics.jsonl", "a") as mf:
        while trainer.step_count < end:
            mel, wav = train_clips.batch(cfg.data.batch_size, cfg.data.segment_frames)
            logs = trainer.step(mel, wav)
            s = trainer.step_count
            if s % t.log_every == 0 or s == end:
                metrics = {
                    "step": s,
                    **{k: round(v, 5) for k, v in logs.items()},
                    "s_per_step": round((time.time() - t0) / max(1, s - last), 3),
                }
                t0, last = time.time(), s
                if valid_clips is not None and (s % t.eval_every == 0 or s == end):
                    metrics.update({k: round(v, 5) for k, v in trainer.evaluate(valid_clips).items()})
                mf.write(json.dumps(metrics) + "\n")
                mf.flush()
                log.info("%s", metrics)
            if s % t.save_every == 0 or s == end:
                trainer.save(step_dir(run_dir, s), {"metrics": metrics})
                prune_checkpoints(run_dir, t.keep_checkpoints)
    from flowomni.vocoder.curves import plot_runs

    plot_runs({run_dir.name: run_dir}, run_dir / "loss_curves.png")
    if export:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"nothing to export: no checkpoint in {run_dir}")
        export_generator(ckpt, export)
        log.info("exported generator of %s to %s", ckpt, export)
    return metrics
