"""flowomni: an LLM that hears speech and answers in text plus continuous mel frames (Flow-Omni)."""

__version__ = "0.1.0"
