"""Precision of the decode steps: prefill in the model's dtype, steps possibly in fp16.

At batch 1 a decode step multiplies vectors by matrices, so its speed is the speed of
reading weights; on x86 CPUs PyTorch's fp16 matrix-vector kernel (fp32 accumulation) reads
half the bytes and ran a chain of 512-wide layers ~4x faster than fp32, while fp16 matrix-
matrix products (prefill, batches of 16) ran 2x *slower* than fp32 and bf16 matrix-vector
products slower still (measured on the 2-core AMD EPYC CI machine). So "auto" keeps the
prefill in the model's dtype and runs the steps of small CPU batches on an fp16 copy of the
model (made once per model, cached), casting the KV cache across. benchmarks/latency.py
measures the effect; the eval numbers of the shipped model are taken with it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from flowomni.config import SettingError

DECODE_DTYPES = ("auto", "float32", "float16", "bfloat16")
AUTO_FP16_MAX_BATCH = 4  # above this, fp16 matrix products stop paying on CPU


def decode_dtype(name: str, device: torch.device, batch: int, model_dtype: torch.dtype) -> torch.dtype:
    """The dtype decode steps run in, for a `DECODE_DTYPES` name."""
    if name not in DECODE_DTYPES:
        raise SettingError(f"unknown decode_dtype {name!r}: use one of {DECODE_DTYPES}")
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cpu" and batch <= AUTO_FP16_MAX_BATCH:
        return torch.float16
    return model_dtype


def streaming_dtype(name: str, model: Any) -> str:
    """The dtype name one streamed answer's steps get: what a batch must be told to decode in
    for its quality numbers to be those of `flowomni chat` (evaluation, benchmarks)."""
    p = next(model.parameters())
    return str(decode_dtype(name, p.device, 1, p.dtype)).removeprefix("torch.")


def step_model(model: Any, dtype: torch.dtype) -> Any:
    """`model` itself, or its copy in `dtype` (cached on the model; remade if its weights changed)."""
    if next(model.parameters()).dtype == dtype:
        return model
    version = tuple(p._version for p in model.parameters())
    cached = model.__dict__.setdefault("_step_copies", {})
    if dtype not in cached or cached[dtype][0] != version:
        shadow = {k: model.__dict__.pop(k) for k in ("_step_copies",) if k in model.__dict__}
        try:
            clone = copy.deepcopy(model).to(dtype).eval()
        finally:
            model.__dict__.update(shadow)
        cached[dtype] = (version, clone)
    return cached[dtype][1]


def cast_cache(cache: Any, dtype: torch.dtype) -> Any:
    """A backbone KV cache (transformers' DynamicCache) with its tensors in `dtype`, in place."""
    for layer in getattr(cache, "layers", []):
        if getattr(layer, "is_initialized", True) and hasattr(layer, "keys"):
            layer.keys, layer.values = layer.keys.to(dtype), layer.values.to(dtype)
            if hasattr(layer, "dtype"):
                layer.dtype = dtype
    return cache
