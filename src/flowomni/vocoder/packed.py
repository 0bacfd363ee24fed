"""Linear layers with weights pre-packed for oneDNN, for the neural vocoder's CPU inference.

A plain `F.linear` on CPU hands oneDNN a row-major weight, which it reorders into its blocked
layout on every call; the vocoder's matrices are small (225 frames x 128 x 384), so that is a
fair share of each product. Packing once at load, and fusing the ConvNeXt's GELU into the first
MLP product, measured on 2 threads (bf16, 225 x 128 -> 384 with GELU): 205 -> 124 us median;
fp32: 272 -> 206 us. This is the op PyTorch's own compiler (inductor, with freezing) emits for
CPU linears: `torch.ops.mkldnn._linear_pointwise`, a private op, so packing checks its result
against the plain layer once and leaves the layer as it was if the op is missing or disagrees.

oneDNN builds (JIT-compiles) a kernel per number of rows: ~0.6 ms per layer for every new
length, which made one-shot synthesis of 150 clips of different lengths 1.6x slower than
repeating one length (measured: 10.6 vs 6.5 ms per 225-frame call). Rows are therefore padded
to a multiple of `ROW_MULTIPLE` (at most 15 wasted rows, ~4 % at 225 frames), so a few dozen
kernels serve every length up to minutes of audio and stay in oneDNN's cache.
"""

from __future__ import annotations

import logging
import warnings
from typing import List, Union  # noqa: UP035 - TorchScript's spelling (see below)

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

ACTIVATIONS = {"none": lambda x: x, "gelu": F.gelu}
ROW_MULTIPLE = 16


class PackedLinear(nn.Module):
    """`activation(linear(x))` with the weight packed for oneDNN; inference only."""

    def __init__(self, linear: nn.Linear, activation: str = "none", rows_hint: int = 256) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: use one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.row_multiple = ROW_MULTIPLE
        self.algorithm = "none" if activation == "gelu" else ""  # exact (erf) GELU, as F.gelu
        weight = linear.weight.detach()
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., rows, in] -> [..., rows, out]
        scalars: List[Union[int, float, complex] | None] = []  # noqa: UP006,UP007 - TorchScript's spelling
        rows = x.shape[-2]
        pad = (self.row_multiple - rows % self.row_multiple) % self.row_multiple
        if pad > 0:  # rows are independent: padding changes no real row
            x = F.pad(x, [0, 0, 0, pad])
        y = torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.activation, scalars, self.algorithm)
        return y[..., :rows, :] if pad > 0 else y


def pack_linear(linear: nn.Linear, activation: str = "none") -> nn.Module | None:
    """A scripted PackedLinear equal to `activation(linear(x))`, or None where oneDNN packing is
    unavailable or its output disagrees with the plain layer's (checked once, here)."""
    if linear.weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            packed = torch.jit.script(PackedLinear(linear, activation))  # the op's empty list needs types
        with torch.inference_mode():
            x = torch.randn(3, 37, linear.in_features).to(linear.weight.dtype)
            want = ACTIVATIONS[activation](linear(x)).float()
            got = packed(x).float()
    except Exception as e:  # noqa: BLE001 - a private op: any failure only costs speed
        log.warning("vocoder: oneDNN weight packing unavailable (%s: %s)", type(e).__name__, e)
        return None
    tol = 0.02 if linear.weight.dtype == torch.bfloat16 else 1e-4  # one bf16 rounding of the output
    if got.shape != want.shape or not torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max())):
        log.warning("vocoder: oneDNN packed linear disagrees with nn.Linear; not packing")
        return None
    return packed
