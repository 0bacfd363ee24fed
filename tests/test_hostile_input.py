"""The CLIs and loaders against hostile input (issue 23, findings 6-9): long questions for
`flowomni chat`, manifest lines that break the reader, corrupt checkpoints and absurd
configs, and training runs whose losses turn NaN. Each test reproduces what an outside
audit got through; every refusal must be a message naming the file or key, exit code 2,
and no traceback.
"""

from __future__ import annotations

import json
import math
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file, save_file

from flowomni.checkpoint import latest_checkpoint, load_model_state, nonfinite_tensors
from flowomni.cli import main
from flowomni.config import to_dict
from flowomni.data.check import check_manifest
from flowomni.data.manifest import read_manifest
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer
from flowomni.serving.testing import make_tiny_checkpoint
from flowomni.training.config import TrainConfig
from flowomni.training.dataset import TaskDataset, collate
from flowomni.training.guard import TrainingDiverged
from flowomni.training.loop import train

from helpers.models import tiny_config
from helpers.speech import MemoryFeatures

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("hostile_input") / "model")


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run `flowomni ARGV`; it must exit 2 with a message holding `words`, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err
    return err


def tone(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- 6: flowomni chat on a long question


def test_chat_refuses_a_ten_minute_question_and_can_be_told_otherwise(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = tone(tmp_path / "ten_minutes.wav", 600, rate=8000)
    refused(["chat", str(long), "--checkpoint", str(checkpoint)], capsys, "600.0 s", "limit of 30 s", "--max-seconds")
    q = tone(tmp_path / "forty_seconds.wav", 40)
    refused(["chat", str(q), "--checkpoint", str(checkpoint)], capsys, "40.0 s")
    assert (
        main(
            [
                "chat",
                str(q),
                "--checkpoint",
                str(checkpoint),
                "--max-seconds",
                "45",
                "--no-speech",
                "--set",
                "max_steps=3",
                "--json",
            ]
        )
        == 0
    )
    assert "text" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# ---------------------------------------------------------------- 7: manifest lines that break the reader


def test_manifest_lines_failing_for_any_reason_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tone(tmp_path / "q.wav", 1.0)
    good = {"id": "good", "question_text": "q?", "answer_text": "a.", "question_audio": "q.wav"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "id": "long", "question_audio": "x" * 5000 + ".wav"}),  # was OSError: File name too long
        "[" * 100_000 + "]" * 100_000,  # was RecursionError
        '{"id": ' + "9" * 5000 + ', "question_text": "q", "answer_text": "a"}',  # a 5,000-digit number
        json.dumps({**good, "id": "deep", "question_audio": "a/" * 3000 + "q.wav"}),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    items, stats = read_manifest(path)  # the reader training uses too
    assert [i.id for i in items] == ["good"] and stats.total == 4, stats.counts
    assert stats.counts["bad audio path"] == 2 and stats.counts["bad json"] == 2
    report = check_manifest(path, progress=False)
    assert (report.items, report.ok_items, report.lines.total) == (1, 1, 4)
    assert main(["data", "check", str(path)]) == 0
    assert "skipped 4" in capsys.readouterr().out


def test_data_check_counts_an_audio_file_that_fails_in_any_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flowomni.data.check as check

    for name in ("a.wav", "b.wav"):
        tone(tmp_path / name, 1.0)
    path = tmp_path / "m.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": n, "question_text": "q", "answer_text": "a", "question_audio": n}) + "\n"
            for n in ("a.wav", "b.wav")
        )
    )
    real = check.load_audio

    def flaky(p: Path, **kw: object) -> np.ndarray:
        if Path(p).name == "b.wav":
            raise RuntimeError("the disk went away")
        return real(p, **kw)

    monkeypatch.setattr(check, "load_audio", flaky)
    report = check_manifest(path, progress=False)
    assert report.ok_items == 1 and report.problems.counts == {"unreadable file": 1}


# ---------------------------------------------------------------- 8: corrupt checkpoints, absurd configs


def damaged(checkpoint: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(checkpoint, out)
    return out


def test_corrupt_checkpoints_are_named_not_tracebacks(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def chat(path: Path, *words: str) -> None:
        refused(["chat", "--text", "hi", "--checkpoint", str(path)], capsys, *words)

    truncated = damaged(checkpoint, tmp_path, "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    chat(truncated, "model.safetensors", "unreadable")

    garbled = damaged(checkpoint, tmp_path, "garbled")
    (garbled / "model.safetensors").write_bytes(data[:8] + b"\x00garbage{" * 50 + data[8 + 450 :])
    chat(garbled, "model.safetensors", "unreadable")

    shape = damaged(checkpoint, tmp_path, "shape")
    state = load_file(str(shape / "model.safetensors"))
    key = next(k for k in state if k.endswith("state_head.weight"))
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(shape / "model.safetensors"))
    chat(shape, "model.safetensors", key, "in the file but")

    nan = damaged(checkpoint, tmp_path, "nan")
    state = load_file(str(nan / "model.safetensors"))
    state[key] = state[key] * float("nan")
    save_file(state, str(nan / "model.safetensors"))
    chat(nan, "model.safetensors", "NaN")

    meta = damaged(checkpoint, tmp_path, "meta")
    (meta / "config.yaml").write_text("model: [unclosed\n")
    chat(meta, "config.yaml")


@pytest.mark.parametrize(
    "edit, words",
    [
        ({"flow": {"width": 1_000_000_000}}, ("config.yaml", "model.flow.width", "1 to 65536")),
        ({"backbone": {"config": {"hidden_size": 10_000_000}}}, ("parameters", "GB", "more than this machine")),
        ({"group": -1}, ("model.group", "out of range")),
    ],
)
def test_absurd_checkpoint_configs_are_refused_before_allocation(
    checkpoint: Path, tmp_path: Path, edit: dict, words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = damaged(checkpoint, tmp_path, "absurd")
    cfg = yaml.safe_load((ckpt / "config.yaml").read_text())
    for section, value in edit.items():
        cfg["model"][section] = {**cfg["model"][section], **value} if isinstance(value, dict) else value
    if "backbone" in edit:  # a checkpoint rebuilds its backbone from backbone/config.json
        hf = json.loads((ckpt / "backbone" / "config.json").read_text())
        (ckpt / "backbone" / "config.json").write_text(json.dumps({**hf, **edit["backbone"]["config"]}))
    (ckpt / "config.yaml").write_text(yaml.safe_dump(cfg))
    refused(["chat", "--text", "hi", "--checkpoint", str(ckpt)], capsys, *words)


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lr=.nan", ("train.lr", "nan")),
        ("train.batch_size=-1", ("train.batch_size", "1 to 65536")),
        ("model.flow.width=1000000000", ("model.flow.width", "1 to 65536")),
        ("model.backbone.config.hidden_size=10000000", ("parameters", "GB")),
        ("train.betas=[0.9, 1.5]", ("train.betas", "1.5")),
    ],
)
def test_absurd_training_configs_exit_2_before_building(
    override: str, words: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(["train", str(CONFIG), "--run-dir", str(tmp_path / "run"), "--set", override], capsys, *words)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 9: non-finite losses in training


class Poisoned(FlowOmni):
    """A FlowOmni whose loss turns NaN on chosen forward calls (as a too-high lr makes it)."""

    def __init__(self, *a: object, bad: set[int], **kw: object) -> None:
        super().__init__(*a, **kw)
        self.bad, self.calls = bad, 0

    def forward(self, batch: dict) -> dict:
        out = super().forward(batch)
        if self.training:
            self.calls += 1
            if self.calls in self.bad:
                out = {**out, "loss": out["loss"] * float("nan")}
        return out


@pytest.fixture(scope="module")
def dataset(spoken_items: list) -> tuple:
    cfg, tok = tiny_config(), CharTokenizer()
    ds = TaskDataset(
        spoken_items,
        [t.value for t in Task],
        tok,
        MemoryFeatures(cfg.input_mel),
        MemoryFeatures(cfg.output_mel),
        group=cfg.group,
        delay=cfg.delay,
        stack=cfg.encoder.stack,
    )
    return cfg, tok, ds


def run(dataset: tuple, run_dir: Path, bad: set[int], *, steps: int, **train_kw: object) -> tuple[Poisoned, dict]:
    cfg, tok, ds = dataset
    torch.manual_seed(0)
    model = Poisoned(cfg, tok, bad=bad)
    tcfg = TrainConfig(
        max_steps=steps,
        batch_size=4,
        lr=1e-3,
        warmup_steps=1,
        log_every=1,
        eval_every=1000,
        save_every=2,
        keep_checkpoints=10,
        tensorboard=False,
        **train_kw,
    )
    out = train(
        model,
        ds,
        None,
        partial(collate, group=cfg.group, pad_id=tok.pad_id, silence=math.log(1e-5)),
        tcfg,
        run_dir,
        config_yaml=yaml.safe_dump({"model": to_dict(cfg)}),
        files=model.checkpoint_files(),
    )
    return model, out


def test_nonfinite_steps_are_skipped_counted_and_logged(dataset: tuple, tmp_path: Path) -> None:
    model, out = run(dataset, tmp_path / "run", bad={3, 4}, steps=6)
    assert out["step"] == 6 and out["nonfinite_steps"] == 2
    assert not nonfinite_tensors(model.state_dict())  # was NaN everywhere from step 3 on
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite_steps"] for r in records] == [0, 0, 1, 2, 2, 2]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert not nonfinite_tensors(load_model_state(latest_checkpoint(tmp_path / "run")))


def test_a_diverged_run_stops_and_keeps_its_last_good_checkpoint(dataset: tuple, tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row.*max_nonfinite_steps = 3.*train.lr"):
        run(dataset, tmp_path / "run", bad=set(range(4, 100)), steps=20, max_nonfinite_steps=3)
    last = latest_checkpoint(tmp_path / "run")
    assert last is not None and last.name == "step_00000004"  # steps 4-6 skipped: stopped at 6, nothing saved after
    assert not nonfinite_tensors(load_model_state(last))


def test_nonfinite_weights_are_never_saved_over_a_good_checkpoint(
    dataset: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Poisoned.forward

    def forward(self: Poisoned, batch: dict) -> dict:
        if self.training and self.calls == 2:  # the weights themselves go bad after step 2's checkpoint
            with torch.no_grad():
                self.state_head.bias.fill_(float("inf"))
        return original(self, batch)

    monkeypatch.setattr(Poisoned, "forward", forward)
    with pytest.raises(TrainingDiverged, match="hold NaN/Inf.*not saved"):
        run(dataset, tmp_path / "run", bad=set(), steps=6)
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
