"""Token sampling (text tokens, codec codes): greedy, temperature, top-k and nucleus (top-p).
The model's discrete speech head samples with it as the decoder does (hence here, not in inference/)."""

from __future__ import annotations

import torch


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """logits [B, V] -> the distribution to sample from (temperature > 0), top-k and top-p applied."""
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token once the mass before it already reaches top_p (the top token always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits.softmax(-1)


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits [B, V] -> token ids [B]. temperature 0 is greedy (argmax)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(filtered_probs(logits, temperature, top_k, top_p), 1, generator=generator).squeeze(-1)


def sample_with_noise(
    logits: torch.Tensor, noise: torch.Tensor | None, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """`sample_tokens` with its randomness drawn beforehand: noise [B, V] ~ Exp(1), as
    `torch.empty_like(probs).exponential_(1, generator=g)` draws it. torch.multinomial draws one
    sample exactly so (argmax of probs / noise), so with the same generator the tokens are the
    same; here nothing waits for the host (compiled decode steps)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return (filtered_probs(logits, temperature, top_k, top_p) / noise).argmax(-1)
