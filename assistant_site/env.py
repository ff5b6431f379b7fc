"""Typed readers for settings that come from the environment.

Each one fails loudly, naming the variable, when a value is malformed: a typo in a port number
should stop the app at start, not surface later as a confusing connection error.
"""

import os
from urllib.parse import urlparse


class ImproperEnvironment(ValueError):
    pass


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_number(name, default, parse, kind: str, minimum):
    raw = os.environ.get(name)
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
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ImproperEnvironment(f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperEnvironment(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    value = os.environ.get(name) or default
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ImproperEnvironment(f"{name} must be a URL with scheme {sorted(schemes)} and a host, got {value!r}")
    try:
        _ = parsed.port  # raises on a malformed port
    except ValueError:
        raise ImproperEnvironment(f"{name} has an invalid port: {value!r}") from None
    return value
