"""The model's full configuration: one dataclass tree, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowomni.audio.mel import MelConfig, answer_mel_config, input_mel_config
from flowomni.model.backbone import BackboneConfig
from flowomni.model.encoder import EncoderConfig
from flowomni.model.flow_head import FlowHeadConfig


@dataclass
class ModelConfig:
    input_mel: MelConfig = field(default_factory=input_mel_config)
    output_mel: MelConfig = field(default_factory=answer_mel_config)
    tokenizer: str = "char"  # "char" or an HF tokenizer name/path
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    flow: FlowHeadConfig = field(default_factory=FlowHeadConfig)
    group: int = 4  # mel frames per LLM step: 86 Hz / 4 = 21.5 Hz autoregressive rate
    delay: int = 2  # text leads speech by this many positions
    w_flow: float = 1.0
    w_state: float = 0.5
    feedback_noise: float = 0.5  # std of noise on fed-back (normalised) mel groups in training
    stage1_train_embeddings: bool = True  # control tokens are new: let them learn in stage 1
    vocoder: str = "griffin-lim"
