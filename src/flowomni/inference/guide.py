"""Guided text: a spoken answer writes the words its text reply would write.

Mini-Omni's batch-parallel decoding (arXiv 2408.16725, sec. 3.5): each spoken answer decodes
beside a *companion*, the same question asked for a text reply, in the same batch; the spoken
row takes its words from the companion and decides only *when* to write each one.

Why: the shipped model answers the 800 clean test questions 76.7 % right as a text reply and
70.2 % when it speaks (reports/speaking_cost). Teacher-forced, both modes get the words equally
right (73 / 72 % of answers, benchmarks/feedback_exposure.py) and reading back drawn instead of
recorded mel costs 1.5 points; what loses the rest is free-running: with aligned pacing the
spoken text is spread between <tpad>s at times the model picks, and a character written a step
early or late leaves it reading a context training never showed. The text reply writes its
characters back to back, the context it reads best.

Rules, per guided row and step (the companion steps in the same batch, from the same step):
every row's token is logged; a guided row that would write anything (not <tpad>), or whose
speech has already ended, writes the companion's next token instead (its <eos> included),
else it waits (<tpad>). Both rows start together and the guided row writes at most one token a
step, so the token it needs is always logged by then, this step's at the latest. All on the
device, without host syncs, so the static step graph (static_step.py) runs it too.
"""

from __future__ import annotations

import torch
from torch import nn


class TextGuide(nn.Module):
    """Per row: a log of its tokens by answer step, the row it copies (`partner`; itself: not
    guided) and how many tokens it has copied. Buffers, so a compiled step sees fixed addresses."""

    def __init__(self, rows: int, max_steps: int, tpad: int, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.tpad, self.max_steps = tpad, max_steps
        self.register_buffer("log", torch.full((rows, max_steps), tpad, dtype=torch.long, device=device), False)
        self.register_buffer("rows", torch.arange(rows, device=device), persistent=False)
        self.register_buffer("partner", torch.arange(rows, device=device), persistent=False)
        self.register_buffer("copied", torch.zeros(rows, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("step", torch.zeros(rows, dtype=torch.long, device=device), persistent=False)

    @torch.no_grad()
    def reset(self, row: int, partner: int | None = None) -> None:
        """A new answer in `row`: it copies row `partner`'s text (None: it writes its own)."""
        self.log[row] = self.tpad
        self.partner[row] = row if partner is None else partner
        self.copied[row] = 0
        self.step[row] = 0

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, text_done: torch.Tensor, speech_done: torch.Tensor) -> torch.Tensor:
        """This step's tokens [R] (already <tpad> where the text is done) -> the tokens written."""
        last = self.max_steps - 1
        self.log[self.rows, self.step.clamp(max=last)] = tokens
        guided = (self.partner != self.rows) & ~text_done
        write = guided & ((tokens != self.tpad) | speech_done)
        nxt = self.log[self.partner, self.copied.clamp(max=last)]
        out = torch.where(guided, torch.where(write, nxt, torch.full_like(tokens, self.tpad)), tokens)
        self.copied += write.long()
        self.step += 1
        return out
