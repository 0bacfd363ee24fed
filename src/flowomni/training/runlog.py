"""What a run writes for people to read: metrics.jsonl, TensorBoard scalars, loss-curve PNG."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunLog:
    """Append-only metrics per (step, split); on resume, lines past the resumed step are
    dropped so curves never double back."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            keep = [line for line in self.path.read_text().splitlines() if _step(line) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in keep))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)
            except ImportError:  # tensorboard is optional for users who install by hand
                log.info("tensorboard is not installed: scalars go to metrics.jsonl only")

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path)

    def plot(self, path: Path, keys: tuple[str, ...] = ("loss", "text_ce", "flow", "state_ce")) -> None:
        """One panel per loss, train and valid on the same axes (log scale)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        recs = self.records()
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
        for ax, key in zip(axes, keys):
            for split, style in (("train", "-"), ("valid", "o-")):
                pts = [(r["step"], r[key]) for r in recs if r["split"] == split and r.get(key, 0) > 0]
                if pts:
                    ax.plot(*zip(*pts), style, label=split, markersize=3)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.set_yscale("log")
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)

    @staticmethod
    def compare(runs: dict[str, Path], path: Path, keys: tuple[str, ...] = ("text_ce",)) -> None:
        """Several runs' valid curves on one panel per key (e.g. the same recipe with two speech
        heads): `python -c "from flowomni.training.runlog import RunLog; RunLog.compare(...)"`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for label, run_dir in runs.items():
                recs = read_records(Path(run_dir) / "metrics.jsonl")
                pts = [(r["step"], r[key]) for r in recs if r["split"] == "valid" and key in r]
                if pts:
                    ax.plot(*zip(*pts), "o-", label=label, markersize=3)
            ax.set_title(f"valid {key}")
            ax.set_xlabel("step")
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (none if there is no file yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line from a crash is dropped
