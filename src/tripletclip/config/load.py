"""YAML presets + dotted command-line overrides -> typed :class:`RunConfig`.

``tripletclip train --config configs/X.yaml optim.lr=1e-4 train.steps=100``. A preset may name presets it
extends with ``_base_: other.yaml`` (a path relative to the preset, or a list of them). Unknown keys are
errors naming the key and the file. An override is converted with the type of the field it sets and then
checked, as nanoGPT's configurator does: ``train.name=1e3`` is the string ``'1e3'``, ``optim.lr=1e-4`` the
float 0.0001, ``train.steps=1e3`` an error. Presets and untyped values (``loss.kwargs.*``) are read as YAML
with YAML 1.2's number rules, under which ``1e-4`` is a number (YAML 1.1, PyYAML's default, reads a string).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar, Union

import yaml

from tripletclip.config.schema import RunConfig
from tripletclip.errors import InputError

T = TypeVar("T")


class ConfigError(InputError):
    """A config problem: the message names the key, the source and what to do (one line per problem)."""


# YAML 1.2 floats ("1e-4", "5E3"), added to PyYAML's YAML 1.1 resolvers; the dumper quotes strings that
# would read back as numbers under this rule, so a saved config.yaml round-trips.
_YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
                           r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$")


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def _yaml_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


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
    """A dataclass from a mapping: unknown keys and wrongly typed values are :class:`ConfigError` s."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{where}: unknown key '{key}' (known: {', '.join(sorted(names))}); fix the spelling or remove it"
            )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


build_dataclass = _build  # public names for other config schemas (the demo's)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in ("kwargs", "args"):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


deep_merge = _deep_merge


def read_yaml_preset(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, resolving ``_base_`` includes (depth-first, later files win)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: _base_ include cycle")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing YAML preset (see configs/)")
    try:
        data = _yaml_value(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (data, model, loss, ...)")
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_yaml_preset(path.parent / b, _seen + (path,)))
    return _deep_merge(merged, data)


def _field_type(parts: list[str]) -> Any:
    """The declared type at a dotted path of :class:`RunConfig` (Any below untyped dicts or unknown keys)."""
    tp: Any = RunConfig
    for part in parts:
        if dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part, Any)
        elif typing.get_origin(tp) is dict:
            tp = (typing.get_args(tp) or (str, Any))[1]
        else:
            return Any
    return tp


def parse_override(raw: str, tp: Any) -> Any:
    """The command-line text of one override as a value of type ``tp``.

    str fields take the text as written; int and float fields convert it (a failure keeps the text, which
    the type check then reports); anything else is read as YAML (1.2 numbers). ``null`` clears an Optional.
    """
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw.strip() in ("null", "~"):
            return None
        tp = args[0] if len(args) == 1 else Any
    if tp is str:
        return raw
    for number in (int, float):
        if tp is number:
            try:
                return number(raw)
            except ValueError:
                return raw
    try:
        return _yaml_value(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides, each converted with its field's type, to a nested dict."""
    out = _deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. optim.lr=1e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        value = parse_override(raw, _field_type(parts))
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        node[parts[-1]] = value
    return out


def check_override(item: str) -> None:
    """One ``key=value`` override checked on its own, so that a typo blames the override, not the preset.

    Each part of the key must be a field of its section (a close spelling is suggested), and the value must
    convert to the field's type. Keys below untyped mappings (``loss.kwargs.*``, ``eval.args.*``) pass.
    """
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key=value, e.g. optim.lr=1e-4")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    tp: Any = RunConfig
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            break
        names = sorted(f.name for f in dataclasses.fields(tp))
        if part not in names:
            section = ".".join(parts[:i])
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            hint = f"did you mean {'.'.join([*parts[:i], close[0]])}? " if close else ""
            raise ConfigError(f"override '{item}': unknown key '{part}' in {section or 'the config'} "
                              f"({hint}known: {', '.join(names)}); fix the spelling on the command line")
        tp = typing.get_type_hints(tp)[part]
    else:
        _coerce(parse_override(raw, tp), tp, f"override '{key.strip()}'")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Build a RunConfig from an optional preset and dotted overrides (each checked before the merge)."""
    overrides = list(overrides)
    for item in overrides:
        check_override(item)
    data = read_yaml_preset(path) if path else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data, where=str(path) if path else "config")


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Typed RunConfig from a nested dict; unknown keys raise :class:`ConfigError`."""
    return _build(RunConfig, data, where)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config (all defaults filled in) as YAML that :func:`load_config` reads back unchanged."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(dump_config(cfg))
