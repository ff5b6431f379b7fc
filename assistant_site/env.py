"""Typed readers for settings that come from the environment.

Each one fails loudly, naming the variable, when a value is malformed: a typo in a port number
should stop the app at start, not surface later as a confusing connection error.
"""

import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

Number = TypeVar("Number", int, float)

# Every variable read through these readers, with the default the code gave it (not the value the
# environment gave). tests/test_settings.py loads the settings in a clean environment and checks
# each one against the README's Settings table, so a new setting cannot go undocumented.
DEFAULTS: dict[str, object] = {}


class ImproperEnvironment(ValueError):
    pass


def _read(name: str, default: object) -> str | None:
    DEFAULTS[name] = default
    return os.environ.get(name)


def env_str(name: str, default: str) -> str:
    raw = _read(name, default)
    return default if raw is None else raw


def _env_number(
    name: str, default: Number, parse: Callable[[str], Number], kind: str, minimum: Number | None
) -> Number:
    raw = _read(name, default)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperEnvironment(f"{name} must be {kind}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperEnvironment(f"{name} must be at least {minimum}, got {value}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, "a whole number", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    raw = _read(name, default)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ImproperEnvironment(f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _read(name, default)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = _read(name, default) or default
    if value not in choices:
        raise ImproperEnvironment(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    value = _read(name, default) or default
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ImproperEnvironment(f"{name} must be a URL with scheme {sorted(schemes)} and a host, got {value!r}")
    try:
        _ = parsed.port  # raises on a malformed port
    except ValueError:
        raise ImproperEnvironment(f"{name} has an invalid port: {value!r}") from None
    return value
