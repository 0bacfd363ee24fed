"""Evaluation: accuracy, ASR-based WER of spoken answers, latency, reports."""
