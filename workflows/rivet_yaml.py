"""Reading a `.rivet-project` file's YAML safely: libyaml (C) for speed, YAML 1.2 for meaning,
no anchors or aliases, and (run as `python -m workflows.rivet_yaml`) in a child process under
CPU and memory limits, so a hostile file costs the web process nothing.

Why each part:
- libyaml: the pure-Python reader took 52 s on a 1.4 MB file; PyYAML's C parser reads it in a
  fraction of that. Its events are composed here (below), not by libyaml's composer, so that an
  anchor or alias is refused where it appears: a 551-byte "billion laughs" file expands to
  hundreds of MB once anything walks it, and Rivet never writes anchors.
- YAML 1.2: Rivet writes YES, NO, on and 12:30 unquoted and means text; the implicit types are
  ruamel.yaml's YAML 1.2 rules (what the importer used before), and dates stay text.
- No Django here: the child starts in a fraction of a second and imports only PyYAML.
"""

import json
import math
import re
import resource
import sys
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

# PyYAML built without libyaml has no CParser: correct, only slower.
Parser: Any = yaml.cyaml.CParser if yaml.__with_libyaml__ else yaml.Loader  # type: ignore[attr-defined]

MAX_DEPTH = 200  # Rivet nests about eight deep; deeper is an attack on the recursion

# YAML 1.2 core schema plain scalars, as ruamel.yaml resolves them (with its `_` in numbers).
NULL = re.compile(r"~|null|Null|NULL|")
BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
INT = re.compile(r"[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+")
FLOAT = re.compile(
    r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
    r"|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN)"
)
MAX_INT_DIGITS = 1000  # a longer "number" stays text: int() is quadratic, and refuses past 4300 digits

STR_TAG = "tag:yaml.org,2002:str"
KNOWN_TAGS = {STR_TAG, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}


class YAMLRefused(ValueError):
    """The YAML cannot be read (malformed, or uses something refused here); the message says why."""


def _int(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").replace("_", "")
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)  # YAML 1.2: 017 is seventeen


def _float(text: str) -> float:
    lowered = text.lower().replace("_", "")
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered.endswith(".nan"):
        return math.nan
    return float(lowered)


def scalar(value: str, plain: bool, tag: str | None) -> Any:
    """A scalar as YAML 1.2 (core schema) means it; quoted scalars are text."""
    if tag not in (None, "!") and tag not in KNOWN_TAGS:
        raise YAMLRefused(f"the tag {tag!r} is not allowed")
    if tag == STR_TAG or (tag is None and not plain) or tag == "!":
        return value
    if len(value) > MAX_INT_DIGITS:
        return value
    if tag is None and NULL.fullmatch(value):
        return None
    if BOOL.fullmatch(value):
        return value.lower() == "true"
    if INT.fullmatch(value):
        return _int(value)
    if FLOAT.fullmatch(value):
        return _float(value)
    if tag is not None:
        raise YAMLRefused(f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}")
    return value


def _where(event) -> str:
    mark = getattr(event, "start_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def load(text: str | bytes) -> Any:
    """The single YAML document in `text` as plain dicts, lists and scalars, or YAMLRefused."""
    parser = Parser(text)
    try:
        return _load_document(parser)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise YAMLRefused(f"{problem}{where}") from None
    finally:
        parser.dispose()


def _load_document(parser) -> Any:
    """Compose the events into values, iteratively (no recursion to exhaust), refusing aliases and anchors."""
    stack: list[list] = []  # open collections: [container, pending key or None for a sequence]
    root: Any = None
    documents = 0
    while True:
        event = parser.get_event()
        if isinstance(event, StreamStartEvent | DocumentEndEvent):
            continue
        if isinstance(event, StreamEndEvent):
            return root
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise YAMLRefused(f"the file holds more than one YAML document{_where(event)}")
            continue
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YAMLRefused(f"anchors and aliases (&, *) are not allowed{_where(event)}")
        if isinstance(event, SequenceEndEvent | MappingEndEvent):
            value = stack.pop()[0]
        elif isinstance(event, ScalarEvent):
            value = scalar(event.value, event.implicit[0], event.tag)
        elif isinstance(event, SequenceStartEvent | MappingStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise YAMLRefused(f"nested more than {MAX_DEPTH} deep{_where(event)}")
            if event.tag not in (None, "!", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"):
                raise YAMLRefused(f"the tag {event.tag!r} is not allowed{_where(event)}")
            stack.append([[] if isinstance(event, SequenceStartEvent) else {}, _NO_KEY])
            continue
        else:  # pragma: no cover - libyaml emits no other events
            raise YAMLRefused(f"unexpected {type(event).__name__}")
        if not stack:
            root = value
            continue
        top = stack[-1]
        if isinstance(top[0], list):
            top[0].append(value)
        elif top[1] is _NO_KEY:
            if isinstance(value, dict | list):
                raise YAMLRefused(f"a mapping key is a collection{_where(event)}")
            # Keys are text, as the importer reads them (and as JSON carries them out of the child).
            key = "" if value is None else str(value)
            if key in top[0]:
                raise YAMLRefused(f"the key {key[:80]!r} appears twice in one mapping{_where(event)}")
            top[1] = key
        else:
            top[0][top[1]] = value
            top[1] = _NO_KEY


_NO_KEY = object()


def _limit_resources(cpu_seconds: int, memory_bytes: int) -> None:
    """The child's own limits: the kernel ends it when it uses more CPU or memory than this."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def main() -> None:
    """`python -m workflows.rivet_yaml CPU_SECONDS MEMORY_BYTES`: YAML on stdin, one JSON line on
    stdout: {"value": ...} or {"error": "..."}. The limits are set before the input is read."""
    _limit_resources(int(sys.argv[1]), int(sys.argv[2]))
    data = sys.stdin.buffer.read()
    try:
        answer = {"value": load(data)}
    except YAMLRefused as exc:
        answer = {"error": str(exc)}
    except RecursionError:
        answer = {"error": "nested too deeply"}
    # NaN and infinity survive as Python's JSON extensions.
    sys.stdout.write(json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
