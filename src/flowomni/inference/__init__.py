"""Inference: incremental decoding of text + speech and streaming vocoding."""
