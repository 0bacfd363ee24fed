"""Feature cache: computed once, memory-mapped, invalidated by config and by file changes."""

import os

import numpy as np
import pytest
import torch

from flowomni.audio import MelConfig, MelSpectrogram, load_audio
from flowomni.audio.mel import answer_mel_config, input_mel_config
from flowomni.cli import main
from flowomni.data.features import FeatureCache
from flowomni.data.manifest import Item, write_manifest

from helpers.speech import espeak


@pytest.fixture()
def clip(tmp_path):
    return espeak("What comes after Monday?", tmp_path / "q.wav")


def test_matches_direct_computation_and_is_memory_mapped(tmp_path, clip):
    cfg = input_mel_config()
    cache = FeatureCache(tmp_path / "cache", cfg)
    mel = cache.get(clip)
    want = MelSpectrogram(cfg)(torch.from_numpy(load_audio(clip, cfg.sample_rate))).numpy()
    assert mel.shape == want.shape and mel.shape[1] == 80 and mel.dtype == np.float32
    np.testing.assert_allclose(mel, want, atol=1e-5)
    files = list((tmp_path / "cache" / cfg.fingerprint()).rglob("*.npy"))
    assert len(files) == 1
    fresh = FeatureCache(tmp_path / "cache", cfg).get(clip)  # a new process would do this
    assert isinstance(fresh, np.memmap)
    torch.from_numpy(fresh)  # writable (copy-on-write): no read-only warning, file untouched


def test_reused_without_recomputing(tmp_path, clip, monkeypatch):
    cfg = input_mel_config()
    FeatureCache(tmp_path / "c", cfg).get(clip)
    cache = FeatureCache(tmp_path / "c", cfg)
    monkeypatch.setattr(cache, "compute", lambda p: pytest.fail("recomputed a cached file"))
    assert cache.get(clip).shape[1] == 80
    assert cache.get(clip) is cache.get(clip)  # in-memory LRU


def test_a_clip_reached_through_a_symlinked_folder_is_not_recomputed(tmp_path, clip, monkeypatch):
    cfg = input_mel_config()
    FeatureCache(tmp_path / "c", cfg).get(clip)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "audio").symlink_to(clip.parent)
    cache = FeatureCache(tmp_path / "c", cfg)
    monkeypatch.setattr(cache, "compute", lambda p: pytest.fail("recomputed a cached file"))
    assert cache.get(tmp_path / "other" / "audio" / clip.name).shape[1] == 80


def test_config_change_uses_another_folder(tmp_path, clip):
    a = FeatureCache(tmp_path / "c", input_mel_config())
    b = FeatureCache(tmp_path / "c", MelConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40))
    c = FeatureCache(tmp_path / "c", answer_mel_config())
    assert len({a.dir, b.dir, c.dir}) == 3
    assert a.get(clip).shape[1] == 80 and b.get(clip).shape[1] == 40
    n_a, n_c = a.get(clip).shape[0], c.get(clip).shape[0]
    assert abs(n_a / 100 - n_c / (22050 / 256)) < 0.05  # same duration at each config's frame rate


def test_changed_file_is_recomputed(tmp_path, clip):
    cache = FeatureCache(tmp_path / "c", input_mel_config())
    before = np.array(cache.get(clip))
    espeak("A much longer question than before, about the days of the week?", clip)
    os.utime(clip, ns=(1, 1))  # even with an old mtime, the size changed
    after = cache.get(clip)
    assert after.shape[0] > before.shape[0] + 50
    assert len(list(cache.dir.rglob("*.npy"))) == 2


def test_damaged_cache_file_is_recomputed(tmp_path, clip):
    cache = FeatureCache(tmp_path / "c", input_mel_config())
    good = np.array(cache.get(clip))
    (f,) = cache.dir.rglob("*.npy")
    f.write_bytes(b"garbage")
    np.testing.assert_array_equal(FeatureCache(tmp_path / "c", input_mel_config()).get(clip), good)


def test_precompute_fills_the_cache_in_parallel_and_counts_bad_files(tmp_path):
    paths = [espeak(f"Count from {w} to ten.", tmp_path / f"q{i}.wav") for i, w in enumerate(["one", "two", "three"])]
    (tmp_path / "bad.wav").write_text("not audio")
    cache = FeatureCache(tmp_path / "c", input_mel_config())
    stats = cache.precompute([*paths, paths[0], tmp_path / "bad.wav", tmp_path / "gone.wav"], workers=1, progress=False)
    assert stats.counts == {"not audio": 1, "missing file": 1}
    assert len(list(cache.dir.rglob("*.npy"))) == 3
    # the CLI does both configs for a manifest, with worker processes
    items = [Item(f"i{i}", "q?", "a.", p, p) for i, p in enumerate(paths * 6)]
    items += [Item(f"j{i}", f"q{i}?", "a.", espeak(f"Number {i}.", tmp_path / f"n{i}.wav")) for i in range(14)]
    write_manifest(tmp_path / "m.jsonl", items)
    assert main(["data", "features", str(tmp_path / "m.jsonl"), "--cache", str(tmp_path / "c"), "--workers", "2"]) == 0
    assert len(list(cache.dir.rglob("*.npy"))) == 3 + 14
    assert len(list(FeatureCache(tmp_path / "c", answer_mel_config()).dir.rglob("*.npy"))) == 3
    assert not list((tmp_path / "c").rglob("*.tmp*"))


def test_features_from_an_experiment_config(tmp_path, clip):
    """`--from-config` takes the mel configs, cache folder and manifests from a training YAML
    (read by section: the data layer does not import the experiment's config)."""
    import yaml

    write_manifest(tmp_path / "train.jsonl", [Item("i0", "q?", "a.", clip, clip)])
    exp = {
        "model": {"input_mel": {"n_mels": 40}, "output_mel": {"n_mels": 64}, "group": 4},
        "data": {"train_manifest": str(tmp_path / "train.jsonl"), "cache_dir": str(tmp_path / "c"), "tasks": ["s2s"]},
        "train": {"batch_size": 2},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["data", "features", "--from-config", str(tmp_path / "exp.yaml")]) == 0
    in_cfg, out_cfg = input_mel_config(), answer_mel_config()
    in_cfg.n_mels, out_cfg.n_mels = 40, 64
    for cfg in (in_cfg, out_cfg):
        (cached,) = FeatureCache(tmp_path / "c", cfg).dir.rglob("*.npy")
        assert np.load(cached).shape[1] == cfg.n_mels
    exp["model"]["input_mel"] = {"n_mel": 40}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["data", "features", "--from-config", str(tmp_path / "exp.yaml")]) == 2  # a typo is named
