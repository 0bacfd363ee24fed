"""YAML configs map onto dataclasses; overrides reach any field; typos are errors."""

import pytest

from flowomni.config import ConfigError, load_config, save_config
from flowomni.model.config import ModelConfig


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("group: 2\nflow:\n  steps: 4\nbackbone:\n  config:\n    hidden_size: 32\n")
    cfg = load_config(ModelConfig, p, ["flow.steps=8", "flow.method=euler", "output_mel.n_mels=100", "delay=3"])
    assert cfg.group == 2 and cfg.flow.steps == 8 and cfg.flow.method == "euler"
    assert cfg.output_mel.n_mels == 100 and cfg.delay == 3
    assert cfg.backbone.config["hidden_size"] == 32
    assert cfg.backbone.config["num_hidden_layers"] == 4  # defaults of a dict field are kept
    # YAML reads 1e-4 (no dot) as a string; a float field takes it as the number it means
    assert load_config(ModelConfig, None, ["w_flow=1e-4"]).w_flow == 1e-4
    assert load_config(ModelConfig, None, ["w_state=+2E3"]).w_state == 2000.0
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(ModelConfig, tmp_path / "out.yaml")
    assert again == cfg


def test_unknown_keys_and_bad_types_are_named(tmp_path):
    with pytest.raises(ConfigError, match="flow.*unknown key.*stpes"):
        load_config(ModelConfig, None, ["flow.stpes=8"])
    with pytest.raises(ConfigError, match="flow.steps: expected int"):
        load_config(ModelConfig, None, ["flow.steps=many"])
    with pytest.raises(ConfigError, match="w_flow: expected float, got '1e-4x'"):
        load_config(ModelConfig, None, ["w_flow=1e-4x"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(ModelConfig, None, ["flow.steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(ModelConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="flow.method: expected str, got False .*quote it"):
        load_config(ModelConfig, None, ["flow.method=no"])  # YAML 1.1: a bare no is a boolean


def test_base_file_is_merged_under_the_variant(tmp_path):
    from flowomni.config import read_yaml

    (tmp_path / "a.yaml").write_text("x: 1\nsub: {p: 1, q: 2}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nsub: {q: 3}\ny: 4\n")
    assert read_yaml(tmp_path / "b.yaml") == {"x": 1, "sub": {"p": 1, "q": 3}, "y": 4}
    (tmp_path / "c.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        read_yaml(tmp_path / "c.yaml")


def test_discrete_config_differs_from_tiny_only_in_its_speech_output():
    from pathlib import Path

    from flowomni.config import load_config, to_dict
    from flowomni.training.experiment import ExperimentConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    a, b = (to_dict(load_config(ExperimentConfig, root / name)) for name in ("tiny.yaml", "tiny_discrete.yaml"))
    assert a["train"] == b["train"] and a["data"] == b["data"]
    assert {k for k in a["model"] if a["model"][k] != b["model"][k]} <= {"speech_head", "codec", "code_head"}
    assert b["model"]["speech_head"] == "discrete"


@pytest.mark.parametrize("bad", ["='", "a.b='", "=1", "a..b=1", "nokey"])
def test_malformed_overrides_are_config_errors(bad):
    from flowomni.training.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match="override"):
        load_config(ExperimentConfig, None, [bad])


def test_shipped_recipe_changes_only_what_its_header_says():
    """configs/flowomni_tiny.yaml is tiny.yaml plus what its header says, nothing else: the
    Whisper encoder, aligned pacing, the flow head, the data mix and augmentation, the start
    from the text stage, bf16 and the budget; the text stage is that recipe on written questions."""
    from pathlib import Path

    from flowomni.config import load_config, to_dict
    from flowomni.training.experiment import ExperimentConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    a, b = (to_dict(load_config(ExperimentConfig, root / name)) for name in ("tiny.yaml", "flowomni_tiny.yaml"))
    assert {k for k in a["data"] if a["data"][k] != b["data"][k]} == {
        "tasks",
        "text_manifest",
        "text_tasks",
        "text_items",
        "augment",
    }
    assert b["data"]["tasks"] == ["s2s", "s2t", "asr"] and b["data"]["text_tasks"] == ["t2s", "t2t", "tts"]
    assert b["data"]["augment"]["variants"] == 4
    assert {k for k in a["model"] if a["model"][k] != b["model"][k]} == {"encoder", "flow", "text_pacing"}
    assert b["model"]["text_pacing"] == "aligned"
    assert b["model"]["flow"]["prior"] == "mean" and b["model"]["flow"]["width"] == 512
    assert b["model"]["encoder"] == {**a["model"]["encoder"], "pretrained": "whisper-tiny.en", "stack": 4}
    assert {k for k in a["train"] if a["train"][k] != b["train"][k]} == {"max_steps", "mixed_precision"}
    assert b["init_from"].startswith("runs/flowomni_tiny_text/") and b["init_skip"] == ["adapter."]
    text = to_dict(load_config(ExperimentConfig, root / "flowomni_tiny_text.yaml"))
    assert text["model"] == b["model"] and text["data"]["tasks"] == ["t2t"] and not text["init_from"]
