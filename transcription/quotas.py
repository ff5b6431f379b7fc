"""Per-user limits on what an upload may add: stored audio (USER_STORAGE_QUOTA_MB) and recordings
waiting for or in transcription (USER_MAX_QUEUED_JOBS). Checked before an upload's body is parsed,
and again in its transaction with the user's row locked, so two uploads at once cannot both pass."""

from django.conf import settings

from .models import Recording

MIB = 1024 * 1024


class QuotaExceeded(Exception):
    """An upload over one of the user's limits: `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check(user_id: int, new_bytes: int = 0) -> None:
    """QuotaExceeded if storing `new_bytes` more, as one more queued job, would pass a limit."""
    mine = Recording.objects.owned_by_id(user_id)
    stored = mine.stored_bytes()
    limit = settings.USER_STORAGE_QUOTA_BYTES
    if stored + new_bytes > limit:
        raise QuotaExceeded(
            413,
            "storage_quota",
            f"Your recordings take {stored / MIB:.1f} MB and this file {new_bytes / MIB:.1f} MB; "
            f"the limit is {limit / MIB:.1f} MB. Delete some recordings to make room.",
        )
    waiting = mine.waiting().count()
    if waiting >= settings.USER_MAX_QUEUED_JOBS:
        raise QuotaExceeded(
            429,
            "too_many_jobs",
            f"You have {waiting} recordings waiting or being transcribed, the most at once; "
            "upload again when one has finished.",
        )
