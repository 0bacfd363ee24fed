"""Text tokenizers: a character tokenizer for tiny models, any Hugging Face tokenizer for real ones.

Both expose the same small surface (`encode`, `decode`, special-token ids, `vocab_size`,
`save`/`load` as JSON-able files) so the layout and the model never care which one is used.
The control tokens of the sequence layout are added to either as special tokens.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

# Control tokens of the sequence layout (see layout.py).
PAD, BOS, EOS, TEXT_PAD = "<pad>", "<bos>", "<eos>", "<tpad>"
TRANSCRIBE, REPEAT, ANSWER = "<transcribe>", "<repeat>", "<answer>"
REPLY_TEXT, REPLY_SPEECH = "<reply_text>", "<reply_speech>"
SPECIALS = [PAD, BOS, EOS, TEXT_PAD, TRANSCRIBE, REPEAT, ANSWER, REPLY_TEXT, REPLY_SPEECH]


class Tokenizer:
    """Interface shared by both tokenizers."""

    vocab_size: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_id(self, special: str) -> int:
        raise NotImplementedError

    def files(self) -> dict[str, str | bytes]:
        """Files to store in a checkpoint folder (under tokenizer/)."""
        raise NotImplementedError

    @property
    def pad_id(self) -> int:
        return self.token_id(PAD)


class CharTokenizer(Tokenizer):
    """One id per printable ASCII character; unknown characters map to '?'."""

    def __init__(self, chars: str | None = None) -> None:
        self.chars = chars if chars is not None else string.printable[:95]  # letters, digits, punct, space
        self.itos = SPECIALS + list(self.chars)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)
        self._unk = self.stoi.get("?", len(SPECIALS))

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, self._unk) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids if len(SPECIALS) <= i < self.vocab_size)

    def token_id(self, special: str) -> int:
        return self.stoi[special]

    def files(self) -> dict[str, str | bytes]:
        return {"tokenizer/char_tokenizer.json": json.dumps({"chars": self.chars})}


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer with the layout's control tokens added as special tokens."""

    def __init__(self, name_or_path: str) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name_or_path)
        self.tok.add_special_tokens({"additional_special_tokens": SPECIALS})
        self.vocab_size = len(self.tok)
        self._special_ids = {s: self.tok.convert_tokens_to_ids(s) for s in SPECIALS}

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def token_id(self, special: str) -> int:
        return self._special_ids[special]

    def files(self) -> dict[str, str | bytes]:
        with tempfile.TemporaryDirectory() as d:
            self.tok.save_pretrained(d)
            return {f"tokenizer/{p.name}": p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


def build_tokenizer(spec: str) -> Tokenizer:
    """'char' for the character tokenizer, else a hub name or local path of an HF tokenizer."""
    return CharTokenizer() if spec == "char" else HFTokenizer(spec)


def load_tokenizer(checkpoint_dir: str | Path) -> Tokenizer:
    folder = Path(checkpoint_dir) / "tokenizer"
    char = folder / "char_tokenizer.json"
    if char.is_file():
        return CharTokenizer(json.loads(char.read_text())["chars"])
    if folder.is_dir():
        return HFTokenizer(str(folder))
    raise FileNotFoundError(f"{checkpoint_dir}: no tokenizer/ folder in checkpoint")
