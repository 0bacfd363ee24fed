"""The model's full configuration: one dataclass tree, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from flowomni.audio.mel import MelConfig, answer_mel_config, input_mel_config
from flowomni.config import Bounds, ConfigError, check_choice
from flowomni.model.backbone import BackboneConfig
from flowomni.model.code_head import CodeHeadConfig
from flowomni.model.codec import CodecConfig
from flowomni.model.encoder import EncoderConfig
from flowomni.model.flow_head import FlowHeadConfig
from flowomni.model.pacing import TEXT_PACINGS

SPEECH_HEADS = ("flow", "discrete")


@dataclass
class ModelConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "group": (1, 64),
        "delay": (0, 64),
        "w_flow": (0, 1e4),
        "w_state": (0, 1e4),
        "feedback_noise": (0, 100),
        "self_feedback": (0, 1),
    }

    input_mel: MelConfig = field(default_factory=input_mel_config)
    output_mel: MelConfig = field(default_factory=answer_mel_config)
    tokenizer: str = "char"  # "char" or an HF tokenizer name/path
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    speech_head: str = "flow"  # "flow" (continuous, the paper) or "discrete" (codec codes, Mini-Omni style)
    flow: FlowHeadConfig = field(default_factory=FlowHeadConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)  # discrete head only
    code_head: CodeHeadConfig = field(default_factory=CodeHeadConfig)  # discrete head only
    group: int = 4  # mel frames per LLM step: 86 Hz / 4 = 21.5 Hz autoregressive rate
    delay: int = 2  # text leads speech by this many positions
    # "free": the answer's text is written in its first positions (the paper); "aligned": each
    # token `text_lead` steps before the mel group where it is spoken (see pacing.py)
    text_pacing: str = "free"
    text_lead: int = 3
    w_flow: float = 1.0  # weight of the speech loss (flow matching, or the code CE of the discrete head)
    w_state: float = 0.5
    feedback_noise: float = 0.5  # std of noise on fed-back (normalised) mel groups in training (flow head)
    # share of fed-back mel groups replaced in training by the model's own draw (flow head; see
    # FlowOmni.self_fed): at inference the model reads back mel the head drew, never a recording
    self_feedback: float = 0.0
    stage1_train_embeddings: bool = True  # control tokens are new: let them learn in stage 1
    vocoder: str = "griffin-lim"

    def __post_init__(self) -> None:
        check_choice("model.text_pacing", self.text_pacing, TEXT_PACINGS)
        check_choice("model.speech_head", self.speech_head, SPEECH_HEADS)
        if self.self_feedback > 0 and self.speech_head != "flow":
            raise ConfigError(
                f"model.self_feedback {self.self_feedback} is for the flow head; "
                f"model.speech_head is {self.speech_head!r}: set it to 0"
            )

    @property
    def extra_groups(self) -> int:
        """GEN positions a spoken answer has beyond its mel groups: the discrete head's
        codebook delay drains over n_q - 1 more steps."""
        return self.codec.n_q - 1 if self.speech_head == "discrete" else 0
