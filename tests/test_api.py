"""The REST API: tokens, auth, isolation, cursor pagination, upload, delete, ETags, compression."""

import json
from pathlib import Path

import brotli
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken, hash_key
from transcription.models import Recording, Transcript


def api_client(key: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def alice_key(alice):
    return ApiToken.issue(alice, "tests")[1]


@pytest.fixture
def bob_key(bob):
    return ApiToken.issue(bob, "tests")[1]


def make_recordings(owner, n: int, **fields) -> list[Recording]:
    base = timezone.now()
    made = []
    for i in range(n):
        recording = Recording(
            owner=owner, title=f"{owner.username} {i}", created_at=base - timezone.timedelta(minutes=i), **fields
        )
        recording.audio.save("x.wav", ContentFile(b"x"), save=True)
        made.append(recording)
    return made


def test_a_token_is_made_on_the_profile_page_and_shown_once(client, alice):
    client.force_login(alice)
    response = client.post(reverse("profile"), {"name": "laptop script"})
    key = response.context["new_key"]
    assert key.startswith("wa_") and key in response.content.decode()
    token = ApiToken.objects.get(user=alice)
    assert token.key_hash == hash_key(key) and key not in (token.key_hash, token.prefix)
    assert key not in client.get(reverse("profile")).content.decode()  # never shown again
    assert api_client(key).get("/api/recordings").status_code == 200

    client.post(reverse("revoke-token", args=[token.pk]))
    assert api_client(key).get("/api/recordings").status_code == 401


def test_the_api_needs_a_valid_token(db, alice_key):
    assert Client().get("/api/recordings").status_code == 401
    assert api_client("wa_not-a-real-key").get("/api/recordings").status_code == 401
    assert api_client(alice_key).get("/api/recordings").status_code == 200


def test_a_token_sees_only_its_owners_recordings(alice, bob, alice_key, bob_key):
    alices = make_recordings(alice, 2)
    make_recordings(bob, 1)
    listed = api_client(alice_key).get("/api/recordings").json()["results"]
    assert {r["id"] for r in listed} == {r.id for r in alices}

    bob_api = api_client(bob_key)
    assert bob_api.get(f"/api/recordings/{alices[0].id}").status_code == 404
    assert bob_api.get(f"/api/recordings/{alices[0].id}/transcript.txt").status_code == 404
    assert bob_api.delete(f"/api/recordings/{alices[0].id}").status_code == 404
    assert Recording.objects.filter(pk=alices[0].id).exists()


def test_the_list_is_paginated_by_cursor_newest_first(alice, alice_key):
    made = make_recordings(alice, 25)
    api = api_client(alice_key)
    seen, cursor = [], None
    for _ in range(3):
        page = api.get("/api/recordings", {"limit": 10, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["id"] for r in page["results"]]
        cursor = page["next_cursor"]
    assert seen == [r.id for r in made]  # made newest first
    assert cursor is None
    assert api.get("/api/recordings", {"cursor": "garbage!"}).status_code == 400
    assert api.get("/api/recordings", {"limit": 1000}).status_code == 422


def test_the_list_filters_by_status_and_words(alice, alice_key):
    done = make_recordings(alice, 1, status=Recording.Status.DONE)[0]
    Transcript.objects.create(
        recording=done,
        text="We talked about the warehouse roof.",
        model_name="tiny.en",
        compute_type="int8",
        processing_seconds=1,
    )
    make_recordings(alice, 2, status=Recording.Status.QUEUED)
    api = api_client(alice_key)
    assert [r["id"] for r in api.get("/api/recordings", {"status": "done"}).json()["results"]] == [done.id]
    assert [r["id"] for r in api.get("/api/recordings", {"q": "warehouse"}).json()["results"]] == [done.id]
    assert api.get("/api/recordings", {"status": "nonsense"}).status_code == 422


def test_upload_through_the_api_queues_it_with_the_options(
    alice, alice_key, speech, django_capture_on_commit_callbacks
):
    path, _ = speech
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client(alice_key).post(
            "/api/recordings",
            {
                "file": SimpleUploadedFile("fox.wav", Path(path).read_bytes()),
                "title": "Fox",
                "word_timestamps": "true",
                "language": "en",
            },
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["title"] == "Fox"
    recording = Recording.objects.get(pk=body["id"], owner=alice)
    assert recording.options["word_timestamps"] is True and recording.options["language"] == "en"
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    "data, status, message",
    [
        ({}, 422, "file"),
        ({"model": "large-v9"}, 400, "Unknown model 'large-v9'"),
        ({"compute_type": "int4"}, 400, "Unknown compute type"),
        ({"file_content": b"just some notes\n" * 40}, 400, "audio or video file we can read"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message(alice, alice_key, speech, data, status, message):
    path, _ = speech
    data = dict(data)
    content = data.pop("file_content", Path(path).read_bytes())
    if status != 422:
        data["file"] = SimpleUploadedFile("clip.wav", content)
    response = api_client(alice_key).post("/api/recordings", data)
    assert response.status_code == status
    assert message in response.content.decode()
    assert not Recording.objects.exists()


def test_an_oversized_upload_is_a_413(alice, alice_key, settings):
    settings.MAX_UPLOAD_BYTES = 1024 * 1024
    response = api_client(alice_key).post(
        "/api/recordings", {"file": SimpleUploadedFile("big.wav", b"\0" * (2 * 1024 * 1024))}
    )
    assert response.status_code == 413 and "the limit is 1 MB" in response.json()["detail"]
    assert not Recording.objects.exists()


def test_a_recording_comes_with_its_transcript_and_an_etag(alice, alice_key):
    recording = make_recordings(alice, 1, status=Recording.Status.DONE)[0]
    transcript = Transcript.objects.create(
        recording=recording,
        text="Hello there.",
        language="en",
        model_name="tiny.en",
        compute_type="int8",
        processing_seconds=0.5,
    )
    transcript.segments.create(
        index=0, start=0.0, end=1.2, text="Hello there.", words=[[0.0, 0.5, " Hello", 0.9], [0.5, 1.2, " there.", 0.8]]
    )
    api = api_client(alice_key)
    response = api.get(f"/api/recordings/{recording.id}")
    body = response.json()
    assert body["transcript"]["text"] == "Hello there."
    assert body["transcript"]["segments"][0]["words"][1] == {
        "start": 0.5,
        "end": 1.2,
        "word": " there.",
        "probability": 0.8,
    }
    assert api.get(f"/api/recordings/{recording.id}", headers={"If-None-Match": response["ETag"]}).status_code == 304

    # A change (here: the transcript replaced) changes the ETag.
    Transcript.objects.filter(pk=transcript.pk).update(created_at=timezone.now() + timezone.timedelta(seconds=1))
    assert api.get(f"/api/recordings/{recording.id}", headers={"If-None-Match": response["ETag"]}).status_code == 200


def test_large_responses_are_compressed(alice, alice_key):
    make_recordings(alice, 30)
    response = api_client(alice_key).get("/api/recordings", {"limit": 30}, headers={"Accept-Encoding": "br, gzip"})
    assert response["Content-Encoding"] == "br"
    assert len(json.loads(brotli.decompress(response.content))["results"]) == 30
    small = api_client(alice_key).get(
        "/api/recordings", {"limit": 1, "status": "failed"}, headers={"Accept-Encoding": "br"}
    )
    assert not small.has_header("Content-Encoding")  # not worth it under 500 bytes


def test_the_openapi_schema_is_served_to_signed_in_users(alice, alice_key):
    assert Client().get("/api/openapi.json").status_code == 302  # to the login page
    client = Client()
    client.force_login(alice)
    schema = client.get("/api/openapi.json").json()
    assert "/api/recordings" in schema["paths"] and "/api/recordings/{recording_id}" in schema["paths"]
