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
