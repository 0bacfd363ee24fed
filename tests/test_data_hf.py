"""A local Hugging Face dataset in the VoiceAssistant-400K style -> WAV files + manifests."""

import io

import datasets
import numpy as np
import pytest
import soundfile as sf

from flowomni.cli import main
from flowomni.data.hf import HFColumns, export_hf
from flowomni.data.manifest import read_manifest

from helpers.speech import espeak


def _wav_bytes(path):
    return path.read_bytes()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfspeech")
    return [espeak(t, root / f"{i}.wav") for i, t in enumerate(["What is two plus two?", "Say hello.", "Hi."])]


def test_exports_audio_cells_of_every_shape_and_skips_bad_rows(tmp_path, speech):
    a_wav, sr = sf.read(speech[2], dtype="float32")
    silent = io.BytesIO()
    sf.write(silent, np.zeros(8000, dtype=np.float32), 16000, format="WAV")
    ds = datasets.Dataset.from_dict(
        {
            "question": ["What is two plus two?", "Say hello.", "Broken?", "Silent?", "", "No audio?"],
            "answer": ["Two plus two is four.", "Hello.", "x", "y", "z", "Text only."],
            "question_audio": [
                {"bytes": _wav_bytes(speech[0]), "path": None},
                {"bytes": None, "path": str(speech[1])},
                {"bytes": b"RIFF....WAVEgarbage", "path": None},
                {"bytes": silent.getvalue(), "path": None},
                {"bytes": _wav_bytes(speech[0]), "path": None},
                None,
            ],
            "answer_snac": ["#1 2 3"] * 6,  # codec tokens, not audio: ignored
        }
    ).cast_column("question_audio", datasets.Audio())
    ds = ds.add_column("answer_audio", [{"array": a_wav.tolist(), "sampling_rate": sr}] + [None] * 5)
    ds.save_to_disk(str(tmp_path / "va"))

    written, stats = export_hf(tmp_path / "va", tmp_path / "out", progress=False)
    assert list(written) == ["train"]
    items, line_stats = read_manifest(written["train"])
    assert line_stats.total == 0
    assert [it.question_text for it in items] == ["What is two plus two?", "Say hello.", "No audio?"]
    assert stats.counts == {"corrupt audio": 1, "silent audio": 1, "missing field": 1}
    first = items[0]
    q, qsr = sf.read(first.question_audio, dtype="float32")
    orig, osr = sf.read(speech[0], dtype="float32")
    assert qsr == osr and len(q) == len(orig) and np.abs(q - orig).max() < 1e-3
    assert sf.info(str(first.answer_audio)).samplerate == sr
    assert items[1].answer_audio is None and items[2].question_audio is None
    assert first.meta == {"source": "hf", "split": "train", "row": 0}


def test_dataset_dict_custom_columns_and_cli(tmp_path, speech):
    def split(n):
        return datasets.Dataset.from_dict(
            {
                "uid": [f"u{n}{i}" for i in range(2)],
                "instruction": ["Say hello.", "Say hi."],
                "response": ["Hello.", "Hi."],
                "speech": [{"array": sf.read(speech[1])[0].tolist(), "sampling_rate": 22050}] * 2,
            }
        )

    datasets.DatasetDict({"train": split(0), "test": split(1)}).save_to_disk(str(tmp_path / "dd"))
    cols = HFColumns(question_text="instruction", answer_text="response", question_audio="speech", id="uid")
    written, stats = export_hf(tmp_path / "dd", tmp_path / "out", cols, splits=["test"], progress=False)
    assert list(written) == ["test"] and stats.total == 0
    items, _ = read_manifest(written["test"])
    assert [it.id for it in items] == ["u10", "u11"] and all(it.question_audio.is_file() for it in items)
    with pytest.raises(ValueError, match="no column 'question'"):
        export_hf(tmp_path / "dd", tmp_path / "out2", progress=False)
    assert (
        main(
            [
                "data",
                "hf",
                str(tmp_path / "dd"),
                str(tmp_path / "out3"),
                "--question-col",
                "instruction",
                "--answer-col",
                "response",
                "--question-audio-col",
                "speech",
                "--max-items",
                "1",
            ]
        )
        == 0
    )
    assert len(read_manifest(tmp_path / "out3" / "train.jsonl")[0]) == 1
    assert main(["data", "hf", str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2


def test_decode_audio_mixes_channels_in_either_layout(tmp_path):
    from flowomni.audio.io import AudioError
    from flowomni.data.hf import decode_audio

    t = np.arange(8000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)])  # datasets' [channels, samples]
    wav, sr = decode_audio({"array": stereo, "sampling_rate": 16000}, tmp_path, "cell")
    assert wav.shape == (8000,) and sr == 16000 and np.abs(wav).max() == pytest.approx(0.5, abs=1e-3)
    wav2, _ = decode_audio({"array": stereo.T, "sampling_rate": 16000}, tmp_path, "cell")
    np.testing.assert_allclose(wav, wav2)
    assert decode_audio(None, tmp_path, "cell") is None
    with pytest.raises(AudioError, match="missing file"):
        decode_audio("nowhere.wav", tmp_path, "cell")
    with pytest.raises(AudioError, match="sampling_rate"):
        decode_audio({"array": [0.1, 0.2]}, tmp_path, "cell")
