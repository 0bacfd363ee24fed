"""LibriSpeech-style folders -> utterance items (ASR/TTS), on a tiny fake tree made with espeak."""

import soundfile as sf

from flowomni.cli import main
from flowomni.data.librispeech import read_librispeech, sentence_case, write_librispeech_manifest
from flowomni.data.manifest import read_manifest

from helpers.speech import espeak

UTTS = {
    "19-198-0000": "NORTHANGER ABBEY",
    "19-198-0001": "I'M SURE IT WAS I WHO SAID IT",
    "27-124-0000": "WHAT IS TWO PLUS THREE",
}


def _fake_tree(root):
    for utt, text in UTTS.items():
        spk, chap, _ = utt.split("-")
        d = root / spk / chap
        d.mkdir(parents=True, exist_ok=True)
        wav = espeak(text.lower(), d / f"{utt}.wav")
        data, sr = sf.read(wav)
        sf.write(d / f"{utt}.flac", data, sr)
        wav.unlink()
        with (d / f"{spk}-{chap}.trans.txt").open("a") as f:
            f.write(f"{utt} {text}\n")
    with (root / "27" / "124" / "27-124.trans.txt").open("a") as f:
        f.write("27-124-0001 THIS ONE HAS NO AUDIO\n27-124-0002\n")
    (root / "19" / "198" / "19-198-0001.flac").write_bytes(b"not flac at all")  # corrupt
    return root


def test_reads_utterances_and_skips_problems(tmp_path):
    root = _fake_tree(tmp_path / "LibriSpeech" / "dev-clean")
    items, stats = read_librispeech(root)
    assert [it.id for it in items] == sorted(UTTS)
    it = items[0]
    assert it.kind == "utterance" and it.question_text == it.answer_text == "Northanger abbey"
    assert it.question_audio == it.answer_audio and it.question_audio.suffix == ".flac"
    assert it.meta["speaker"] == "19" and it.meta["chapter"] == "198"
    assert stats.counts == {"missing file": 1, "bad transcript line": 1}
    checked, stats = read_librispeech(root, check_audio=True)  # decoding finds the corrupt flac
    assert [it.id for it in checked] == ["19-198-0000", "27-124-0000"] and stats.counts["not audio"] == 1
    assert read_librispeech(root, keep_case=True)[0][1].question_text == UTTS["19-198-0001"]


def test_sentence_case():
    assert sentence_case("I'M SURE IT WAS I WHO SAID IT") == "I'm sure it was I who said it"
    assert sentence_case("  HELLO   WORLD ") == "Hello world"


def test_manifest_inside_and_outside_the_corpus(tmp_path):
    root = _fake_tree(tmp_path / "LibriSpeech" / "dev-clean")
    inside = tmp_path / "LibriSpeech" / "dev.jsonl"
    write_librispeech_manifest(root, inside, check_audio=True)
    items, stats = read_manifest(inside)
    assert stats.total == 0 and len(items) == 2 and all(it.question_audio.is_file() for it in items)
    assert '"question_audio": "dev-clean/19/198/19-198-0000.flac"' in inside.read_text()
    # elsewhere: reached through a symlink in the manifest's folder, never an absolute path
    outside = tmp_path / "data" / "libri" / "dev.jsonl"
    assert main(["data", "librispeech", str(root), str(outside), "--check-audio"]) == 0
    assert (outside.parent / "dev-clean").is_symlink()
    items, stats = read_manifest(outside)
    assert stats.total == 0 and len(items) == 2 and all(it.question_audio.is_file() for it in items)
    assert str(tmp_path) not in outside.read_text()
