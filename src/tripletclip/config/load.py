"""YAML presets + dotted command-line overrides -> typed :class:`RunConfig`.

``tripletclip train --config configs/X.yaml optim.lr=1e-4 train.steps=100``. A preset may name presets it
extends with ``_base_: other.yaml`` (a path relative to the preset, or a list of them). Unknown keys are
errors naming the key and the file; values are parsed as YAML scalars and then checked against the field type.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar, Union

import yaml

from tripletclip.config.schema import RunConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem: the message names the key, the source and what to do."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one value against a dataclass field type (the small subset our schema uses)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):  # "a,b" on the command line
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{where}: unknown key '{key}' (known: {', '.join(sorted(names))}); fix the spelling or remove it"
            )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in ("kwargs", "args"):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def read_yaml_preset(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, resolving ``_base_`` includes (depth-first, later files win)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: _base_ include cycle")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing YAML preset (see configs/)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (data, model, loss, ...)")
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_yaml_preset(path.parent / b, _seen + (path,)))
    return _deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict."""
    out = _deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. optim.lr=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _looks_float(raw):
            value = float(raw)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        node[parts[-1]] = value
    return out


def _looks_float(raw: str) -> bool:
    # YAML 1.1 reads "1e-4" as a string; users mean a number.
    try:
        float(raw)
        return True
    except ValueError:
        return False


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Build a RunConfig from an optional preset and dotted overrides."""
    data = read_yaml_preset(path) if path else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data, where=str(path) if path else "config")


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Typed RunConfig from a nested dict; unknown keys raise :class:`ConfigError`."""
    return _build(RunConfig, _fix_floats(data), where)


def _fix_floats(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _fix_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_fix_floats(v) for v in data]
    if isinstance(data, str) and _looks_float(data) and any(c in data.lower() for c in "e."):
        return float(data)
    return data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config (all defaults filled in) as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
