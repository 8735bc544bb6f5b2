"""Generic configuration machinery, shared by every root configuration.

A *root* configuration is a frozen dataclass whose fields are *sections*, each
itself a frozen dataclass of typed fields (bool, int, float, str, or the
tri-state :data:`AutoBool`: true, false or auto) that carry
their help text in ``metadata["help"]`` (read it with :func:`help_text`).  The
functions here work on any such root, so the training config
(:mod:`remax_ray.config.train`) and the reward-model config
(:mod:`remax_ray.config.rm`) share one YAML loader, one override syntax and one
set of did-you-mean errors.

This module imports only the standard library and PyYAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import textwrap
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the problem."""


def _field(default: Any, help: str | Callable[[], str]) -> Any:
    """A section field with its help text. A callable is called each time the text is shown: a text
    built from a registry that imports torch (the estimators') then costs nothing on importing the
    configuration, which stays torch-free."""
    return field(default=default, metadata={"help": help})


def help_text(f: dataclasses.Field) -> str:
    """The help text of a section field made by :func:`_field`."""
    text = f.metadata["help"]
    return text() if callable(text) else text


AUTO = "auto"
# The type of a tri-state field: true, false, or "auto" (decided later from other fields).
AutoBool = Union[bool, Literal["auto"]]


# ---------------------------------------------------------------------------
# Introspection
# ---------------------------------------------------------------------------


def sections_of(root: type) -> dict[str, type]:
    """``{section name: section dataclass}`` of a root configuration class."""
    return {f.name: f.type for f in dataclasses.fields(root)}


def keys_of(root: type) -> list[str]:
    """All dotted keys (``section.key``) of ``root`` in declaration order."""
    return [f"{s}.{f.name}" for s, cls in sections_of(root).items() for f in dataclasses.fields(cls)]


def help_of(root: type) -> dict[str, str]:
    """Map every dotted key of ``root`` to its help text."""
    return {
        f"{s}.{f.name}": help_text(f)
        for s, cls in sections_of(root).items()
        for f in dataclasses.fields(cls)
    }


def _section_fields(root: type, section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(sections_of(root)[section])}


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, not a string."""


_Loader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    return text.removesuffix("\n...\n").rstrip("\n")


def render_yaml(config: Any, header: Sequence[str]) -> str:
    """``config`` as YAML under the ``header`` comment lines, every field's help as a comment."""
    lines = [f"# {line}" for line in header]
    data = dataclasses.asdict(config)
    for section, cls in sections_of(type(config)).items():
        lines.append("")
        lines.append(f"# {cls.__doc__.strip()}")
        lines.append(f"{section}:")
        for f in dataclasses.fields(cls):
            for line in textwrap.wrap(help_text(f), width=76):
                lines.append(f"  # {line}")
            lines.append(f"  {f.name}: {_yaml_scalar(data[section][f.name])}")
    return "\n".join(lines) + "\n"


def write_text_file(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path``; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Errors with suggestions
# ---------------------------------------------------------------------------


def _close(word: str, choices: Sequence[str]) -> list[str]:
    """The single closest choice (as a list; empty when nothing is close)."""
    return difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)


def _did_you_mean(close: Sequence[str]) -> str:
    """``"; did you mean 'a' or 'b'? "`` or ``"; "`` when nothing is close."""
    if not close:
        return "; "
    return "; did you mean " + " or ".join(repr(c) for c in close) + "? "


def _unknown_key(root: type, section: str, key: str) -> ConfigError:
    dotted = f"{section}.{key}"
    names = list(_section_fields(root, section))
    valid = [f"{section}.{k}" for k in names]
    close = [f"{section}.{k}" for k in _close(key, names)]
    if not close:  # perhaps the key belongs to another section
        other = [k for k in keys_of(root) if not k.startswith(section + ".")]
        best = _close(key, [k.split(".", 1)[1] for k in other])
        close = [k for k in other if k.split(".", 1)[1] in best]
    return ConfigError(f"unknown key {dotted!r}{_did_you_mean(close)}valid keys: {', '.join(valid)}")


def _unknown_section(root: type, section: Any) -> ConfigError:
    sections = list(sections_of(root))
    close = _close(str(section), sections)
    return ConfigError(
        f"unknown section {section!r}{_did_you_mean(close)}valid sections: {', '.join(sections)}"
    )


# ---------------------------------------------------------------------------
# Types and merging
# ---------------------------------------------------------------------------


def _coerce(key: str, tp: type, value: Any) -> Any:
    """Check ``value`` against the field type ``tp``; return the stored value."""
    ok = False
    if tp is bool:
        ok = type(value) is bool
    elif tp is int:
        ok = type(value) is int
    elif tp is float:
        if type(value) is int:
            value = float(value)
        if type(value) is float:
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite float, got {value!r}")
            ok = True
    elif tp is str:
        ok = type(value) is str
    elif tp == AutoBool:
        ok = type(value) is bool or value == AUTO
        if not ok:
            close = _close(str(value).lower(), ["true", "false", AUTO])
            raise ConfigError(f"{key}: expected true, false or auto, got {value!r} "
                              f"({type(value).__name__}){_did_you_mean(close).rstrip('; ')}")
    else:  # pragma: no cover - every field is one of the five above
        raise TypeError(f"unsupported field type {tp!r} for {key}")
    if not ok:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _merge(root: type, data: dict[str, dict[str, Any]], section: Any, key: Any, value: Any) -> None:
    if section not in sections_of(root):
        raise _unknown_section(root, section)
    fields = _section_fields(root, section)
    if key not in fields:
        raise _unknown_key(root, section, str(key))
    data[section][key] = _coerce(f"{section}.{key}", fields[key].type, value)


def _from_data(root: type, data: dict[str, dict[str, Any]]) -> Any:
    sections = sections_of(root)
    return root(**{s: sections[s](**data[s]) for s in sections})


def from_dict(root: type, mapping: Mapping[str, Any] | None, base: Any = None) -> Any:
    """Apply a nested ``{section: {key: value}}`` mapping on top of ``base`` (default ``root()``).

    Keys and types are checked; ranges are not.
    """
    data = dataclasses.asdict(base if base is not None else root())
    if mapping is None:
        return _from_data(root, data)
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"configuration must be a mapping of sections, got {type(mapping).__name__}"
        )
    for section, values in mapping.items():
        if section not in sections_of(root):
            raise _unknown_section(root, section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"section {section!r} must be a mapping of keys, got {values!r} "
                f"({type(values).__name__})"
            )
        for key, value in _flat_items(values):
            _merge(root, data, section, key, value)
    return _from_data(root, data)


def _flat_items(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A section's keys with nested groups flattened: ``lora: {rank: 8}`` is ``lora_rank: 8``
    (a field's group is the part of its name before ``_``, see :func:`field_name`)."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out += _flat_items(value, f"{prefix}{key}_")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def field_name(key: str) -> str:
    """The field a dotted key inside a section names: ``lora.rank`` (from ``model.lora.rank``)
    is the field ``lora_rank``. Groups keep a section flat while the command line reads nested."""
    return key.replace(".", "_")


def with_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Apply ``section.key=value`` strings in order (later ones win).

    Values are parsed as YAML (``0.02``, ``false``, ``1e-5``); string fields
    keep the raw text.  Keys and types are checked; ranges are not.
    """
    root = type(config)
    if isinstance(overrides, str):
        overrides = [overrides]
    data = dataclasses.asdict(config)
    for item in overrides:
        dotted, sep, raw = str(item).partition("=")
        dotted = dotted.strip()
        section, dot, key = dotted.partition(".")
        key = field_name(key)
        if not sep or not dot or not section or not key:
            raise ConfigError(
                f"override {item!r} must look like section.key=value (e.g. algo.kl_coef=0.02)"
            )
        if section not in sections_of(root):
            raise _unknown_section(root, section)
        fields = _section_fields(root, section)
        if key not in fields:
            raise _unknown_key(root, section, key)
        if fields[key].type is str:
            value: Any = raw
        else:
            try:
                value = _yaml_load(raw)
            except yaml.YAMLError:
                value = raw
        _merge(root, data, section, key, value)
    return _from_data(root, data)


def load(root: type, path: str | os.PathLike | None, overrides: Sequence[str],
         validate: Callable[[Any], None]) -> Any:
    """Defaults of ``root``, then the YAML file at ``path``, then ``overrides``; then ``validate``."""
    config = root()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            mapping = _yaml_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML in {str(path)!r}: {exc}") from None
        try:
            config = from_dict(root, mapping, config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    config = with_overrides(config, overrides)
    validate(config)
    return config
