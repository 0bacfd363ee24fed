"""Mel-spectrogram pictures (matplotlib Agg, no display needed)."""

from __future__ import annotations

from pathlib import Path

import torch


def plot_mels(mels: dict[str, torch.Tensor], path: str | Path, title: str | None = None) -> None:
    """One panel per named log-mel [T, n_mels], stacked vertically, same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {k: v.detach().float().cpu().numpy() for k, v in mels.items()}
    lo = min(a.min() for a in arrays.values())
    hi = max(a.max() for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), 1, figsize=(8, 2.2 * len(arrays)), squeeze=False)
    for ax, (name, a) in zip(axes[:, 0], arrays.items()):
        im = ax.imshow(a.T, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    fig.colorbar(im, ax=axes[:, 0].tolist(), shrink=0.8, label="log-mel")
    if title:
        fig.suptitle(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
