"""Regular expressions written by users (match, extract nodes; Rivet's extractRegex and match),
run by the `regex` module with a time limit: Python's `re` backtracks without bound (34
characters of input kept a worker busy past the 1,800 s job limit). `regex` recognises the classic
catastrophic patterns such as (a+)+$ and answers at once; for the rest, WORKFLOW_REGEX_TIMEOUT_SECONDS
per search fails the node with that reason. Its syntax is Python's `re` (plus `(?<name>...)`)."""

from collections.abc import Iterator
from typing import TypeAlias

import regex
from django.conf import settings

from .base import NodeError
from .limits import check_list

error = regex.error  # an invalid pattern
MULTILINE = regex.MULTILINE
Pattern: TypeAlias = regex.Pattern[str]


def compile_pattern(source: str, flags: int = 0) -> regex.Pattern[str]:
    """The compiled pattern (regex.error if it is not valid). V0: Python's `re` semantics."""
    return regex.compile(source, flags | regex.VERSION0)


def _too_slow(pattern: regex.Pattern[str]) -> NodeError:
    return NodeError(
        f"the regular expression {pattern.pattern[:200]!r} took longer than "
        f"{settings.WORKFLOW_REGEX_TIMEOUT_SECONDS} s on this input (WORKFLOW_REGEX_TIMEOUT_SECONDS); simplify it"
    )


def search(pattern: regex.Pattern[str], text: str) -> regex.Match[str] | None:
    """The first match, or NodeError if the search takes longer than the limit."""
    try:
        return pattern.search(text, timeout=settings.WORKFLOW_REGEX_TIMEOUT_SECONDS)
    except TimeoutError:
        raise _too_slow(pattern) from None


def find_all(pattern: regex.Pattern[str], text: str) -> list[regex.Match[str]]:
    """Every match (at most WORKFLOW_MAX_LIST_ITEMS), within the time limit for them all."""
    found: list[regex.Match[str]] = []
    matches: Iterator[regex.Match[str]] = pattern.finditer(text, timeout=settings.WORKFLOW_REGEX_TIMEOUT_SECONDS)
    try:
        for match in matches:
            found.append(match)
            check_list(len(found), "the regular expression's matches")
    except TimeoutError:
        raise _too_slow(pattern) from None
    return found
