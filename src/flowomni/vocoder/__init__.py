"""Vocoders: mel frames -> waveform (Griffin-Lim, and a Vocos-style neural vocoder)."""
