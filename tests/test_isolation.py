"""Each user sees only their own recordings."""

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from transcription.models import Recording


@pytest.fixture
def alices_recording(alice):
    recording = Recording(owner=alice, title="Alice's secret plans", size_bytes=3)
    recording.audio.save("plans.wav", ContentFile(b"abc"), save=True)
    return recording


def test_another_users_recording_is_not_found(client, bob, alices_recording):
    client.force_login(bob)
    for name in ("recording-detail", "recording-transcript"):
        assert client.get(reverse(name, args=[alices_recording.pk])).status_code == 404


def test_the_list_shows_only_my_recordings(client, alice, bob, alices_recording):
    client.force_login(bob)
    assert "secret plans" not in client.get(reverse("recording-list")).content.decode()
    client.force_login(alice)
    assert "secret plans" in client.get(reverse("recording-list")).content.decode()


def test_the_list_is_paginated_newest_first(client, alice, settings):
    settings.RECORDINGS_PAGE_SIZE = 2
    for i in range(5):
        Recording.objects.create(owner=alice, title=f"take {i}", audio=f"x{i}.wav")
    client.force_login(alice)
    first = client.get(reverse("recording-list")).context["page"]
    assert [r.title for r in first.object_list] == ["take 4", "take 3"]
    last = client.get(reverse("recording-list"), {"page": 3}).context["page"]
    assert [r.title for r in last.object_list] == ["take 0"]
    assert not last.has_next()


# --- API tokens (profile page and /api/tokens) ----------------------------------------------------


def test_tokens_are_listed_and_revoked_by_their_owner_only(client, alice, bob):
    from accounts.models import ApiToken

    alices, _ = ApiToken.issue(alice, "alice's script")
    _, bobs_key = ApiToken.issue(bob, "bob's script")
    listed = client.get("/api/tokens", HTTP_AUTHORIZATION=f"Bearer {bobs_key}").json()
    assert [token["name"] for token in listed] == ["bob's script"]
    assert client.delete(f"/api/tokens/{alices.pk}", HTTP_AUTHORIZATION=f"Bearer {bobs_key}").status_code == 404
    client.force_login(bob)
    assert client.post(reverse("revoke-token", args=[alices.pk])).status_code == 404
    assert "alice's script" not in client.get(reverse("profile")).content.decode()
    assert ApiToken.objects.filter(pk=alices.pk).exists()


def test_deleting_my_account_leaves_other_users_alone(
    client, alice, bob, alices_recording, django_capture_on_commit_callbacks
):
    from tests.factories import PASSWORD

    bobs = Recording(owner=bob, title="Bob's", size_bytes=3)
    bobs.audio.save("bob.wav", ContentFile(b"abc"), save=True)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("delete-account"), {"password": PASSWORD}).status_code == 302
    assert not Recording.objects.filter(title="Alice's secret plans").exists()
    bobs.refresh_from_db()
    assert bobs.audio.storage.exists(bobs.audio.name)
    assert client.login(username="bob", password=PASSWORD)
