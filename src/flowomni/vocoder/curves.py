"""Loss curves of vocoder runs: one panel per loss, runs side by side, valid points marked.

`train_vocoder` draws its own run into `run_dir/loss_curves.png`; to compare runs:

    python -m flowomni.vocoder.curves reports/vocoder_training.png runs/vocoder_cont gan=runs/vocoder_gan
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PANELS = (
    ("mel", "mel L1 (log-mel)"),
    ("stft", "multi-resolution STFT"),
    ("adv", "adversarial (G)"),
    ("fm", "feature matching"),
)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (not a vocoder run folder?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_runs(runs: dict[str, str | Path], out: str | Path) -> Path:
    """Draw the runs' train (lines) and valid (dots) losses; panels without data are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {label: read_metrics(d) for label, d in runs.items()}
    panels = [(k, title) for k, title in PANELS if any(k in r for recs in records.values() for r in recs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, (label, recs) in enumerate(records.items()):
            color = f"C{i}"
            train = [(r["step"], r[key]) for r in recs if key in r]
            valid = [(r["step"], r[f"valid_{key}"]) for r in recs if f"valid_{key}" in r]
            if train:
                ax.plot(*zip(*train), "-", color=color, label=label, alpha=0.7)
            if valid:
                ax.plot(*zip(*valid), "o", color=color, markersize=4, label=f"{label} (valid)")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m flowomni.vocoder.curves OUT.png [LABEL=]RUN_DIR ...", file=sys.stderr)
        return 2
    runs = {}
    for spec in args[1:]:
        label, _, path = spec.rpartition("=")
        runs[label or Path(path).name] = path
    try:
        print(plot_runs(runs, args[0]))
    except FileNotFoundError as e:
        print(f"flowomni.vocoder.curves: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
