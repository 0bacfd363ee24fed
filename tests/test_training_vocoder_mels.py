"""`flowomni vocoder-mels`: a model's teacher-forced mel of answer clips, aligned with their audio,
in a manifest the vocoder's training reads."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowomni.cli import main as cli_main
from flowomni.config import load_config
from flowomni.model.flowomni import FlowOmni
from flowomni.vocoder.data import Clips
from flowomni.vocoder.train import VocoderTrainConfig

from helpers.corpus import make_corpus
from helpers.models import saved_flow_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def model_dir(tmp_path, spoken_items):
    make_corpus(tmp_path / "corpus", spoken_items)
    return saved_flow_model(tmp_path, method="euler", steps=2, temperature=0.0)  # a deterministic drawing


def test_mels_are_the_models_own_aligned_with_their_audio(tmp_path, model_dir, capsys):
    out, cache = tmp_path / "gta", str(tmp_path / "cache")
    args = [str(model_dir), "--manifest", str(tmp_path / "corpus/train.jsonl"), "--out", str(out)]
    assert cli_main(["vocoder-mels", *args, "--cache-dir", cache, "--batch-size", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert result["written"] == len(lines) == 4  # the corpus's four items; its corrupt question skipped
    assert result["skipped"] == {"bad json": 1, "bad question audio": 1}

    # what the file holds is what the model draws, teacher-forced, for that item
    model = FlowOmni.load(model_dir).float().eval()
    from flowomni.data.manifest import read_manifest
    from flowomni.training.dataset import teacher_forced_examples

    items = [it for it in read_manifest(tmp_path / "corpus/train.jsonl")[0] if it.id == lines[1]["id"]]
    ds, collate = teacher_forced_examples(model, items, "s2s", cache)
    drawn, recorded = model.predict_groups(collate([ds[0]]))[0]
    torch.testing.assert_close(load_file(str(out / lines[1]["answer_mel"]))["mel"], drawn)
    assert not torch.equal(drawn, recorded)

    # the vocoder's training reads them in place of the recorded mel, every one fitting its clip
    vcfg = load_config(VocoderTrainConfig, ROOT / "configs" / "vocoder.yaml")
    clips = Clips([str(out / "train.jsonl")], vcfg.mel)
    assert len(clips) == 4 and not clips.skipped
    assert any(m.shape == drawn.shape and torch.allclose(m, drawn, atol=1e-5, rtol=1e-5) for m in clips.mels)


def test_self_fed_mels_read_the_models_own_draws(tmp_path, model_dir, capsys):
    """--self-fed 1: every group drawn from states that read the model's earlier draws, not the
    recording's; still one mel per clip, aligned with it."""
    base = [str(model_dir), "--manifest", str(tmp_path / "corpus/train.jsonl"), "--cache-dir", str(tmp_path / "c")]
    assert cli_main(["vocoder-mels", *base, "--out", str(tmp_path / "tf")]) == 0
    assert cli_main(["vocoder-mels", *base, "--out", str(tmp_path / "sf"), "--self-fed", "1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["self_fed"] == 1.0
    tf = load_file(str(tmp_path / "tf/mels/000001.safetensors"))["mel"]
    sf = load_file(str(tmp_path / "sf/mels/000001.safetensors"))["mel"]
    assert sf.shape == tf.shape and not torch.allclose(sf, tf, atol=1e-4)
    assert torch.allclose(sf[:4], tf[:4], atol=1e-5)  # the first group reads no earlier group
    assert cli_main(["vocoder-mels", *base, "--out", str(tmp_path / "x"), "--self-fed", "1.5"]) == 2
    assert "self_fed" in capsys.readouterr().err


def test_bad_arguments_are_clear_errors(tmp_path, model_dir, capsys):
    base = [str(model_dir), "--manifest", str(tmp_path / "corpus/train.jsonl"), "--out", str(tmp_path / "o")]
    assert cli_main(["vocoder-mels", *base, "--limit", "-1"]) == 2
    assert "--limit" in capsys.readouterr().err
    missing = [str(model_dir), "--manifest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]
    assert cli_main(["vocoder-mels", *missing]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
