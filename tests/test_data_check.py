"""Bad audio is recognised by reason (one loader, one vocabulary: flowomni.audio.io), skipped
and counted; builds and training go on.

Uses real broken files: random bytes, text named .wav, a truncated WAV, an empty file,
a WAV with no samples, a silent WAV, a RIFF header followed by garbage, a missing file.
"""

import numpy as np
import pytest
import soundfile as sf

from flowomni.audio.io import AudioError, load_audio, sniff_format
from flowomni.audio.mel import answer_mel_config, input_mel_config
from flowomni.cli import main
from flowomni.data.check import check_manifest
from flowomni.data.features import FeatureCache
from flowomni.data.manifest import Item, write_manifest

from helpers.speech import espeak

BAD = {  # file -> reason
    "random.wav": "not audio",
    "text.wav": "not audio",
    "truncated.wav": "truncated audio",
    "empty.wav": "empty file",
    "no_samples.wav": "empty audio",
    "silent.wav": "silent audio",
    "garbage_after_header.wav": "corrupt audio",
    "missing.wav": "missing file",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = espeak("What is two plus two?", root / "good.wav")
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    (root / "random.wav").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (root / "text.wav").write_text("this is a text file, not a recording\n" * 20)
    (root / "truncated.wav").write_bytes(data[: len(data) // 2])
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "no_samples.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(root / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (root / "garbage_after_header.wav").write_bytes(data[:12] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    sf.write(root / "good.flac", sf.read(good)[0], 22050)
    (root / "flac_named.wav").write_bytes((root / "good.flac").read_bytes())  # wrong extension, fine content
    return root


@pytest.mark.parametrize("name,reason", sorted(BAD.items()))
def test_each_bad_file_is_named_by_its_reason(corpus, name, reason):
    with pytest.raises(AudioError) as e:
        load_audio(corpus / name, 16000)
    assert e.value.reason == reason
    assert name in str(e.value)


def test_good_files_load_whatever_their_extension(corpus):
    for name in ("good.wav", "good.flac", "flac_named.wav"):
        wav = load_audio(corpus / name, 16000)
        assert wav.dtype == np.float32 and wav.ndim == 1 and 0.5 < len(wav) / 16000 < 5
    assert sniff_format((corpus / "flac_named.wav").read_bytes()[:12]) == "flac"
    with pytest.raises(AudioError, match="too long") as e:
        load_audio(corpus / "good.wav", max_seconds=0.2)
    assert e.value.reason == "too long"


def _manifest(corpus, tmp_path):
    items = [Item("good", "What is two plus two?", "Two plus two is four.", corpus / "good.wav", corpus / "good.flac")]
    items += [Item(n, "q?", "a.", corpus / n, corpus / "good.flac") for n in BAD]
    path = corpus / f"m_{tmp_path.name}.jsonl"  # audio must lie inside the manifest's folder
    write_manifest(path, items)
    return path, items


def test_check_counts_every_reason_and_the_cli_fails(corpus, tmp_path, capsys):
    path, _ = _manifest(corpus, tmp_path)
    report = check_manifest(path, progress=False)
    assert report.items == 1 + len(BAD) and report.ok_items == 1
    expected = {}
    for reason in BAD.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(report.problems.counts) == expected
    assert report.question_seconds > 0.5
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 usable" in out and "truncated audio: 1" in out and "not audio: 2" in out


def test_feature_cache_and_training_dataset_skip_bad_audio(corpus, tmp_path):
    from flowomni.data.manifest import read_manifest
    from flowomni.model.tokenizer import CharTokenizer
    from flowomni.training.dataset import TaskDataset

    path, _ = _manifest(corpus, tmp_path)
    items, _ = read_manifest(path)
    fin, fout = FeatureCache(tmp_path / "c", input_mel_config()), FeatureCache(tmp_path / "c", answer_mel_config())
    for name, reason in BAD.items():
        with pytest.raises(AudioError) as e:
            fin.get(corpus / name)
        assert e.value.reason == reason
    ds = TaskDataset(items, ["s2t", "t2s"], CharTokenizer(), fin, fout, group=4, delay=2, stack=2)
    s2t = [ex.item.id for ex in ds.examples if ex.task.value == "s2t"]
    t2s = [ex.item.id for ex in ds.examples if ex.task.value == "t2s"]
    assert s2t == ["good"]  # bad questions dropped from speech-input tasks...
    assert len(t2s) == 1 + len(BAD)  # ...but their good answers still train text->speech
    assert ds.skipped["bad question audio"] == len(BAD)
