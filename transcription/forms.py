from pathlib import Path

from django import forms
from django.conf import settings

from . import engine


def declared_length(request) -> int:
    """The request's Content-Length, so an oversized body is refused before it is parsed."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # malformed: the multipart parser refuses the body later


class UploadForm(forms.Form):
    audio_info: engine.AudioInfo  # what the probe found, once the form is valid

    audio = forms.FileField(label="Audio or video file")
    title = forms.CharField(max_length=255, required=False)
    # Checked against the allowed lists by engine.Options in clean(), one rule for pages and API.
    model = forms.CharField(required=False, widget=forms.Select)
    compute_type = forms.CharField(required=False, widget=forms.Select)
    language = forms.CharField(max_length=8, required=False, help_text="e.g. en; empty to detect")
    prompt = forms.CharField(max_length=2000, required=False, help_text="Names and words to expect")
    word_timestamps = forms.BooleanField(required=False, label="Word timings")
    temperature = forms.FloatField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The allowed lists are read per form, so they follow the settings.
        self.fields["model"].widget.choices = [(m, m) for m in settings.WHISPER_MODELS]
        self.fields["model"].initial = settings.WHISPER_MODEL
        self.fields["compute_type"].widget.choices = [(c, c) for c in settings.WHISPER_COMPUTE_TYPES]
        self.fields["compute_type"].initial = settings.WHISPER_COMPUTE_TYPE

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data  # what forms.Form.clean() returns
        try:
            cleaned["options"] = self.options().resolved()
        except engine.OptionError as exc:
            field = {"initial_prompt": "prompt"}.get(exc.param, exc.param)
            self.add_error(field if field in self.fields else None, str(exc))
        return cleaned

    def options(self) -> engine.Options:
        data = self.cleaned_data
        return engine.Options(
            model=data.get("model") or "",
            compute_type=data.get("compute_type") or "",
            language=(data.get("language") or "").lower(),
            initial_prompt=data.get("prompt") or "",
            word_timestamps=bool(data.get("word_timestamps")),
            temperature=data.get("temperature") or 0.0,
        )

    def error_text(self) -> str:
        return " ".join(str(message) for messages in self.errors.values() for message in messages)

    def clean_audio(self):
        audio = self.cleaned_data["audio"]
        if audio.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(too_large_message(audio.size), code="too_large")
        if audio.size == 0:
            raise forms.ValidationError("The file is empty.", code="empty")
        # The container's header is read (allowed formats, local reads only) and checked against
        # the duration and channel limits; nothing is decoded, unless the container does not say
        # how long it is. A file that opens but cannot be decoded fails its job with a reason.
        try:
            self.audio_info = engine.probe_audio(audio)
        except engine.AudioLimitError as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from exc
        except engine.AudioDecodeError as exc:
            raise forms.ValidationError(str(exc), code="not_audio") from exc
        return audio

    def error_status(self) -> int:
        """413 for a file too large or too long, 400 for anything else wrong."""
        too_big = self.has_error("audio", code="too_large") or self.has_error("audio", code="too_long")
        return 413 if too_big else 400

    def title_or_filename(self) -> str:
        return self.cleaned_data["title"] or Path(self.cleaned_data["audio"].name).stem[:255]


def too_large_message(size: int) -> str:
    limit_mb = settings.MAX_UPLOAD_BYTES // (1024 * 1024)
    return f"The file is {size / (1024 * 1024):.1f} MB; the limit is {limit_mb} MB."
