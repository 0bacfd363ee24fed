"""The flow-matching head: draws a group of mel frames from an LLM hidden state.

A conditional flow-matching (rectified-flow / OT path) counterpart of MAR's diffusion loss:
    x_t = (1 - (1 - s) t) x0 + t x1,  x0 ~ N(0, I), x1 = normalised mel frames
    u_t = x1 - (1 - s) x0              (the velocity the MLP learns to predict)
The whole group of k frames is one flow sample (frames within a group are drawn jointly, so
they agree with each other). The LLM hidden state becomes the condition through a small
MLP, or, optionally, through a small transformer over the group's k frame slots (as the paper
refines the hidden state); a residual MLP with adaLN conditioning predicts the velocity. Sampling
integrates the ODE from t=0 to 1 with Euler or midpoint steps; `temperature` scales the
starting noise and classifier-free guidance mixes conditional and unconditional velocities
(the condition is dropped with probability `p_uncond` during training).

`prior: mean` (our addition, after Grad-TTS's data-dependent prior): a small MLP regresses
the group's conditional mean mu(h) with an MSE loss, and the flow starts from N(mu, I)
instead of N(0, I), so the velocity MLP only has to add the detail around the mean. A small
head learns the mean (what is being said) far sooner than the full distribution; at
temperature 0 the sampler starts on the mean itself. The prior sees the undropped condition,
so conditional and unconditional velocities (CFG) share one start distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.config import Bounds, SettingError, check_choice
from flowomni.model.flow_student import FlowStudent

FLOW_METHODS = ("euler", "midpoint", "student")  # `FlowHead.sample`'s samplers ("student":
# one evaluation of a distilled one-step network, see flow_student.py; `steps` does not apply)
FLOW_PRIORS = ("none", "mean")  # where the ODE starts: N(0, I), or N(mu(h), I) (see above)
T_SAMPLINGS = ("logit_normal", "uniform")  # where on the path training draws t


@dataclass
class FlowHeadConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "width": (1, 65536),
        "depth": (1, 256),
        "refiner_layers": (0, 64),
        "refiner_heads": (1, 256),
        "p_uncond": (0, 1),
        "sigma_min": (0, 1),
        "steps": (1, 1000),
        "temperature": (0, 100),
        "cfg_scale": (0, 100),
        "prior_weight": (0, 1e4),
        "student_width": (0, 65536),
        "student_depth": (0, 256),
    }

    width: int = 256
    depth: int = 3  # residual adaLN blocks
    refiner_layers: int = 0  # 0: an MLP maps the hidden state to the condition
    refiner_heads: int = 4
    p_uncond: float = 0.1
    sigma_min: float = 1e-4
    t_sampling: str = "logit_normal"  # or "uniform": where on the path training looks
    steps: int = 8
    method: str = "midpoint"  # or "euler"
    temperature: float = 1.0
    cfg_scale: float = 1.0
    prior: str = "none"  # "mean": start the ODE at a regressed conditional mean (see above)
    prior_weight: float = 1.0  # weight of the mean's MSE in the head's loss
    student_width: int = 0  # > 0: the head holds a one-step student (`flowomni distill-flow`)
    student_depth: int = 3
    student_teacher: str = ""  # the sampler the student imitates, e.g. "euler:4 cfg=1" (informative)

    def __post_init__(self) -> None:
        check_choice("model.flow.t_sampling", self.t_sampling, T_SAMPLINGS)
        check_choice("model.flow.method", self.method, FLOW_METHODS)
        check_choice("model.flow.prior", self.prior, FLOW_PRIORS)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """MLP block whose LayerNorm is shifted/scaled/gated by the condition (adaLN)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> torch.Tensor:
        shift, scale, gate = mod
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class VelocityMLP(nn.Module):
    """v(x_t, t, c) for flattened groups; zero-initialised so training starts from v = 0."""

    def __init__(self, dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.width = width
        self.inp = nn.Linear(dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, dim)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for layer in (self.final_ada[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def modulation(
        self, t: torch.Tensor | None, c: torch.Tensor, t_emb: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, ...]]:
        """adaLN shift/scale/gate of every block for (t, c). It does not depend on x, so a
        sampler computes it for all its time points in one batched call, before integrating
        (`t_emb`: the time embedding of `t`, when the caller has it already)."""
        c = c + (self.time_embedding(t).to(c.dtype) if t_emb is None else t_emb)
        return [blk.ada(c).chunk(3, dim=-1) for blk in self.blocks] + [self.final_ada(c).chunk(2, dim=-1)]

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self.time(timestep_embedding(t, self.width).to(self.time[0].weight.dtype))

    def velocity(self, x: torch.Tensor, mods: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """v at points x for precomputed `modulation`s (not `apply`: that is nn.Module's)."""
        h = self.inp(x)
        for blk, mod in zip(self.blocks, mods):
            h = blk(h, mod)
        shift, scale = mods[-1]
        return self.out(modulate(self.final_norm(h), shift, scale))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.velocity(x, self.modulation(t, c))


class ConditionRefiner(nn.Module):
    """hidden [N, D] -> condition [N, width]: an MLP, or a tiny transformer over k frame slots."""

    def __init__(self, cond_dim: int, width: int, group: int, layers: int, heads: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(cond_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.transformer = None
        if layers:
            self.slots = nn.Parameter(torch.randn(group, width) * 0.02)
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.merge = nn.Linear(group * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        c = self.proj(h)
        if self.transformer is None:
            return c
        slots = self.transformer(c[:, None, :] + self.slots[None])
        return self.merge(slots.flatten(1))


class FlowHead(nn.Module):
    def __init__(self, cfg: FlowHeadConfig, cond_dim: int, frame_dim: int, group: int) -> None:
        super().__init__()
        self.cfg, self.frame_dim, self.group = cfg, frame_dim, group
        self.refiner = ConditionRefiner(cond_dim, cfg.width, group, cfg.refiner_layers, cfg.refiner_heads)
        self.null_cond = nn.Parameter(torch.zeros(cond_dim))
        self.net = VelocityMLP(group * frame_dim, cfg.width, cfg.depth)
        self.prior = (
            nn.Sequential(nn.Linear(cond_dim, cfg.width), nn.SiLU(), nn.Linear(cfg.width, group * frame_dim))
            if cfg.prior == "mean"
            else None
        )
        self.student = (
            FlowStudent(group * frame_dim, cond_dim, cfg.student_width, cfg.student_depth)
            if cfg.student_width > 0
            else None
        )
        self._t_cache: tuple[Any, torch.Tensor] | None = None

    def _time_grid(self, times: list[float], like: torch.Tensor) -> torch.Tensor:
        """Time embeddings of a sampler's time points [len(times), width]. They depend on the
        weights only, so streaming reuses them group after group (in eval mode); the key
        includes the weights' version counters, which every optimizer step or load bumps."""
        if self.training:
            return self.net.time_embedding(torch.tensor(times, device=like.device, dtype=like.dtype)).to(like.dtype)
        key = (tuple(times), like.dtype, like.device, tuple(p._version for p in self.net.time.parameters()))
        if self._t_cache is None or self._t_cache[0] != key:
            t = torch.tensor(times, device=like.device, dtype=like.dtype)
            with torch.no_grad():  # kept beyond this call: no graph (a model holding one cannot be deep-copied)
                self._t_cache = (key, self.net.time_embedding(t).to(like.dtype))
        return self._t_cache[1]

    def _sample_t(self, n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        if self.cfg.t_sampling == "logit_normal":  # more weight mid-path, as in SD3/F5-TTS
            return torch.sigmoid(torch.randn(n, device=device, generator=generator))
        if self.cfg.t_sampling == "uniform":
            return torch.rand(n, device=device, generator=generator)
        raise SettingError(f"unknown model.flow.t_sampling {self.cfg.t_sampling!r}: use one of {T_SAMPLINGS}")

    def loss(self, h: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-group loss [N] for conditions h [N, D] and targets x1 [N, k, F]: flow matching,
        plus `prior_weight` x the mean's MSE with `prior: mean`."""
        n, cond = h.shape[0], h
        if self.training and self.cfg.p_uncond > 0:
            drop = torch.rand(n, device=h.device, generator=generator) < self.cfg.p_uncond
            h = torch.where(drop[:, None], self.null_cond.to(h.dtype).expand_as(h), h)
        c = self.refiner(h)  # [N, W]
        x1 = x1.flatten(1)
        t = self._sample_t(n, h.device, generator)
        x0 = torch.randn(x1.shape, device=x1.device, generator=generator, dtype=x1.dtype)
        prior_loss = None
        if self.prior is not None:  # from the undropped condition
            mu = self.prior(cond)
            prior_loss = F.mse_loss(mu.float(), x1.float(), reduction="none").mean(dim=1)
            x0 = x0 + mu.detach()  # the regression is trained by its own loss only
        s = self.cfg.sigma_min
        xt = (1 - (1 - s) * t[:, None]) * x0 + t[:, None] * x1
        v = self.net(xt, t, c)
        loss = F.mse_loss(v.float(), (x1 - (1 - s) * x0).float(), reduction="none").mean(dim=1)
        return loss if prior_loss is None else loss + self.cfg.prior_weight * prior_loss

    @torch.no_grad()
    def sample(
        self,
        h: torch.Tensor,
        *,
        steps: int | None = None,
        method: str | None = None,
        temperature: float | None = None,
        cfg_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw mel groups [N, k, F] for conditions h [N, D] by integrating the learned ODE
        (or, with method "student", by the distilled one-step network)."""
        method, steps, temperature, cfg_scale = self.sampler(steps, method, temperature, cfg_scale)
        return self.carry(self.start(h, temperature, generator), h, steps=steps, method=method, cfg_scale=cfg_scale)

    def sampler(
        self,
        steps: int | None = None,
        method: str | None = None,
        temperature: float | None = None,
        cfg_scale: float | None = None,
    ) -> tuple[str, int, float, float]:
        """(method, steps, temperature, cfg_scale) with the config's defaults for None, checked."""
        cfg = self.cfg
        method = method or cfg.method
        temperature = cfg.temperature if temperature is None else temperature
        cfg_scale = cfg.cfg_scale if cfg_scale is None else cfg_scale
        if method not in FLOW_METHODS:
            raise SettingError(f"unknown flow sampler {method!r}: use one of {FLOW_METHODS}")
        if method == "student":
            if self.student is None:
                raise SettingError(
                    "this model has no one-step flow student: make one with `flowomni distill-flow "
                    "MODEL --out DIR`, or sample with method euler/midpoint"
                )
            if cfg_scale != 1.0:
                raise SettingError(
                    f"the one-step student imitates its teacher ({cfg.student_teacher or 'unknown'}); "
                    f"it cannot apply cfg_scale {cfg_scale}: use method euler/midpoint for guidance"
                )
        return method, steps or cfg.steps, temperature, cfg_scale

    def carry(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        *,
        steps: int,
        method: str,
        cfg_scale: float,
        t_grid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Starting points x [N, k*F] -> mel groups [N, k, F], by the student or the ODE (`sampler`'s
        arguments; `t_grid`: `time_grid`'s output, when the caller keeps it)."""
        if method == "student":
            x = self.student(x, h)
        else:
            x = self.integrate(x, h, steps=steps, method=method, cfg_scale=cfg_scale, t_grid=t_grid)
        return x.view(h.shape[0], self.group, self.frame_dim)

    def start(
        self,
        h: torch.Tensor,
        temperature: float,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ODE's starting points [N, k*F]: temperature-scaled noise (drawn here, or `noise`
        [N, k*F] drawn by the caller), around the prior mean if any."""
        shape = (h.shape[0], self.group * self.frame_dim)
        if temperature == 0:  # no noise to draw (the start is the prior mean, or zero)
            return self.prior(h) if self.prior is not None else h.new_zeros(shape)
        if noise is None:
            noise = torch.randn(shape, device=h.device, dtype=h.dtype, generator=generator)
        x = noise * temperature
        return x + self.prior(h) if self.prior is not None else x

    @staticmethod
    def times(steps: int, method: str) -> list[float]:
        """The time points an ODE sampler evaluates the velocity at."""
        dt = 1.0 / steps
        return (
            [i * dt for i in range(steps)]
            if method == "euler"
            else [i * dt + j * 0.5 * dt for i in range(steps) for j in (0, 1)]
        )

    def time_grid(self, steps: int, method: str, like: torch.Tensor) -> torch.Tensor:
        """Time embeddings of a sampler's time points [len(times), width] (cached in eval mode)."""
        return self._time_grid(self.times(steps, method), like)

    @torch.no_grad()
    def integrate(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        *,
        steps: int,
        method: str,
        cfg_scale: float = 1.0,
        t_grid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Carry starting points x [N, k*F] from t=0 to t=1 along the learned velocity field."""
        guided = cfg_scale != 1.0
        if guided:  # one batched pass for conditional and unconditional velocities
            h = torch.cat([h, self.null_cond.to(h.dtype).expand_as(h)])
        c = self.refiner(h)

        dt = 1.0 / steps
        times = self.times(steps, method)
        m = c.shape[0]  # rows per time point (2n with guidance)
        t_emb = (self._time_grid(times, c) if t_grid is None else t_grid).repeat_interleave(m, dim=0)
        mods_all = self.net.modulation(None, c.repeat(len(times), 1), t_emb)  # every time point at once
        evals = iter(range(len(times)))

        def velocity(x: torch.Tensor) -> torch.Tensor:
            i = next(evals)
            mods = (
                mods_all if len(times) == 1 else [tuple(part[i * m : (i + 1) * m] for part in mod) for mod in mods_all]
            )
            v = self.net.velocity(torch.cat([x, x]) if guided else x, mods)
            if guided:
                v_c, v_u = v.chunk(2)
                v = v_u + cfg_scale * (v_c - v_u)
            return v

        for _ in range(steps):
            if method == "euler":
                x = x + dt * velocity(x)
            else:
                x_mid = x + 0.5 * dt * velocity(x)
                x = x + dt * velocity(x_mid)
        return x
