"""LibriSpeech-style corpora -> "utterance" items (audio + its own transcript: ASR and TTS).

Layout: ROOT/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with lines "<utt-id> TEXT",
next to <utt-id>.flac (or .wav). Any folder depth works; every *.trans.txt is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowomni.audio.io import AudioError, load_audio
from flowomni.data.manifest import Item, SkipStats, within, write_manifest

AUDIO_SUFFIXES = (".flac", ".wav")


def sentence_case(text: str) -> str:
    """LibriSpeech's upper-case transcripts -> "Sentence case", the case our other corpora use."""
    text = " ".join(text.split()).lower()
    text = " ".join("I" if t == "i" else ("I" + t[1:] if t.startswith("i'") else t) for t in text.split(" "))
    return text[:1].upper() + text[1:]


def read_librispeech(
    root: str | Path, *, keep_case: bool = False, check_audio: bool = False, max_items: int = 0
) -> tuple[list[Item], SkipStats]:
    """Items for every transcribed utterance under `root` whose audio exists.

    `check_audio` decodes each file (slow for 1000 h, but catches corrupt files now rather
    than in training); otherwise only existence is checked.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech root not found: {root}")
    items: list[Item] = []
    stats = SkipStats()
    seen: set[str] = set()
    for trans in sorted(root.rglob("*.trans.txt")):
        for lineno, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            if not text.strip():
                stats.add("bad transcript line", f"{trans}:{lineno}: no text after id {utt!r}")
                continue
            if utt in seen:
                stats.add("duplicate id", f"{trans}:{lineno}: {utt}")
                continue
            audio = next((p for s in AUDIO_SUFFIXES if (p := trans.parent / f"{utt}{s}").exists()), None)
            if audio is None:
                stats.add("missing file", f"{trans.parent / utt}{AUDIO_SUFFIXES[0]}")
                continue
            if check_audio:
                try:
                    load_audio(audio)
                except AudioError as e:
                    stats.add(e.reason, str(e))
                    continue
            seen.add(utt)
            text = text.strip() if keep_case else sentence_case(text)
            parts = utt.split("-")
            meta = {
                "source": "librispeech",
                "speaker": parts[0] if len(parts) == 3 else "",
                "chapter": parts[1] if len(parts) == 3 else "",
            }
            audio = audio.absolute()
            items.append(Item(utt, text, text, audio, audio, "utterance", meta))
            if max_items and len(items) >= max_items:
                return items, stats
    return items, stats


def write_librispeech_manifest(
    root: str | Path, manifest: str | Path, **kwargs: bool | int
) -> tuple[list[Item], SkipStats]:
    """Read `root` and write its manifest. Manifest paths must stay inside the manifest's
    folder: if `root` is elsewhere, a symlink `<manifest folder>/<root name>` -> root is
    made (and reused) so the audio is reachable without absolute paths."""
    root, manifest = Path(root).absolute(), Path(manifest).absolute()
    base = manifest.parent
    base.mkdir(parents=True, exist_ok=True)
    items, stats = read_librispeech(root, **kwargs)  # type: ignore[arg-type]
    if not within(root, base):
        link = base / root.name
        if link.is_symlink() or link.exists():
            if Path(os.path.realpath(link)) != Path(os.path.realpath(root)):
                raise FileExistsError(f"{link} exists and is not a link to {root}; write the manifest elsewhere")
        else:
            link.symlink_to(root, target_is_directory=True)
        for it in items:
            p = link / os.path.relpath(it.question_audio, root)  # type: ignore[arg-type]
            it.question_audio = it.answer_audio = p
    write_manifest(manifest, items)
    return items, stats
