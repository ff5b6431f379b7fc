"""Page cursors that only this server can make: signed (django.core.signing, the SECRET_KEY).

A cursor carries the position of the last result of a page (a keyset) as plain JSON values. Unsigned,
anyone could hand back any value: a number past 64 bits reached the database and failed there (a 500),
and every made-up cursor was a new page to compute and cache. Signed, with a salt naming the listing
and the owner, a cursor is good only for the listing and the user it was given to; anything else is a
BadCursor, which the views and the API answer with 400.
"""

from django.core import signing

# A real cursor is well under this (a few values and a signature); a longer one is not ours.
MAX_CURSOR_CHARS = 512


class BadCursor(ValueError):
    pass


def _salt(listing: str, owner: object) -> str:
    return f"cursor:{listing}:{owner}"


def make_cursor(listing: str, owner: object, values: list) -> str:
    return signing.dumps(values, salt=_salt(listing, owner), compress=False)


def read_cursor(listing: str, owner: object, cursor: str, length: int) -> list:
    """The values `make_cursor` signed for this listing and owner; BadCursor for anything else."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursor("cursor too long")
    try:
        values = signing.loads(cursor, salt=_salt(listing, owner))
    except (signing.BadSignature, ValueError) as exc:
        raise BadCursor("cursor not signed by this server") from exc
    if not isinstance(values, list) or len(values) != length:
        raise BadCursor("cursor of another shape")
    return values
