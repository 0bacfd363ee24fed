"""How big a model a config describes, known before a byte of it is allocated.

A typo such as `flow.width: 1000000000` would otherwise ask for terabytes and end in an
out-of-memory kill (or hours of swapping) instead of a message. The model is built on
PyTorch's meta device, which records shapes and allocates nothing, so the count is exact
for any architecture (an HF backbone's free-form config included).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from flowomni.config import ConfigError

INFERENCE_BYTES = 4  # fp32 weights
TRAINING_BYTES = 16  # fp32 weights + gradients + Adam's two moments


def parameter_count(build: Callable[[], nn.Module]) -> int:
    """Parameters of the module `build()` makes, built on the meta device."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def memory_bytes() -> int:
    """This machine's RAM plus the memory of its GPUs: a bound no model may exceed."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if torch.cuda.is_available():
        total += sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return total


def check_fits(build: Callable[[], nn.Module], bytes_per_param: float, what: str) -> int:
    """The parameter count of `build()`'s module, or ConfigError if it cannot be built or
    would not fit this machine's memory at `bytes_per_param`."""
    try:
        n = parameter_count(build)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - HF configs fail in many ways
        raise ConfigError(f"{what}: cannot build this model ({type(e).__name__}: {e})") from None
    need, have = n * bytes_per_param, memory_bytes()
    if need > have:
        raise ConfigError(
            f"{what} has {n:.3g} parameters: at {bytes_per_param:g} bytes each that is "
            f"{need / 1e9:,.0f} GB, more than this machine's {have / 1e9:,.0f} GB of memory "
            "(RAM and GPUs together); check the model's sizes in its config"
        )
    return n
