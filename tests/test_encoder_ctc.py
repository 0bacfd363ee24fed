"""`flowomni train-encoder`: CTC pretraining of the speech encoder, and loading its output
into a model (new run: model.encoder.pretrained; running one: flowomni train --load-encoder)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flowomni.config import to_dict
from flowomni.model.encoder import EncoderConfig, SpeechEncoder
from flowomni.model.flowomni import FlowOmni
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.encoder_ctc import CTCEncoder

from helpers.corpus import corpus_data, make_corpus
from helpers.models import tiny_config


def test_greedy_ctc_collapses_repeats_and_drops_blanks():
    enc = SpeechEncoder(EncoderConfig(d_model=16, n_layers=1, n_heads=2, ffn_dim=32))
    m = CTCEncoder(enc, 16, vocab_size=5)  # blank = 5
    path = [1, 1, 5, 1, 2, 2, 5, 5, 3]  # -> 1 1 2 3 (a blank separates the repeated 1)
    logits = torch.full((1, len(path), 6), -10.0)
    logits[0, torch.arange(len(path)), torch.tensor(path)] = 10.0
    m.forward = lambda mel, n: (logits.log_softmax(-1), torch.tensor([len(path)]))  # type: ignore[method-assign]
    assert m.greedy(torch.zeros(1, 18, 80), torch.tensor([18])) == [[1, 1, 2, 3]]
    m.forward = lambda mel, n: (logits.log_softmax(-1), torch.tensor([4]))  # type: ignore[method-assign]
    assert m.greedy(torch.zeros(1, 18, 80), torch.tensor([8])) == [[1, 1]]  # only the 4 valid frames count


@pytest.mark.slow
def test_train_encoder_cli_output_loads_into_new_and_running_models(tmp_path, spoken_items):
    make_corpus(tmp_path / "corpus", spoken_items)
    mcfg = tiny_config()
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": to_dict(mcfg),
        "data": corpus_data(tmp_path),
        "train": {
            "batch_size": 4,
            "max_steps": 1,
            "lr": 1e-12,
            "min_lr": 1e-12,
            "warmup_steps": 0,
            "tensorboard": False,
            "eval_every": 100,
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    enc_dir = tmp_path / "enc"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowomni.cli",
            "train-encoder",
            str(tmp_path / "cfg.yaml"),
            "--out",
            str(enc_dir),
            "--steps",
            "3",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["train_clips"] == len(spoken_items) and out["skipped"] >= 1  # the corrupt clip
    assert 0.0 <= out["valid_cer"] and out["valid_examples"]
    saved = load_file(str(enc_dir / "model.safetensors"))

    # a new model: model.encoder.pretrained -> weights and the feature stats they were trained with
    mcfg.encoder.pretrained = str(enc_dir)
    model = FlowOmni(mcfg, CharTokenizer())
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, saved[f"encoder.{k}"])
    torch.testing.assert_close(model.in_mean, saved["in_mean"])
    assert model.in_stats_fixed

    # a running model: --load-encoder swaps them in after loading (lr ~0: the step keeps them)
    r = subprocess.run(
        [sys.executable, "-m", "flowomni.cli", "train", str(tmp_path / "cfg.yaml"), "--load-encoder", str(enc_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_file(str(tmp_path / "run/step_00000001/model.safetensors"))
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(ckpt[f"encoder.{k}"], v, atol=1e-6, rtol=0)


def test_mismatched_pretrained_encoder_is_a_clear_error(tmp_path):
    from flowomni.checkpoint import save_checkpoint

    small = SpeechEncoder(EncoderConfig(d_model=16, n_layers=1, n_heads=2, ffn_dim=32))
    save_checkpoint(
        tmp_path / "enc",
        model_state={
            **{f"encoder.{k}": v for k, v in small.state_dict().items()},
            "in_mean": torch.zeros(80),
            "in_std": torch.ones(80),
        },
        config_yaml="{}\n",
        meta={"step": 1},
        save_rng=False,
    )
    with pytest.raises(ValueError, match="does not match model.encoder"):
        SpeechEncoder(EncoderConfig()).load_pretrained(str(tmp_path / "enc"))
