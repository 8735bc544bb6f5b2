"""Validation helpers shared by the root configurations' ``validate`` functions."""

from __future__ import annotations

import dataclasses
import string
from typing import Any, Callable, Mapping, Sequence

from remax_ray.config.base import ConfigError, _close, _coerce, _did_you_mean, sections_of

# A range rule: (dotted key, predicate on its value, the constraint in words).
Range = tuple[str, Callable[[Any], bool], str]



def _get(config: Any, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def check_types(config: Any) -> None:
    """Every field has its declared type (a config may also have been built by hand)."""
    for section, cls in sections_of(type(config)).items():
        for f in dataclasses.fields(cls):
            _coerce(f"{section}.{f.name}", f.type, getattr(getattr(config, section), f.name))


def check_non_empty(config: Any, keys: Sequence[str]) -> None:
    for key in keys:
        if not _get(config, key).strip():
            raise ConfigError(f"{key}: must not be empty")


def _check(ok: bool, key: str, constraint: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {constraint} (got {value!r})")


def check_ranges(config: Any, ranges: Sequence[Range]) -> None:
    for key, ok, constraint in ranges:
        value = _get(config, key)
        _check(ok(value), key, constraint, value)


Choice = tuple[str, Callable[[], Sequence[str]], str, Mapping[str, str] | None]
"""(key, its choices (called when checked: a registry may import torch), what a value is, aliases
that earn a did-you-mean)."""


def check_choices(config: Any, table: Sequence[Choice]) -> None:
    for key, choices, what, aliases in table:
        _choice(key, _get(config, key), tuple(choices()), what, aliases)


def _choice(
    key: str,
    value: str,
    choices: Sequence[str],
    what: str = "value",
    aliases: Mapping[str, str] | None = None,
) -> None:
    if value not in choices:
        close = [aliases[value]] if aliases and value in aliases else _close(value, choices)
        raise ConfigError(
            f"{key}: unknown {what} {value!r}{_did_you_mean(close)}choices: {', '.join(choices)}"
        )


def check_template(key: str, template: str) -> None:
    """A ``str.format`` template with ``{response}`` and optionally ``{prompt}``, nothing else."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"{key}: invalid format string {template!r}: {exc}") from None
    if "response" not in names:
        raise ConfigError(f"{key}: must contain '{{response}}' (got {template!r})")
    extra = sorted(names - {"prompt", "response"})
    if extra:
        raise ConfigError(
            f"{key}: only {{prompt}} and {{response}} placeholders are allowed "
            f"(got {', '.join('{' + n + '}' for n in extra)})"
        )
