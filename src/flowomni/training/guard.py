"""Non-finite losses and gradients: skip the update, count it, stop a run that has diverged.

One NaN in a loss spreads through the gradient into every weight at the next optimizer step,
and the run goes on writing NaN checkpoints over good ones (seen: a 476 M model at lr 1e-3
was all NaN within 200 steps and saved that as its final checkpoint). A step whose loss or
gradient norm is not finite is skipped instead (the weights and optimizer moments keep
their values); a few such steps are survivable spikes, `max_in_a_row` of them in a row mean
the run has diverged and it stops with a message naming the likely cure.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
WARN_FIRST, WARN_EVERY = 10, 100  # warn about the first skips, then about every 100th


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row, or non-finite weights about to be saved."""


class NonFiniteGuard:
    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.total = 0  # skipped steps in this process's run
        self.in_a_row = 0

    def update_ok(self, finite: bool, step: int, detail: str = "") -> bool:
        """Whether step `step` may update the weights; raises TrainingDiverged after
        `max_in_a_row` non-finite steps in a row."""
        if finite:
            self.in_a_row = 0
            return True
        self.total += 1
        self.in_a_row += 1
        if self.total <= WARN_FIRST or self.total % WARN_EVERY == 0:
            log.warning(
                "step %d: non-finite %s: update skipped (%d in a row, %d in all)",
                step,
                detail or "loss or gradient",
                self.in_a_row,
                self.total,
            )
        if self.in_a_row >= self.max_in_a_row:
            raise TrainingDiverged(
                f"training diverged: {self.in_a_row} steps in a row up to step {step} had a NaN/Inf loss or "
                f"gradient (train.max_nonfinite_steps = {self.max_in_a_row}). The last checkpoint was written "
                "before it and is kept; resume from it with a lower train.lr or a longer train.warmup_steps"
            )
        return False
