"""What this machine computes fast: a few measured facts the inference paths choose by."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (avx512_bf16 or AMX). Without it oneDNN
    emulates bf16 and it does not pay; with it, bf16 convolutions and matrix products ran
    ~2.5x faster than fp32 on the 2-core CI machine (AMD EPYC, avx512_bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
