"""`flowomni eval-codec CONFIG`: how well speech survives the discrete baseline's codec.

Resynthesises held-out answers (those `flowomni train-codec` kept out of fitting: the valid
manifest's) through the fitted codec with its first 1, 2, 4, ... codebooks and through the
model's vocoder, and has the independent ASR transcribe them: the discrete baseline's ceiling
(a codec that garbles speech would make the comparison with the flow head unfair). The
result is printed and stored in the codec folder's meta.json under "resynthesis".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from flowomni.audio.io import AudioError
from flowomni.config import add_config_arguments, config_from_args
from flowomni.data.fsutil import atomic_write_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "experiment", run=False)
    p.add_argument("--codec", default=None, help="codec folder (default: model.codec.path)")
    p.add_argument("--items", type=int, default=100, help="held-out answers to resynthesise")
    p.add_argument("--vocoder", default=None, help="vocoder (default: model.vocoder)")


def run(args: argparse.Namespace) -> int:
    from flowomni.checkpoint import CheckpointError
    from flowomni.model.codec import CodecError, MelCodec
    from flowomni.training.codec import answer_features, group_settings, valid_groups
    from flowomni.training.experiment import ExperimentConfig
    from flowomni.vocoder.load import VocoderError, load_vocoder

    cfg = config_from_args(ExperimentConfig, args)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per transcription otherwise
    folder = args.codec or cfg.model.codec.path
    try:
        if not folder:
            raise ValueError("no codec folder: set model.codec.path or pass --codec")
        if not cfg.data.valid_manifest:
            raise ValueError("data.valid_manifest is empty: there are no held-out answers to resynthesise")
        codec = MelCodec.load(folder)
        feats = answer_features(cfg.data.cache_dir, cfg.model.output_mel)
        _, _, held_out = valid_groups(cfg, feats)
        vocoder = load_vocoder(args.vocoder or cfg.model.vocoder, cfg.model.output_mel)
    except (CheckpointError, CodecError, VocoderError, FileNotFoundError, ValueError) as e:
        print(f"flowomni eval-codec: {e}", file=sys.stderr)
        return 2
    report = resynthesis_wer(
        codec,
        cfg.data.valid_manifest,
        feats,
        vocoder,
        args.items,
        silence=group_settings(cfg)["silence"],
        only=held_out,
    )
    meta_file = Path(folder) / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["resynthesis"] = report
    atomic_write_text(meta_file, json.dumps(meta, indent=1))
    print(json.dumps(report))
    return 0


def stage_counts(n_q: int) -> list[int]:
    """1, 2, 4, ... and n_q: how many codebooks the resynthesis WER is measured with."""
    return sorted({*(2**i for i in range(n_q.bit_length()) if 2**i <= n_q), n_q})


@torch.no_grad()
def resynthesis_wer(
    codec: Any, manifest: str, feats: Any, vocoder: Any, n: int, *, silence: float, only: set[str] | None = None
) -> dict[str, Any]:
    """ASR WER (vs the answer text) of the first n distinct answers of a manifest (among
    `only`, if given): vocoded from their own mel, and from the codec's reconstruction with
    the first q codebooks."""
    from flowomni.data.manifest import read_manifest
    from flowomni.evaluation.asr import Transcriber
    from flowomni.evaluation.text import wer
    from flowomni.model.codec import to_groups

    asr = Transcriber()
    qs = stage_counts(codec.n_q)
    refs: list[str] = []
    hyps: dict[str, list[str]] = {"vocoded": [], **{f"codec_q{q}": [] for q in qs}}
    seen: set[str] = set()
    for item in read_manifest(manifest)[0]:
        if len(refs) >= n:
            break
        path = str(item.answer_audio)
        if item.answer_audio is None or path in seen or (only is not None and path not in only):
            continue
        seen.add(path)
        try:
            mel = torch.from_numpy(feats.get(item.answer_audio)).float()
        except (AudioError, OSError, ValueError):
            continue
        refs.append(item.answer_text)
        hyps["vocoded"].append(asr.transcribe(vocoder(mel).numpy(), vocoder.sample_rate))
        codes = codec.encode(to_groups(mel, codec.group, silence))
        for q in qs:
            rec = codec.decode(codes[:, :q]).flatten(0, 1)[: mel.shape[0]]
            hyps[f"codec_q{q}"].append(asr.transcribe(vocoder(rec).numpy(), vocoder.sample_rate))
    if not refs:
        return {"items": 0}
    return {
        "items": len(refs),
        "vocoder": getattr(vocoder, "name", str(vocoder)),
        "wer": {k: round(wer(refs, h), 4) for k, h in hyps.items()},
        "examples": [{"ref": refs[i], **{k: h[i] for k, h in hyps.items()}} for i in range(min(3, len(refs)))],
    }
