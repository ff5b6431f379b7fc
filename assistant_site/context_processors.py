from django.conf import settings


def limits(request):
    """Limits the templates show to people before they hit them."""
    return {"max_upload_mb": settings.MAX_UPLOAD_BYTES // (1024 * 1024)}
