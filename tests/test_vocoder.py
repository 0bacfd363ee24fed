"""Vocoders: Griffin-Lim recovers audio whose mel matches, exact output lengths, streaming
equals one-shot, and clear errors for bad names, paths and inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowomni.audio import MelSpectrogram, answer_mel_config, load_audio
from flowomni.checkpoint import save_checkpoint
from flowomni.vocoder import (
    GriffinLim,
    NeuralVocoder,
    Vocoder,
    VocoderError,
    VocosConfig,
    VocosGenerator,
    load_vocoder,
)
from flowomni.vocoder.griffin_lim import MelInverter

from helpers.speech import espeak

CFG = answer_mel_config()
SHIPPED = Path(__file__).resolve().parent.parent / "models" / "vocoder"


@pytest.fixture(scope="module")
def speech_mel(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """Log-mel of ~1.5 s of real speech at the answer rate."""
    path = espeak("The capital of France is Paris.", tmp_path_factory.mktemp("voc") / "s.wav", speed=190)
    wav = torch.from_numpy(load_audio(path, CFG.sample_rate))
    return MelSpectrogram(CFG)(wav)


def tiny_neural(seed: int = 0, dtype: str = "float32", freeze: bool = True, pack: bool = True) -> NeuralVocoder:
    torch.manual_seed(seed)
    gen = VocosGenerator(VocosConfig(dim=32, intermediate=64, layers=2), CFG)
    for p in gen.parameters():  # random but not near-zero output, so equality checks mean something
        torch.nn.init.normal_(p, std=0.2)
    return NeuralVocoder(gen, name="tiny", dtype=dtype, freeze=freeze, pack=pack)


def mel_errors(wav: torch.Tensor | np.ndarray, mel: torch.Tensor) -> tuple[float, float]:
    """(spectral convergence on linear mel, mean |log-mel difference|) of `wav` against `mel`."""
    got = MelSpectrogram(CFG)(torch.as_tensor(wav))[: mel.shape[0]]
    target = torch.exp(mel)
    sc = float(torch.linalg.norm(torch.exp(got) - target) / torch.linalg.norm(target))
    return sc, float((got - mel).abs().mean())


def stream_all(voc: Vocoder, mel: torch.Tensor, chunk: int) -> np.ndarray:
    s = voc.stream()
    parts = [s.push(mel[i : i + chunk]) for i in range(0, mel.shape[0], chunk)]
    parts.append(s.flush())
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in parts)
    return np.concatenate(parts)


def test_mel_inversion_is_nonnegative_and_fits(speech_mel: torch.Tensor) -> None:
    inv = MelInverter(CFG, iters=10)
    mag = inv(speech_mel[None])[0]
    assert mag.shape == (speech_mel.shape[0], CFG.n_fft // 2 + 1) and (mag >= 0).all()
    target = torch.exp(speech_mel)
    fit = torch.linalg.norm(mag @ inv.fb.T - target) / torch.linalg.norm(target)
    pinv_only = torch.clamp(torch.exp(speech_mel) @ inv.pinv.T, min=0)
    fit0 = torch.linalg.norm(pinv_only @ inv.fb.T - target) / torch.linalg.norm(target)
    assert fit < 0.02 and fit < fit0  # the projected-gradient steps improve on the clamped pseudo-inverse


def test_griffin_lim_recovers_matching_mel(speech_mel: torch.Tensor) -> None:
    wav = GriffinLim(CFG, 32)(speech_mel)
    sc, l1 = mel_errors(wav, speech_mel)
    assert sc < 0.15 and l1 < 0.25, (sc, l1)
    sc8, _ = mel_errors(GriffinLim(CFG, 4)(speech_mel), speech_mel)
    assert sc < sc8  # more iterations, more consistent phase


def test_griffin_lim_is_deterministic(speech_mel: torch.Tensor) -> None:
    gl = GriffinLim(CFG, 8)
    assert torch.equal(gl(speech_mel[:40]), gl(speech_mel[:40]))


@pytest.mark.parametrize("make", [lambda: GriffinLim(CFG, 2), tiny_neural], ids=["griffin-lim", "neural"])
@pytest.mark.parametrize("frames", [1, 2, 7, 50])
def test_output_length_is_exact(make, frames: int) -> None:
    voc = make()
    mel = torch.full((frames, CFG.n_mels), -4.0) + torch.randn(frames, CFG.n_mels)
    wav = voc(mel)
    assert wav.shape == (frames * voc.hop_length,) and wav.dtype == torch.float32
    assert torch.isfinite(wav).all()
    assert voc(mel[None].repeat(2, 1, 1)).shape == (2, frames * voc.hop_length)
    assert stream_all(voc, mel, 3).shape == (frames * voc.hop_length,)


def test_batch_equals_single_items(speech_mel: torch.Tensor) -> None:
    voc = tiny_neural()
    a, b = speech_mel[:60], speech_mel[60:120]
    batch = voc(torch.stack([a, b]))
    torch.testing.assert_close(batch[0], voc(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], voc(b), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("chunk", [1, 3, 4, 9, 64])
def test_neural_stream_equals_one_shot(speech_mel: torch.Tensor, chunk: int, dtype: str) -> None:
    voc = tiny_neural(dtype=dtype)
    full = voc(speech_mel).numpy()
    assert np.abs(full).max() > 1e-3
    streamed = stream_all(voc, speech_mel, chunk)
    np.testing.assert_allclose(streamed, full, atol=1e-5, rtol=0)


def test_eager_neural_stream_equals_one_shot(speech_mel: torch.Tensor) -> None:
    """Without TorchScript (freeze=False, or tracing failed) the stream steps run eagerly: same output."""
    voc = tiny_neural(freeze=False)
    np.testing.assert_allclose(stream_all(voc, speech_mel, 4), voc(speech_mel).numpy(), atol=1e-5, rtol=0)
    assert not isinstance(voc.stream_step(torch.zeros(0), final=False), torch.jit.ScriptModule)


def test_bf16_convnext_stays_close_to_fp32(speech_mel: torch.Tensor) -> None:
    fp32, bf16 = tiny_neural(dtype="float32"), tiny_neural(dtype="bfloat16")
    assert (fp32.dtype, bf16.dtype) == ("float32", "bfloat16")
    # matrix products in bf16; norms, depthwise convs, the residual stream and the spectrum in fp32
    run, block = bf16._run, bf16._run.blocks[0]
    assert {m.weight.dtype for m in (run.embed, run.head, block.pw1, block.pw2)} == {torch.bfloat16}
    assert {m.weight.dtype for m in (run.norm, run.final_norm, block.norm, block.dwconv)} == {torch.float32}
    assert run.trunk(torch.zeros(1, 5, CFG.n_mels)).dtype == torch.float32
    assert bf16.generator.blocks[0].pw1.weight.dtype == torch.float32  # the trained weights stay as they are
    # compare what a listener gets (the log-mel of the audio), not sample values
    ref, got = (MelSpectrogram(CFG)(v(speech_mel)) for v in (fp32, bf16))
    assert (got - ref).abs().mean() < 0.1, (got - ref).abs().mean()
    with pytest.raises(ValueError, match="vocoder dtype 'float16'"):
        tiny_neural(dtype="float16")


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_neural_stream_first_chunk_waits_only_for_the_lookahead(speech_mel: torch.Tensor) -> None:
    """The first samples leave as soon as one frame is past the lookahead; with frames arriving
    all at once (a producer infinitely ahead of the listener) later chunks are as large as allowed."""
    voc = tiny_neural()
    s = voc.stream(max_chunk_frames=16, clock=FakeClock())
    assert s.lookahead_frames == 3 * 1 + 2  # 3 convs with 1 frame each + the iSTFT window's reach
    sizes = []
    for i in range(speech_mel.shape[0]):
        out = s.push(speech_mel[i : i + 1])
        if i + 1 <= s.lookahead_frames:
            assert out.size == 0
        if out.size:
            sizes.append(out.size // voc.hop_length)
    # until the listener holds the margin a stream keeps ahead, each frame follows at once
    from flowomni.vocoder.base import MARGIN_S

    lead = sizes[: sizes.index(16)]
    assert set(lead) == {1} and (len(lead) - 1) * voc.hop_length / voc.sample_rate < MARGIN_S
    assert len(lead) * voc.hop_length / voc.sample_rate >= MARGIN_S and set(sizes[len(lead) :]) == {16}, sizes


@pytest.mark.parametrize("rtf", [0.2, 0.5, 2.0])
def test_paced_stream_keeps_ahead_of_the_listener(speech_mel: torch.Tensor, rtf: float) -> None:
    """Mel groups made at `rtf` times real time: once playing (first chunk), a listener never
    runs dry while the producer keeps up (rtf < 1), and chunks at least double either way."""
    voc = tiny_neural()
    clock = FakeClock()
    s = voc.stream(max_chunk_frames=64, clock=clock)
    frame_s = voc.hop_length / voc.sample_rate
    sent, first_at, sizes = 0, None, []
    for i in range(0, speech_mel.shape[0], 4):
        clock.t += rtf * 4 * frame_s  # the decode steps that made this group
        out = s.push(speech_mel[i : i + 4])
        if out.size:
            first_at = clock.t if first_at is None else first_at
            if rtf < 1 and sizes:
                assert sent * frame_s - (clock.t - first_at) > 0, (i, sizes)  # the listener still had audio
            sizes.append(out.size // voc.hop_length)
            sent += sizes[-1]
    if rtf > 1:  # no chunk can keep a listener going: chunks double, so the vocoder costs little
        assert all(b >= a or b >= 64 for a, b in zip(np.cumsum(sizes), sizes[1:])), sizes
    assert len(sizes) <= 9, sizes


def test_neural_stream_costs_few_windows(speech_mel: torch.Tensor) -> None:
    """Each frame goes through the trunk once, and a clip pushed one mel group at a time is
    synthesised in a few windows (chunks double), not one per group."""
    voc = tiny_neural()
    s = voc.stream()
    for i in range(0, speech_mel.shape[0], 4):
        s.push(speech_mel[i : i + 4])
    s.flush()
    groups = -(-speech_mel.shape[0] // 4)
    assert s.calls <= 4 < groups, (s.calls, groups)


@pytest.mark.parametrize("chunk", [1, 4, 25])
def test_griffin_lim_stream_matches_one_shot(speech_mel: torch.Tensor, chunk: int) -> None:
    """Griffin-Lim's phase is not unique, so streamed and one-shot audio differ sample-wise;
    what must match is the spectrum: both fit the input mel about equally well, and frames
    at chunk seams are no worse than the rest (no clicks)."""
    gl = GriffinLim(CFG, 32)
    sc_one, l1_one = mel_errors(gl(speech_mel), speech_mel)
    clock = FakeClock()  # chunk sizes follow the clock: a real one makes them depend on the machine's load
    s = gl.stream(max_chunk_frames=16, clock=clock)  # chunks of at most 16 frames: seams enough to judge
    frame_s = gl.hop_length / gl.sample_rate
    parts = []
    for i in range(0, speech_mel.shape[0], chunk):
        clock.t += 0.1 * chunk * frame_s  # a producer at 10x real time
        parts.append(s.push(speech_mel[i : i + chunk]))
    parts.append(s.flush())
    streamed = np.concatenate(parts)
    sc, l1 = mel_errors(streamed, speech_mel)
    assert sc < sc_one + 0.05 and l1 < l1_one + 0.05, (sc, sc_one, l1, l1_one)
    got = MelSpectrogram(CFG)(torch.from_numpy(streamed))[: speech_mel.shape[0]]
    per_frame = (got - speech_mel).abs().mean(-1)
    seams = torch.tensor(np.cumsum([p.size // gl.hop_length for p in parts if p.size])[:-1])
    level = speech_mel.mean(-1)
    seams = seams[level[seams] > level.min() + 1]  # digital silence's log-mel is all floor: any sound there is far off
    assert len(seams) >= 3
    assert per_frame[seams].mean() < 2 * per_frame.mean() + 0.05


def test_stream_rejects_use_after_flush_and_batches(speech_mel: torch.Tensor) -> None:
    s = tiny_neural().stream()
    s.push(speech_mel[:10])
    with pytest.raises(ValueError, match="one utterance"):
        s.push(speech_mel[None, :5])
    s.flush()
    assert s.flush().size == 0
    with pytest.raises(RuntimeError, match="flushed"):
        s.push(speech_mel[:5])


def test_bad_mel_input_is_a_clear_error() -> None:
    voc = GriffinLim(CFG, 1)
    with pytest.raises(ValueError, match=r"\[T, 80\]"):
        voc(torch.zeros(10, 40))
    with pytest.raises(ValueError, match="NaN"):
        voc(torch.full((4, 80), float("nan")))


def test_load_vocoder_names() -> None:
    gl = load_vocoder("griffin-lim", CFG)
    assert isinstance(gl, GriffinLim) and gl.n_iter == 32 and gl.name == "griffin-lim"
    assert (gl.sample_rate, gl.hop_length) == (22050, 256)
    gl8 = load_vocoder("griffin-lim-8", CFG)
    assert gl8.n_iter == 8 and gl8.name == "griffin-lim-8"


@pytest.mark.parametrize("name", ["griffinlim", "hifigan", "griffin-lim-x", "no/such/folder"])
def test_load_vocoder_unknown_name_is_clear(name: str) -> None:
    with pytest.raises(VocoderError, match="griffin-lim"):
        load_vocoder(name, CFG)


def test_load_vocoder_bad_folders_are_clear(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VocoderError, match="model.safetensors"):
        load_vocoder(str(empty), CFG)
    pickle_file = tmp_path / "vocoder.pt"
    pickle_file.write_bytes(b"\x80\x04")
    with pytest.raises(VocoderError, match="pickle"):
        load_vocoder(str(pickle_file), CFG)


def test_neural_checkpoint_round_trip_and_mel_mismatch(tmp_path: Path, speech_mel: torch.Tensor) -> None:
    import yaml

    voc = tiny_neural(seed=3, dtype="auto")  # the loaded vocoder picks its dtype the same way
    cfg_yaml = yaml.safe_dump({"model": vars(voc.generator.cfg), "mel": vars(CFG)})
    state = {f"generator.{k}": v for k, v in voc.generator.state_dict().items()}
    save_checkpoint(tmp_path / "v", model_state=state, config_yaml=cfg_yaml, meta={"step": 1}, save_rng=False)
    loaded = load_vocoder(str(tmp_path / "v"), CFG)
    assert isinstance(loaded, NeuralVocoder) and loaded.name == str(tmp_path / "v")
    torch.testing.assert_close(loaded(speech_mel), voc(speech_mel))
    other = answer_mel_config()
    other.n_mels = 64
    with pytest.raises(VocoderError, match="n_mels"):
        load_vocoder(str(tmp_path / "v"), other)
    bad = {k: v[..., :1] if v.dim() else v for k, v in state.items()}
    save_checkpoint(tmp_path / "bad", model_state=bad, config_yaml=cfg_yaml, meta={"step": 1}, save_rng=False)
    with pytest.raises(VocoderError, match="do not fit"):
        load_vocoder(str(tmp_path / "bad"), CFG)


@pytest.fixture(scope="module")
def piper_mel(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """Log-mel of a held-out sentence in the answer voice (the one the shipped vocoder knows)."""
    pytest.importorskip("piper")
    from flowomni.vocoder.voice_data import load_voice, synthesize

    path = tmp_path_factory.mktemp("piper") / "a.wav"
    synthesize(load_voice(), "The capital of France is Paris.", path)
    return MelSpectrogram(CFG)(torch.from_numpy(load_audio(path, CFG.sample_rate)))


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped vocoder in models/vocoder")
def test_shipped_vocoder_loads_streams_and_fits_the_mel(piper_mel: torch.Tensor) -> None:
    voc = load_vocoder("models/vocoder", CFG)
    assert isinstance(voc, NeuralVocoder) and voc.name == "models/vocoder"
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 12e6
    wav = voc(piper_mel)
    sc, l1 = mel_errors(wav, piper_mel)
    assert sc < 0.6 and l1 < 0.45, (sc, l1)  # measured 0.41 / 0.31 (Griffin-Lim-32: 0.07 / 0.11)
    untrained = tiny_neural()
    assert l1 < mel_errors(untrained(piper_mel), piper_mel)[1]
    np.testing.assert_allclose(stream_all(voc, piper_mel, 4), wav.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("groups", [1, 16])
def test_time_major_conv_is_a_plain_conv1d(groups: int) -> None:
    """CausalishConv keeps nn.Conv1d's weights and maths (so checkpoints stay plain Conv1d
    ones) while taking frames time-major; padding puts `lookahead` frames on the right."""
    from flowomni.vocoder.vocos import CausalishConv

    torch.manual_seed(groups)
    conv = CausalishConv(16, 16 if groups > 1 else 24, kernel=7, lookahead=2, groups=groups)
    x = torch.randn(3, 50, 16)
    want = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x.transpose(1, 2), (4, 2)), conv.weight, conv.bias, groups=groups
    ).transpose(1, 2)
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dense .* or depthwise"):
        CausalishConv(16, 32, kernel=3, lookahead=0, groups=4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_frozen_trunk_equals_the_eager_one_at_any_length(dtype: str) -> None:
    """The trunk is traced once (64 frames) and frozen; the graph must hold for every length
    a stream or a one-shot call hands it."""
    frozen, eager = tiny_neural(dtype=dtype), tiny_neural(dtype=dtype, freeze=False)
    assert not eager.frozen and frozen.frozen and isinstance(frozen._trunk, torch.jit.ScriptModule)
    for frames in (1, 2, 7, 63, 64, 65, 300):
        mel = torch.randn(frames, CFG.n_mels) - 4
        torch.testing.assert_close(frozen(mel), eager(mel), rtol=1e-5, atol=1e-6)


def test_freeze_failure_falls_back_to_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, speech_mel: torch.Tensor
) -> None:
    def broken_trace(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    want = tiny_neural()(speech_mel)
    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    voc = tiny_neural()
    assert not voc.frozen and "could not freeze the trunk (RuntimeError: no TorchScript here)" in caplog.text
    torch.testing.assert_close(voc(speech_mel), want)


def test_spectrum_values_and_gradients_are_those_of_polar() -> None:
    """The spectrum is built with in-place products (speed); values and training gradients are
    those of the plain formula torch.polar(exp(clamp(log_mag)), angle)."""
    gen = tiny_neural().generator
    out = torch.randn(2, 9, 2 * (gen.n_fft // 2 + 1), requires_grad=True)
    log_mag, angle = out.chunk(2, dim=-1)
    want = torch.polar(torch.exp(torch.clamp(log_mag, max=gen.cfg.max_log_mag)), angle).transpose(1, 2)
    got = gen.spectrum(torch.zeros(2, 9, CFG.n_mels), out)
    torch.testing.assert_close(got, want)
    weight = torch.randn(want.shape, dtype=want.dtype)  # a loss that reaches magnitude and phase
    (g_want,) = torch.autograd.grad((want * weight).real.sum(), out)
    (g_got,) = torch.autograd.grad((got * weight).real.sum(), out)
    torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_linears_equal_plain_ones(speech_mel: torch.Tensor, dtype: str) -> None:
    """oneDNN-packed MLPs and head (GELU fused) give the plain layers' output at any length."""
    packed, plain = tiny_neural(dtype=dtype), tiny_neural(dtype=dtype, pack=False)
    assert packed.packed and not plain.packed
    assert isinstance(packed._run.blocks[0].act, torch.nn.Identity) and isinstance(
        plain._run.blocks[0].act, torch.nn.GELU
    )
    for frames in (1, 7, 64, speech_mel.shape[0]):
        want, got = plain(speech_mel[:frames]), packed(speech_mel[:frames])
        if dtype == "float32":
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
        else:  # bf16 rounds the products' outputs in a different order: compare what is heard
            assert (MelSpectrogram(CFG)(got) - MelSpectrogram(CFG)(want)).abs().mean() < 0.05


def test_packing_falls_back_to_plain_layers(
    monkeypatch: pytest.MonkeyPatch, speech_mel: torch.Tensor, caplog: pytest.LogCaptureFixture
) -> None:
    from flowomni.vocoder import packed as packed_mod

    def broken(weight: torch.Tensor, rows: int) -> torch.Tensor:
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(packed_mod.torch.ops.mkldnn, "_reorder_linear_weight", broken)
    voc = tiny_neural()
    assert not voc.packed and "packing unavailable" in caplog.text
    assert isinstance(voc._run.blocks[0].pw1, torch.nn.Linear)
    torch.testing.assert_close(voc(speech_mel), tiny_neural(pack=False)(speech_mel))
    monkeypatch.undo()
    lin = torch.nn.Linear(8, 16)
    with pytest.raises(ValueError, match="unknown activation"):
        packed_mod.PackedLinear(lin, "relu")
    assert packed_mod.pack_linear(lin) is not None
    # a packed layer that disagrees with the plain one is not used either (here the check
    # expects a tanh the packed op does not apply)
    monkeypatch.setitem(packed_mod.ACTIVATIONS, "none", torch.tanh)
    assert packed_mod.pack_linear(lin) is None and "disagrees" in caplog.text
