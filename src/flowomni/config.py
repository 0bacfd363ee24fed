"""Dataclass configs loaded from YAML, with dotted command-line overrides.

Every config in flowomni is a (nested) dataclass. YAML files map onto them field by field;
an unknown key is an error that names it, so a typo never silently falls back to a
default. `--set model.flow.steps=8` overrides any field after the file is read.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the config's schema."""


class SettingError(ValueError):
    """A setting that cannot work with this model (a sampler it does not have, ...), found only
    when it is used. It is the fault of whoever set it up, never of a request: the server
    answers it as its own error (500 / `internal`), the CLIs as a usage error."""


def check_choice(key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """ConfigError naming `key` unless `value` is one of `allowed` (checked when a config is
    built, so a typo fails where it is read, not on first use)."""
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")


Bounds = dict[str, tuple[float | None, float | None]]  # field -> (lowest, highest) allowed; None: open


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_bounds(cfg: Any, where: str = "") -> None:
    """Check the fields a config dataclass lists in its `BOUNDS` class attribute.

    Absurd numbers (a negative batch size, a 10^9-wide layer, a 1-sample VAD frame) are
    refused where they are read, with the key and its allowed range, before anything is
    built from them. None values (optional fields) and list items are checked alike."""
    for name, bounds in getattr(type(cfg), "BOUNDS", {}).items():
        value = getattr(cfg, name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            _check_value(f"{where}.{name}".lstrip("."), v, *bounds)


def _check_value(key: str, v: Any, lo: float | None, hi: float | None) -> None:
    if v is None:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
        allowed = (
            f"{_number(lo)} to {_number(hi)}"
            if lo is not None and hi is not None
            else f"at least {_number(lo)}"
            if lo is not None
            else f"at most {_number(hi)}"
        )
        raise ConfigError(f"{key}: {v!r} is out of range (allowed: {allowed})")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into `tp`, recursing into dataclasses; errors name the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is Any:
        return value
    if tp is float and (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        or isinstance(value, str)
        and _FLOAT.fullmatch(value.strip())
    ):
        # (YAML 1.1 reads "1e-4", without a dot, as a string; users write it anyway)
        number = float(value)
        if not math.isfinite(number):  # YAML .nan / .inf, JSON NaN / Infinity: never a useful setting
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp in (int, str, bool, float) and not isinstance(value, tp):
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        hint = ""
        if tp is str and isinstance(value, bool):
            hint = " (YAML reads a bare no/yes/off/on as a boolean: quote it, e.g. 'no')"
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}{hint}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys raise ConfigError."""
    types_ = _field_types(cls)
    unknown = set(data) - set(types_)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {sorted(unknown)}; known: {sorted(types_)}")
    for k, (lo, hi) in getattr(cls, "BOUNDS", {}).items():  # NaN/Inf in a bounded field: say the range
        if isinstance(data.get(k), float) and not math.isfinite(data[k]):
            _check_value(f"{where}.{k}".lstrip("."), data[k], lo, hi)
    kwargs = {k: _coerce(types_[k], v, f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    cfg = cls(**kwargs)
    check_bounds(cfg, where)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a nested dict; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        path = key.strip().split(".")
        if not all(path):
            raise ConfigError(f"override {item!r}: {key.strip()!r} is not a dotted.key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({getattr(e, 'problem', None) or e})") from e
        node = data
        *parents, leaf = path
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[leaf] = value
    return data


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping. `base: other.yaml` (relative to this file) is read first and this
    file's keys are merged over it, so a variant states only what differs."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: `base` files include each other in a loop")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    data = loaded or {}
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{p}: `base` must be a file name, got {base!r}")
    return _merge(read_yaml(p.parent / base, (*_seen, p.resolve())), data)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    section: str | None = None,
    defaults: T | None = None,
) -> T:
    """Read YAML `path` (optional; only its `section` if given, a dotted path such as
    "model.input_mel") onto `defaults` (default: those of `cls`), then apply overrides."""
    data: Any = read_yaml(path) if path is not None else {}
    for key in section.split(".") if section is not None else []:
        data = (data.get(key) if isinstance(data, dict) else None) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {section} must be a mapping, got {data!r}")
    data = _merge(to_dict(cls() if defaults is None else defaults), data)  # type: ignore[call-arg]
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, section or "")


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def add_config_arguments(p: Any, what: str, *, run: bool = True) -> None:
    """The arguments every config-driven command shares: CONFIG, --set (and, for training
    runs, --max-steps, --resume, --run-dir)."""
    p.add_argument("config", help=f"{what} YAML (see configs/)")
    if run:
        p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: the config's)")
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run_dir")
        p.add_argument("--run-dir", default=None, help="override run_dir")
    add_set_option(p, "override any config field, e.g. --set train.batch_size=8 (repeatable)")


def add_set_option(p: Any, help: str) -> None:
    """`--set KEY=VALUE` (repeatable, into `args.overrides`): every command's way to override
    a setting; `apply_overrides` applies the list."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_gen_option(p: Any, help: str) -> None:
    """`--gen KEY=VALUE` (repeatable, into `args.gen_overrides`): generation knobs, for commands
    whose `--set` means other settings (the server's, ...)."""
    p.add_argument("--gen", dest="gen_overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def config_from_args(cls: type[T], args: Any) -> T:
    """Load `args.config` with `args.overrides` (and `args.run_dir`). A ConfigError raised
    here reaches the `flowomni` command, which prints it and exits with code 2."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(cls, args.config, args.overrides)
    if getattr(args, "run_dir", None):
        cfg.run_dir = args.run_dir  # type: ignore[attr-defined]
    return cfg


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
