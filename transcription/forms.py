from pathlib import Path

from django import forms
from django.conf import settings

from . import engine


class UploadForm(forms.Form):
    audio = forms.FileField(label="Audio or video file")
    title = forms.CharField(max_length=255, required=False)
    model = forms.ChoiceField(required=False)
    compute_type = forms.ChoiceField(required=False)
    language = forms.CharField(max_length=3, required=False, help_text="e.g. en; empty to detect")
    word_timestamps = forms.BooleanField(required=False, label="Word timings")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # From the settings at request time, so the allowed lists can change without a restart of tests.
        self.fields["model"].choices = [(m, m) for m in settings.WHISPER_MODELS]
        self.fields["model"].initial = settings.WHISPER_MODEL
        self.fields["compute_type"].choices = [(c, c) for c in settings.WHISPER_COMPUTE_TYPES]
        self.fields["compute_type"].initial = settings.WHISPER_COMPUTE_TYPE

    def clean(self):
        cleaned = super().clean()
        try:
            cleaned["options"] = self.options().resolved()
        except engine.OptionError as exc:
            self.add_error(exc.param if exc.param in self.fields else None, str(exc))
        return cleaned

    def options(self) -> engine.Options:
        data = self.cleaned_data
        return engine.Options(
            model=data.get("model") or "",
            compute_type=data.get("compute_type") or "",
            language=(data.get("language") or "").lower(),
            word_timestamps=bool(data.get("word_timestamps")),
        )

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
