"""The Flow-Omni model: speech encoder + adapter, causal-LM backbone, state and flow heads."""
