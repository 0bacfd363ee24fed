"""Limits on what one question may cost, shared by `flowomni chat` and the server."""

from __future__ import annotations

# question audio: 30 s is ~750 prompt positions at 25 Hz; an hour would be 90,000 (the
# prefill's cost grows about quadratically with that, and its memory with it)
MAX_QUESTION_SECONDS = 30.0
