"""Audio front end: Slaney mel filterbank, log-mel frames, decoding with clear errors."""

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from flowomni.audio import AudioError, FeatureStats, MelConfig, MelSpectrogram, load_audio, mel_filterbank
from flowomni.audio.mel import _hz_to_mel, _mel_to_hz


def test_slaney_mel_scale_known_values():
    assert _hz_to_mel(torch.tensor(1000.0)).item() == pytest.approx(15.0)
    assert _hz_to_mel(torch.tensor(2000.0)).item() == pytest.approx(15 + math.log(2) * 27 / math.log(6.4))
    hz = torch.tensor([0.0, 300.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    torch.testing.assert_close(_mel_to_hz(_hz_to_mel(hz)), hz)


def test_filterbank_triangles_have_unit_area_and_ordered_peaks():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all()
    df = 16000 / 512
    area = fb.sum(1) * df
    torch.testing.assert_close(area[5:], torch.ones(35), atol=0.05, rtol=0)  # narrow low filters are coarse
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all()


def test_tone_lights_up_the_right_mel_bin_and_frame_count():
    cfg = MelConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80)
    t = np.arange(16000) / 16000
    wav = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    mel = MelSpectrogram(cfg)(wav)
    assert mel.shape == (16000 // 160 + 1, 80)
    fb = mel_filterbank(16000, 400, 80)
    expected_bin = int(fb[:, round(1000 / (16000 / 400))].argmax())
    assert int(mel[50].argmax()) == expected_bin
    batch = MelSpectrogram(cfg)(torch.stack([wav, wav]))
    torch.testing.assert_close(batch[1], mel)


@pytest.mark.parametrize("style", ["natural", "whisper"])
def test_frame_count_is_known_without_computing_the_mel(style):
    """MelSpectrogram.frames(n) is the length forward() gives, short clips (padded) included."""
    for cfg in (MelConfig(style=style), MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, style=style)):
        mel = MelSpectrogram(cfg)
        for n in (1, 100, cfg.n_fft // 2, cfg.n_fft // 2 + 1, cfg.hop_length, 4999, 5000, 22050):
            assert mel.frames(n) == mel(torch.zeros(n)).shape[0], (cfg, n)


def test_feature_stats_normalise_to_unit_scale():
    clips = [torch.randn(50, 4) * 3 + 7, torch.randn(80, 4) * 3 + 7]
    st = FeatureStats.estimate(clips)
    z = st.normalize(torch.cat(clips))
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0) - 1).abs().max() < 0.02
    torch.testing.assert_close(st.denormalize(z), torch.cat(clips), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="zero clips"):
        FeatureStats.estimate([])


def tone(sr: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_audio_resamples_and_mixes_channels(tmp_path):
    stereo = np.stack([tone(22050), tone(22050)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 22050)
    wav = load_audio(tmp_path / "s.wav", 16000)
    assert wav.ndim == 1 and abs(len(wav) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16000 / len(wav) - 440) < 5


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage that is not audio at all"), "not audio"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: sf.write(p, np.zeros(8000, np.float32), 16000), "silent"),
        (lambda p: sf.write(p, np.array([0.1, np.nan] * 4000, np.float32), 16000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "audio is empty"),
    ],
    ids=["garbage", "zero-bytes", "silent", "nan", "no-samples"],
)
def test_bad_audio_gives_clear_errors(tmp_path, make, match):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=match) as e:
        load_audio(p, 16000)
    assert str(p) in str(e.value)


def test_truncated_wav_and_missing_file(tmp_path):
    sf.write(tmp_path / "ok.wav", tone(16000, 1.0), 16000)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:30])
    with pytest.raises(AudioError):
        load_audio(tmp_path / "cut.wav")
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="longer than"):
        load_audio(tmp_path / "ok.wav", max_seconds=0.5)


@pytest.mark.parametrize("n_fft,hop,win", [(1024, 256, 1024), (400, 160, 400), (512, 128, 400)])
@pytest.mark.parametrize("frames", [1, 3, 40])
def test_overlap_add_istft_equals_torch_istft(n_fft, hop, win, frames):
    """Our reshaped overlap-add is torch.istft(center=True): same samples, also where more
    samples are asked for than the frames reach (zeros; torch refuses that for win < n_fft)."""
    from flowomni.audio.istft import istft

    torch.manual_seed(frames)
    spec = torch.randn(2, n_fft // 2 + 1, frames, dtype=torch.complex64)
    window = torch.hann_window(win)
    extra = 300 if win == n_fft else 0
    length = frames * hop + extra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when it pads the tail with zeros
        want = torch.istft(spec, n_fft, hop, win, window, center=True, length=length)
    got = istft(spec, n_fft, hop, window, length)
    assert got.shape == want.shape == (2, length)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
