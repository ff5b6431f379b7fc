"""Who an API key belongs to. One place for the REST API and the OpenAI-compatible endpoint."""

from datetime import timedelta

from django.utils import timezone

from .models import ApiToken, hash_key

# Writing last_used_at on every request would turn every read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=5)


def bearer_key(request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def user_for_key(key: str):
    """The active user owning this key, or None."""
    if not key:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
