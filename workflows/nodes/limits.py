"""What one workflow node may produce: the engine's size limits, checked before a value is built
where that is possible (a template's pieces are measured before they are joined), so a chain of
nodes that doubles its text fails with a reason instead of taking the worker's memory."""

from collections.abc import Iterable

from django.conf import settings

from .base import NodeError


def joined(pieces: Iterable[str], what: str = "the text") -> str:
    """The pieces joined, or NodeError if the result would exceed WORKFLOW_MAX_VALUE_CHARS
    (measured first: the pieces are references to values that already exist)."""
    pieces = list(pieces)
    size, limit = sum(map(len, pieces)), settings.WORKFLOW_MAX_VALUE_CHARS
    if size > limit:
        raise NodeError(f"{what} would be {size} characters; the limit is {limit} (WORKFLOW_MAX_VALUE_CHARS)")
    return "".join(pieces)


def value_chars(value, limit: int) -> int:
    """About how many characters `value` holds as text (strings, and those in lists and mappings,
    with a few per item), counted only until `limit` is passed: the size of a huge value is not
    worth the time to count exactly. Iterative, so deep nesting cannot exhaust the stack."""
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += 2 + len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 2 + len(item)
            pending.extend(item)
        else:
            total += 8  # a number, a boolean, None, NOT_RAN
    return total


def check_list(count: int, what: str) -> None:
    """NodeError if a list is about to get more than WORKFLOW_MAX_LIST_ITEMS items."""
    if count > settings.WORKFLOW_MAX_LIST_ITEMS:
        raise NodeError(f"{what}: more than {settings.WORKFLOW_MAX_LIST_ITEMS} items (WORKFLOW_MAX_LIST_ITEMS)")
