"""Uploading: the page, the size limit, bad files ending as failed recordings with a reason."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from actions import recordings
from transcription.models import Recording


def upload(client, name: str, content: bytes, title: str = ""):
    return client.post(
        reverse("recording-upload"),
        {"audio": SimpleUploadedFile(name, content), "title": title},
    )


@pytest.fixture
def logged_in_alice(client, alice):
    client.force_login(alice)
    return client


def test_pages_require_login(client, db):
    for url in (reverse("recording-list"), reverse("recording-detail", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post(reverse("recording-upload")).status_code == 302


def test_signup_logs_the_new_user_in(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "carol", "password1": "a-long-Passphrase-9", "password2": "a-long-Passphrase-9"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.context["user"].username == "carol"
    assert b"Your recordings" in response.content


def test_upload_stores_the_recording_and_queues_it(logged_in_alice, alice, speech, django_capture_on_commit_callbacks):
    path, _ = speech
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(logged_in_alice, "meeting.wav", Path(path).read_bytes(), "Standup")
    recording = Recording.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("recording-detail", args=[recording.pk])
    assert recording.owner == alice and recording.title == "Standup"
    assert recording.status == Recording.Status.QUEUED
    assert Path(recording.audio.path).read_bytes() == Path(path).read_bytes()
    # Stored under our name with the probed format's extension; its type and length known already.
    assert Path(recording.audio.name).name == f"{recording.uuid}.wav" and recording.audio_mime == "audio/wav"
    assert recording.duration == pytest.approx(Path(path).stat().st_size / 2 / 22050, rel=0.05)
    # The job is queued only once the row is committed.
    assert len(callbacks) == 1


def test_it_refuses_oversized_upload(logged_in_alice, settings, db):
    settings.MAX_UPLOAD_BYTES = 1024 * 1024
    response = upload(logged_in_alice, "huge.wav", b"\0" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert "the limit is 1 MB" in response.content.decode()
    assert not Recording.objects.exists()


def test_a_malformed_content_length_is_a_client_error(logged_in_alice, db):
    response = logged_in_alice.post(reverse("recording-upload"), {"title": "x"}, CONTENT_LENGTH="lots")
    assert response.status_code == 400
    assert not Recording.objects.exists()


def test_it_refuses_an_upload_without_a_file(logged_in_alice, db):
    response = logged_in_alice.post(reverse("recording-upload"), {"title": "nothing"})
    assert response.status_code == 400
    assert not Recording.objects.exists()


def _queued(owner, name: str, content: bytes) -> Recording:
    from django.core.files.base import ContentFile

    recording = Recording(owner=owner, title=name, size_bytes=len(content))
    recording.audio.save(name, ContentFile(content), save=True)
    return recording


def test_a_non_audio_file_ends_as_failed_with_a_reason(logged_in_alice, alice, speech):
    path, _ = speech
    good = _queued(alice, "good.wav", Path(path).read_bytes())
    notes = _queued(alice, "notes.txt", b"Minutes of the meeting\n" * 100)

    assert recordings.transcribe(notes.id) is False
    notes.refresh_from_db()
    assert notes.status == Recording.Status.FAILED
    assert "not an audio or video file" in notes.error

    page = logged_in_alice.get(reverse("recording-detail", args=[notes.pk])).content.decode()
    assert "not an audio or video file" in page and "Failed" in page

    # The bad file took nothing down with it: the next job runs as usual.
    assert recordings.transcribe(good.id) is True
    good.refresh_from_db()
    assert good.status == Recording.Status.DONE and "fox" in good.transcript.text.lower()


def test_a_corrupt_audio_file_ends_as_failed(alice, speech):
    path, _ = speech
    corrupt = _queued(alice, "corrupt.mp3", b"ID3" + bytes(range(256)) * 40)
    assert recordings.transcribe(corrupt.id) is False
    corrupt.refresh_from_db()
    assert corrupt.status == Recording.Status.FAILED
    assert corrupt.error and "Traceback" not in corrupt.error


def test_a_job_runs_once_even_if_delivered_twice(alice, speech):
    path, _ = speech
    recording = _queued(alice, "twice.wav", Path(path).read_bytes())
    assert recordings.transcribe(recording.id) is True
    assert recordings.transcribe(recording.id) is False  # a redelivery finds it done and leaves it alone
    recording.refresh_from_db()
    assert recording.transcript.segments.count() >= 1


def test_stored_segments_are_timed_and_in_order(alice, speech):
    path, _ = speech
    recording = _queued(alice, "order.wav", Path(path).read_bytes())
    recordings.transcribe(recording.id)
    recording.refresh_from_db()
    segments = list(recording.transcript.segments.all())
    assert [s.index for s in segments] == list(range(len(segments)))
    assert all(0 <= s.start < s.end <= recording.duration + 0.5 for s in segments)
    assert recording.duration == pytest.approx(Path(path).stat().st_size / 2 / 22050, rel=0.05)
    assert recording.progress == 1.0


def test_a_file_that_is_not_audio_is_refused_at_upload(logged_in_alice, db):
    response = upload(logged_in_alice, "notes.txt", b"Minutes of the meeting\n" * 100)
    assert response.status_code == 400
    assert "audio or video file we can read" in response.content.decode()
    assert not Recording.objects.exists()


def test_the_upload_page_takes_transcription_options(logged_in_alice, speech, settings):
    path, _ = speech
    page = logged_in_alice.get(reverse("recording-list")).content.decode()
    assert 'name="model"' in page and 'name="word_timestamps"' in page
    response = logged_in_alice.post(
        reverse("recording-upload"),
        {
            "audio": SimpleUploadedFile("a.wav", Path(path).read_bytes()),
            "model": "tiny.en",
            "compute_type": "float32",
            "word_timestamps": "on",
            "language": "EN",
        },
    )
    assert response.status_code == 302
    options = Recording.objects.get().options
    assert options["compute_type"] == "float32" and options["word_timestamps"] is True
    assert options["language"] == "en" and options["model"] == "tiny.en"

    refused = logged_in_alice.post(
        reverse("recording-upload"),
        {"audio": SimpleUploadedFile("b.wav", Path(path).read_bytes()), "compute_type": "int4"},
    )
    assert refused.status_code == 400 and Recording.objects.count() == 1


def test_the_users_file_name_is_only_the_title(logged_in_alice, speech):
    path, _ = speech
    response = upload(logged_in_alice, "../../etc/Team meeting.MP3", Path(path).read_bytes())
    assert response.status_code == 302
    recording = Recording.objects.get()
    assert recording.title == "Team meeting"
    # A WAV whatever it was called: the stored name is the uuid and the probed format's extension.
    assert recording.audio.name.endswith(f"/{recording.uuid}.wav") and ".." not in recording.audio.name


def test_a_failed_insert_leaves_no_file_behind(alice, speech, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from transcription import engine

    path, _ = speech
    upload_file = SimpleUploadedFile("a.wav", Path(path).read_bytes())
    info = engine.probe_audio(upload_file)
    written = []
    storage = Recording._meta.get_field("audio").storage
    original_save = storage.save
    monkeypatch.setattr(
        storage, "save", lambda name, content, **kw: written.append(original_save(name, content, **kw)) or written[-1]
    )

    def refuse(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Recording, "save", refuse)
    with pytest.raises(RuntimeError):
        recordings.accept_upload(alice, upload_file, "a", None, info)
    # The file was written (before the transaction) and removed when the insert failed.
    assert len(written) == 1 and not storage.exists(written[0])
