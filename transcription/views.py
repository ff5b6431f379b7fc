from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from actions.recordings import accept_upload, delete_recording
from common import metrics
from workflows.models import WorkflowRun

from . import exports, media, quotas
from .forms import UploadForm, declared_length, too_large_message
from .models import Recording


def _owned_recording(request, pk: int) -> Recording:
    # Another user's recording is indistinguishable from a missing one.
    return get_object_or_404(Recording.objects.owned_by(request.user), pk=pk)


def _render_list(request, form: UploadForm, *, upload_error: str = "", status: int = 200):
    recordings = Recording.objects.owned_by(request.user).newest_first()
    page = Paginator(recordings, settings.RECORDINGS_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "form": form, "upload_error": upload_error}
    return render(request, "transcription/recording_list.html", context, status=status)


@login_required
@require_GET
def recording_list(request):
    return _render_list(request, UploadForm())


@login_required
@require_POST
def upload(request):
    # Refuse an oversized body from its declared length, before Django parses the file.
    declared = declared_length(request)
    if declared > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return _render_list(request, UploadForm(), upload_error=too_large_message(declared), status=413)
    try:
        quotas.check(request.user.pk)  # already at a limit: refused before the body is read
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            return _render_list(request, form, status=form.error_status())
        recording = accept_upload(
            request.user,
            form.cleaned_data["audio"],
            form.title_or_filename(),
            form.cleaned_data["options"],
            form.audio_info,
        )
    except quotas.QuotaExceeded as exc:
        return _render_list(request, UploadForm(), upload_error=exc.message, status=exc.status)
    metrics.UPLOAD_SIZE.labels("form").observe(recording.size_bytes)
    return redirect("recording-detail", pk=recording.pk)


@login_required
@require_GET
def recording_detail(request, pk: int):
    recording = _owned_recording(request, pk)
    summary = WorkflowRun.objects.latest_summary(recording)
    return render(request, "transcription/recording_detail.html", {"recording": recording, "summary": summary})


@login_required
@require_GET
def transcript_fragment(request, pk: int):
    """The transcript as an HTML fragment, fetched by the page when the job finishes."""
    recording = _owned_recording(request, pk)
    return render(request, "transcription/_transcript.html", {"recording": recording})


@login_required
@require_GET
def audio(request, pk: int):
    """The recording's audio for the page's player; answers range requests so it can seek."""
    return media.audio_response(request, _owned_recording(request, pk))


@login_required
@require_GET
def export(request, pk: int, fmt: str):
    """Download the transcript as txt, srt, vtt or json."""
    return exports.export_response(request, _owned_recording(request, pk), fmt)


@login_required
@require_POST
def delete(request, pk: int):
    recording = _owned_recording(request, pk)
    delete_recording(recording)
    messages.success(request, f"Deleted “{recording.title}”.")
    return redirect("recording-list")


@login_required
@require_GET
def live(request):
    return render(request, "transcription/live.html")
