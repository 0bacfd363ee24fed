"""Neural vocoder training: losses go down, data sources, resumable checkpoints, export, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowomni.audio import MelSpectrogram
from flowomni.checkpoint import latest_checkpoint
from flowomni.cli import main as cli_main
from flowomni.config import load_config
from flowomni.vocoder import NeuralVocoder, load_vocoder
from flowomni.vocoder.data import Clips, audio_paths
from flowomni.vocoder.train import VocoderTrainConfig, VocoderTrainer, export_generator, train_vocoder

from helpers.speech import espeak

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "model.dim=32",
    "model.intermediate=64",
    "model.layers=2",
    "disc.periods=[2,3]",
    "disc.period_channels=[4,8]",
    "disc.resolutions=[[256,64,256]]",
    "disc.resolution_channels=4",
    "train.stft_resolutions=[[256,64,256],[512,128,512]]",
    "data.segment_frames=16",
    "data.batch_size=4",
    "data.valid_items=1",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.eval_every=2",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three short recordings and a manifest pointing at two of them."""
    root = tmp_path_factory.mktemp("voice")
    texts = ["The sky is blue.", "Tuesday comes after Monday.", "Seven plus two is nine."]
    (root / "clips").mkdir()
    for i, t in enumerate(texts):
        espeak(t, root / "clips" / f"c{i}.wav", speed=200)
    lines = [json.dumps({"id": i, "answer_audio": f"clips/c{n}.wav"}) for n, i in enumerate("ab")]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "valid.jsonl").write_text(json.dumps({"id": "c", "answer_audio": "clips/c2.wav"}) + "\n")
    return root


@pytest.fixture(scope="module")
def tone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like voice_dir, but harmonic glides written with numpy: for machines without espeak-ng
    (a GPU box), where what matters is that training runs the same, not what it says."""
    import numpy as np
    import soundfile as sf

    root = tmp_path_factory.mktemp("tones")
    (root / "clips").mkdir()
    sr = 22050
    for i, (f0, f1) in enumerate([(110, 220), (180, 140), (90, 300)]):
        t = np.arange(int(sr * (1.0 + 0.3 * i))) / sr
        phase = 2 * np.pi * np.cumsum(np.linspace(f0, f1, t.size)) / sr
        wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.1 * np.hanning(t.size) ** 0.25
        sf.write(root / "clips" / f"c{i}.wav", wav.astype(np.float32), sr, subtype="PCM_16")
    lines = [json.dumps({"id": str(i), "answer_audio": f"clips/c{i}.wav"}) for i in (0, 1)]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "valid.jsonl").write_text(json.dumps({"id": "2", "answer_audio": "clips/c2.wav"}) + "\n")
    return root


def small_config(voice_dir: Path, run_dir: Path, *extra: str) -> VocoderTrainConfig:
    cfg = load_config(VocoderTrainConfig, ROOT / "configs" / "vocoder.yaml", [*SMALL, *extra])
    cfg.data.train, cfg.data.valid = [str(voice_dir / "train.jsonl")], [str(voice_dir / "valid.jsonl")]
    cfg.run_dir = str(run_dir)
    return cfg


def test_shipped_config_loads() -> None:
    cfg = load_config(VocoderTrainConfig, ROOT / "configs" / "vocoder.yaml")
    assert cfg.mel.sample_rate == 22050 and cfg.mel.hop_length == 256 and cfg.mel.n_fft == 1024
    assert 0 < cfg.train.gan_start_step <= cfg.train.max_steps


def test_data_sources_and_skipping(voice_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    bad_manifest = tmp_path / "m.jsonl"
    good_line = json.dumps({"answer_audio": str(voice_dir / "clips/c0.wav")})
    bad_manifest.write_text('{"id": "x"}\nnot json\n' + good_line + "\n")
    paths = audio_paths([str(voice_dir / "clips"), str(voice_dir / "train.jsonl")])
    assert [p.name for p in paths] == ["c0.wav", "c1.wav", "c2.wav", "c0.wav", "c1.wav"]
    cfg = small_config(voice_dir, tmp_path / "run")
    clips = Clips([str(tmp_path / "broken.wav"), str(bad_manifest), str(voice_dir / "clips" / "c1.wav")], cfg.mel)
    assert len(clips) == 2
    assert clips.skipped["manifest line without answer_audio"] == 2 and sum(clips.skipped.values()) == 3
    with pytest.raises(FileNotFoundError, match="nope"):
        audio_paths([str(tmp_path / "nope.wav")])
    with pytest.raises(ValueError, match="no usable audio"):
        Clips([str(tmp_path / "broken.wav")], cfg.mel)


def test_model_mels_replace_the_recorded_ones_and_misfits_are_skipped(voice_dir: Path, tmp_path: Path) -> None:
    """A manifest line's `answer_mel` (flowomni vocoder-mels) is what the vocoder learns from;
    one that does not fit its clip, or cannot be read, is skipped and counted by reason."""
    from safetensors.torch import save_file

    cfg = small_config(voice_dir, tmp_path / "run")
    recorded = Clips([str(voice_dir / "clips" / "c0.wav")], cfg.mel).mels[0]
    frames = recorded.shape[0]
    drawn = torch.cat([recorded.flip(0), recorded[:2]])  # any mel two frames longer than the clip
    save_file({"mel": drawn.contiguous()}, str(tmp_path / "good.safetensors"))
    save_file({"mel": drawn[: frames // 2].contiguous()}, str(tmp_path / "short.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    audio = str(voice_dir / "clips" / "c0.wav")
    lines = [{"answer_audio": audio, "answer_mel": f"{n}.safetensors"} for n in ("good", "short", "junk")]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    clips = Clips([str(tmp_path / "m.jsonl")], cfg.mel)
    assert len(clips) == 1
    torch.testing.assert_close(clips.mels[0], drawn)
    assert clips.wavs[0].shape[0] == (frames + 2) * 256  # the audio padded to the mel's whole groups
    assert clips.skipped == {"model mel does not fit its clip": 1, "unreadable model mel": 1}


def test_segments_are_aligned_with_their_mels(voice_dir: Path, tmp_path: Path) -> None:
    cfg = small_config(voice_dir, tmp_path / "run")
    clips = Clips([str(voice_dir / "clips")], cfg.mel)
    torch.manual_seed(0)
    mel, wav = clips.batch(3, 32)
    assert mel.shape == (3, 32, 80) and wav.shape == (3, 32 * 256)
    again = MelSpectrogram(cfg.mel)(wav)[:, :32]
    # away from the segment edges (where the STFT pads), the segment's audio has the segment's mel
    torch.testing.assert_close(again[:, 3:-3], mel[:, 3:-3], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("gan", [False, True])
def test_training_steps_decrease_loss_on_a_tiny_batch(voice_dir: Path, tmp_path: Path, gan: bool) -> None:
    cfg = small_config(voice_dir, tmp_path / "run", f"train.gan_start_step={0 if gan else 1000}", "train.lr=0.003")
    trainer = VocoderTrainer(cfg)
    clips = Clips(cfg.data.train, cfg.mel)
    mel, wav = clips.batch(4, 16)
    disc_before = [p.detach().clone() for p in trainer.disc.parameters()]
    first = trainer.step(mel, wav)
    for _ in range(25):
        last = trainer.step(mel, wav)
    assert last["mel"] < 0.8 * first["mel"] and last["stft"] < first["stft"], (first, last)
    moved = any(not torch.equal(a, b) for a, b in zip(disc_before, trainer.disc.parameters()))
    assert moved == gan and ("adv" in last) == gan and ("disc" in last) == gan
    assert trainer.step_count == 26


def test_bf16_autocast_trains_with_fp32_weights(voice_dir: Path, tmp_path: Path) -> None:
    """bf16 autocast (run here on the CPU): products in bf16, weights, optimizer states and
    losses fp32, and it still learns."""
    cfg = small_config(
        voice_dir,
        tmp_path / "run",
        "train.gan_start_step=0",
        "train.lr=0.003",
        "train.device=cpu",
        "train.mixed_precision=bf16",
    )
    trainer = VocoderTrainer(cfg)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.device.type == "cpu"
    mel, wav = Clips(cfg.data.train, cfg.mel).batch(4, 16)
    first = trainer.step(mel, wav)
    for _ in range(25):
        last = trainer.step(mel, wav)
    assert last["mel"] < 0.8 * first["mel"] and all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert {p.dtype for p in [*trainer.generator.parameters(), *trainer.disc.parameters()]} == {torch.float32}
    assert {v.dtype for st in trainer.opt_g.state.values() for k, v in st.items() if k != "step"} == {torch.float32}


def test_device_and_precision_settings_are_checked(voice_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mixed_precision must be"):
        VocoderTrainer(small_config(voice_dir, tmp_path / "run", "train.mixed_precision=fp8"))
    auto = VocoderTrainer(small_config(voice_dir, tmp_path / "run"))
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert auto.amp_dtype is None  # fp32 unless asked
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            VocoderTrainer(small_config(voice_dir, tmp_path / "run", "train.device=cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_training_matches_cpu_and_resumes(tone_dir: Path, tmp_path: Path) -> None:
    """On a GPU, the first steps give the CPU's losses (TF32 products: loose tolerance); a
    checkpoint saved from the GPU resumes there with the same next step."""
    extra = ["train.gan_start_step=1"]
    runs = {}
    for device in ("cpu", "cuda"):
        trainer = VocoderTrainer(small_config(tone_dir, tmp_path / device, *extra, f"train.device={device}"))
        torch.manual_seed(1)
        mel, wav = Clips(trainer.cfg.data.train, trainer.cfg.mel).batch(4, 16)
        runs[device] = [trainer.step(mel, wav) for _ in range(3)]
    for a, b in zip(runs["cpu"], runs["cuda"]):
        assert b["mel"] == pytest.approx(a["mel"], rel=2e-2) and b["stft"] == pytest.approx(a["stft"], rel=2e-2)
    cfg = small_config(tone_dir, tmp_path / "gpu", "train.gan_start_step=1", "train.save_every=2")
    straight = train_vocoder(cfg, max_steps=3)
    cfg2 = small_config(tone_dir, tmp_path / "gpu2", "train.gan_start_step=1", "train.save_every=2")
    train_vocoder(cfg2, max_steps=2)
    resumed = train_vocoder(cfg2, max_steps=3, resume=True)
    assert resumed["step"] == straight["step"] == 3
    assert resumed["mel"] == pytest.approx(straight["mel"], rel=1e-2)


def test_resume_continues_exactly(voice_dir: Path, tmp_path: Path) -> None:
    """Stop at step 2 and resume (through the CLI): steps 3-4 have the losses of an
    uninterrupted run, generator and discriminator (GAN from step 2) alike."""
    extra = ["train.gan_start_step=1", "train.save_every=2"]
    straight = small_config(voice_dir, tmp_path / "straight", *extra)
    train_vocoder(straight, max_steps=4)
    base = [
        "train-vocoder",
        str(ROOT / "configs" / "vocoder.yaml"),
        *[a for s in SMALL + extra for a in ("--set", s)],
        "--set",
        f"data.train=[{voice_dir / 'train.jsonl'}]",
        "--set",
        f"data.valid=[{voice_dir / 'valid.jsonl'}]",
        "--run-dir",
        str(tmp_path / "resumed"),
    ]
    assert cli_main([*base, "--max-steps", "2"]) == 0
    assert cli_main([*base, "--max-steps", "4", "--resume", "--export", str(tmp_path / "export")]) == 0
    read = lambda p: {m["step"]: m for m in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())}  # noqa: E731
    a, b = read(tmp_path / "straight"), read(tmp_path / "resumed")
    assert sorted(b) == [1, 2, 3, 4]  # the resumed run continued the step count
    for step in (3, 4):
        for key in ("loss", "mel", "stft", "disc", "adv"):
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-4), (step, key)
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000004"

    # the export is the generator alone and loads as a vocoder that matches the trained one
    exported = tmp_path / "export"
    assert sorted(p.name for p in exported.iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    voc = load_vocoder(str(exported), straight.mel)
    assert isinstance(voc, NeuralVocoder)
    trainer = VocoderTrainer(straight)
    trainer.load(latest_checkpoint(tmp_path / "resumed"))
    mel = Clips(straight.data.valid, straight.mel).mels[0]
    with torch.inference_mode():  # the exported weights are the trained ones (compared in fp32)
        torch.testing.assert_close(voc.generator(mel[None])[0], trainer.generator.eval()(mel[None])[0])
        # and the vocoder as loaded (bf16 ConvNeXt where the CPU has it) says the same thing
        assert (voc(mel) - voc.generator(mel[None])[0]).abs().max() < 1e-3
    assert load_vocoder(str(tmp_path / "resumed"), straight.mel).name == str(tmp_path / "resumed")


def test_export_refuses_missing_checkpoint(tmp_path: Path) -> None:
    from flowomni.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        export_generator(tmp_path / "nothing", tmp_path / "out")


def test_cli_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["train-vocoder", str(ROOT / "configs" / "vocoder.yaml"), "--set", "model.width=3"]) == 2
    assert "unknown key(s) ['width']" in capsys.readouterr().err
    bad = tmp_path / "v.yaml"
    bad.write_text("data:\n  train: [does/not/exist.jsonl]\n")
    assert cli_main(["train-vocoder", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert "does/not/exist.jsonl" in capsys.readouterr().err


def test_discriminators_give_finite_gradients_on_silence() -> None:
    """Digital silence (exact zeros, common in real recordings and in early generator output)
    once sent an infinite gradient through the resolution discriminators' |STFT| ** 0.5."""
    from flowomni.vocoder.discriminators import DiscriminatorConfig, Discriminators

    disc = Discriminators(
        DiscriminatorConfig(periods=[2], period_channels=[4, 8], resolutions=[[256, 64, 256]], resolution_channels=4)
    )
    wav = torch.zeros(2, 4096, requires_grad=True)
    logits, feats = disc(wav)
    (sum(lg.sum() for lg in logits) + sum(f.abs().sum() for fs in feats for f in fs)).backward()
    assert torch.isfinite(wav.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in disc.parameters() if p.grad is not None)


def test_non_finite_gradients_skip_the_update(voice_dir: Path, tmp_path: Path) -> None:
    cfg = small_config(voice_dir, tmp_path / "run", "train.gan_start_step=0")
    trainer = VocoderTrainer(cfg)
    mel, wav = Clips(cfg.data.train, cfg.mel).batch(4, 16)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    wav[0, 100] = float("nan")  # poisons every loss of this batch
    logs = trainer.step(mel, wav)
    assert logs["skipped_updates"] == 2  # the discriminators' update and the generator's
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.disc.parameters())
    wav[0, 100] = 0.0
    logs = trainer.step(mel, wav)  # and training goes on
    assert logs["skipped_updates"] == 2 and trainer.step_count == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))


def test_init_from_starts_the_generator_from_a_trained_vocoder(voice_dir: Path, tmp_path: Path) -> None:
    """`init_from` (e.g. the GAN phase on top of a reconstruction-only vocoder): the generator
    starts from the given weights, everything else fresh; a model mismatch is a clear error."""
    first = small_config(voice_dir, tmp_path / "first")
    train_vocoder(first, max_steps=2, export=str(tmp_path / "export"))
    second = small_config(
        voice_dir,
        tmp_path / "second",
        f"init_from={tmp_path / 'export'}",
        "train.gan_start_step=0",
        "train.lr=1e-12",
        "train.lr_min=1e-12",
    )  # lr ~0
    metrics = train_vocoder(second, max_steps=1)
    assert metrics["step"] == 1 and "adv" in metrics
    trained = load_vocoder(str(tmp_path / "export"), first.mel).generator.state_dict()
    exported_second = VocoderTrainer(second)
    exported_second.load(latest_checkpoint(tmp_path / "second"))
    for k, v in exported_second.generator.state_dict().items():  # lr ~0: the weights are the initial ones
        torch.testing.assert_close(v, trained[k])
    wider = small_config(voice_dir, tmp_path / "third", f"init_from={tmp_path / 'export'}", "model.dim=48")
    with pytest.raises(ValueError, match="init_from .* has model"):
        train_vocoder(wider, max_steps=1)


def test_loss_curves_are_drawn_for_runs(voice_dir: Path, tmp_path: Path) -> None:
    from flowomni.vocoder.curves import main as curves_main

    train_vocoder(small_config(voice_dir, tmp_path / "a", "train.gan_start_step=1"), max_steps=2)
    assert (tmp_path / "a" / "loss_curves.png").stat().st_size > 5000
    out = tmp_path / "cmp.png"
    assert curves_main([str(out), f"gan={tmp_path / 'a'}", str(tmp_path / "a")]) == 0 and out.stat().st_size > 5000
    assert curves_main([str(out), str(tmp_path / "nothing")]) == 2
