"""Step-wise decoding for tests, and the check that batching changes no answer."""

from __future__ import annotations

from typing import Any

import torch

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt, StepOutput
from flowomni.model.flowomni import FlowOmni


def decode(model: FlowOmni, prompts: list[Prompt], steps: int, **gen: Any) -> tuple[Decoder, list[list[StepOutput]]]:
    """`steps` decoder steps (seed 0 unless `gen` says otherwise): the decoder and each step's outputs."""
    dec = Decoder(model, prompts, GenerationConfig(**{"seed": 0, **gen}))
    return dec, [dec.step() for _ in range(steps)]


def assert_batched_equals_single(
    model: FlowOmni, prompts: list[Prompt], steps: int, **gen: Any
) -> tuple[Decoder, list[list[StepOutput]]]:
    """Decode the prompts together and each alone: the same tokens, states and mel groups.
    Returns the batched decoder and its steps' outputs."""
    dec, batched = decode(model, prompts, steps, **gen)
    for i, p in enumerate(prompts):
        _, single = decode(model, [p], steps, **gen)
        for step_b, step_s in zip(batched, single, strict=True):
            a, b = step_b[i], step_s[0]
            assert a.token == b.token and a.text_done == b.text_done and a.speech_done == b.speech_done
            assert (a.group is None) == (b.group is None)
            if a.group is not None:
                torch.testing.assert_close(a.group, b.group, atol=1e-4, rtol=1e-4)
    return dec, batched
