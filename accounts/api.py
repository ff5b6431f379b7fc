"""API tokens over the REST API: list, create (with an expiry), revoke. The same as the profile page."""

from datetime import datetime, timedelta

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Router, Schema, Status

from .models import ApiToken

router = Router(tags=["tokens"])

MAX_EXPIRY_DAYS = 3650


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class NewTokenIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    # Days until it expires; none: never (a token made with an expiring token expires with it at the latest).
    expires_in_days: int | None = Field(None, ge=1, le=MAX_EXPIRY_DAYS)


class NewTokenOut(TokenOut):
    key: str  # shown this once; only its SHA-256 is kept


@router.get("/tokens", response=list[TokenOut])
def list_tokens(request: HttpRequest):
    return list(ApiToken.objects.owned_by(request.user))


@router.post("/tokens", response={201: NewTokenOut})
def create_token(request: HttpRequest, payload: NewTokenIn):
    expires_at = timezone.now() + timedelta(days=payload.expires_in_days) if payload.expires_in_days else None
    # A token cannot mint one that outlives it: that would undo its expiry.
    parent_expiry = getattr(request, "api_token_expires_at", None)
    if parent_expiry is not None and (expires_at is None or expires_at > parent_expiry):
        expires_at = parent_expiry
    token, key = ApiToken.issue(request.user, payload.name, expires_at)
    return Status(201, {**TokenOut.model_validate(token).model_dump(), "key": key})


@router.delete("/tokens/{token_id}", response={204: None})
def revoke_token(request: HttpRequest, token_id: int):
    get_object_or_404(ApiToken.objects.owned_by(request.user), pk=token_id).delete()
    return Status(204, None)
