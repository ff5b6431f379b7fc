from pathlib import Path

from django import forms
from django.conf import settings

from . import engine


class UploadForm(forms.Form):
    audio = forms.FileField(label="Audio or video file")
    title = forms.CharField(max_length=255, required=False)

    def clean_audio(self):
        audio = self.cleaned_data["audio"]
        if audio.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(too_large_message(audio.size), code="too_large")
        if audio.size == 0:
            raise forms.ValidationError("The file is empty.", code="empty")
        # Only the container's header is read here; a file that opens but cannot be decoded
        # fails its job later with the decoder's reason.
        try:
            engine.probe_audio(audio)
        except engine.AudioDecodeError as exc:
            raise forms.ValidationError(str(exc), code="not_audio") from exc
        return audio

    def title_or_filename(self) -> str:
        return self.cleaned_data["title"] or Path(self.cleaned_data["audio"].name).stem[:255]


def too_large_message(size: int) -> str:
    limit_mb = settings.MAX_UPLOAD_BYTES // (1024 * 1024)
    return f"The file is {size / (1024 * 1024):.1f} MB; the limit is {limit_mb} MB."
