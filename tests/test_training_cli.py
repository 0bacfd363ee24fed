"""`flowomni train CONFIG` end to end on a tiny corpus: runs, skips a corrupt file, resumes."""

import json
import subprocess
import sys

import yaml

from flowomni.config import to_dict

from helpers.corpus import corpus_data, make_corpus
from helpers.models import tiny_config


def train(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "flowomni.cli", "train", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_train_cli_runs_skips_bad_input_and_resumes(tmp_path, spoken_items):
    make_corpus(tmp_path / "corpus", spoken_items)
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": to_dict(tiny_config()),
        "data": corpus_data(tmp_path),
        "train": {
            "batch_size": 4,
            "max_steps": 4,
            "eval_every": 2,
            "save_every": 2,
            "log_every": 1,
            "warmup_steps": 1,
            "tensorboard": False,
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    r = train([str(tmp_path / "cfg.yaml"), "--max-steps", "2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipped" in r.stderr and "bad question audio" in r.stderr and "manifest" in r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["step"] == 2 and out["checkpoint"].endswith("step_00000002")

    r = train([str(tmp_path / "cfg.yaml")], tmp_path)  # would overwrite: refused, nothing lost
    assert r.returncode == 2 and "--resume" in r.stderr

    r = train([str(tmp_path / "cfg.yaml"), "--resume", "--set", "train.log_every=2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert steps.count(2) == 2 and max(steps) == 4  # train + valid at step 2, not duplicated by the resume


def test_train_cli_names_config_errors(tmp_path):
    (tmp_path / "cfg.yaml").write_text("train:\n  batch_sise: 4\n")
    r = train([str(tmp_path / "cfg.yaml")], tmp_path)
    assert r.returncode == 2 and "batch_sise" in r.stderr
    (tmp_path / "cfg2.yaml").write_text("data:\n  train_manifest: nowhere.jsonl\n")
    r = train([str(tmp_path / "cfg2.yaml")], tmp_path)
    assert r.returncode == 2 and "nowhere.jsonl" in r.stderr
    r = train([str(tmp_path / "cfg2.yaml"), "--set", "train.sharding=zero3"], tmp_path)
    assert r.returncode == 2 and "train.sharding" in r.stderr and "zero3" in r.stderr
