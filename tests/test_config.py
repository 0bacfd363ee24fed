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
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(ModelConfig, tmp_path / "out.yaml")
    assert again == cfg


def test_unknown_keys_and_bad_types_are_named(tmp_path):
    with pytest.raises(ConfigError, match="flow.*unknown key.*stpes"):
        load_config(ModelConfig, None, ["flow.stpes=8"])
    with pytest.raises(ConfigError, match="flow.steps: expected int"):
        load_config(ModelConfig, None, ["flow.steps=many"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(ModelConfig, None, ["flow.steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(ModelConfig, tmp_path / "missing.yaml")
