"""Exports: each format parsed back by an independent parser, downloads scoped to the owner, 304s."""

import json
from datetime import timedelta

import pytest
import srt
import webvtt
from django.core.files.base import ContentFile
from django.urls import reverse

from transcription import exports
from transcription.models import Recording, Segment, Transcript

SEGMENTS = [
    (0.0, 2.5, "Hello and welcome.", None),
    (2.5, 5.25, "Arrows --> like this\n\nand blank lines stay in one cue.", None),
    # Past an hour, to check the hours field.
    (
        3601.5,
        3604.125,
        "Still here after an hour.",
        [[3601.5, 3602.0, " Still", 0.9], [3602.0, 3604.125, " here", 0.8]],
    ),
]


@pytest.fixture
def transcribed(alice):
    recording = Recording(owner=alice, title="Team sync: Q3", status=Recording.Status.DONE, duration=3605.0)
    recording.audio.save("x.wav", ContentFile(b"x"), save=True)
    transcript = Transcript.objects.create(
        recording=recording,
        text=" ".join(s[2] for s in SEGMENTS),
        language="en",
        model_name="tiny.en",
        compute_type="int8",
        pipeline="sequential",
        processing_seconds=1.5,
    )
    Segment.objects.bulk_create(
        Segment(transcript=transcript, index=i, start=s, end=e, text=t, words=w, avg_logprob=-0.2, no_speech_prob=0.01)
        for i, (s, e, t, w) in enumerate(SEGMENTS)
    )
    return recording


def download(client, recording, fmt, **headers):
    return client.get(reverse("recording-export", args=[recording.pk, fmt]), headers=headers)


def test_srt_parses_back_with_valid_timings(client, alice, transcribed):
    client.force_login(alice)
    response = download(client, transcribed, "srt")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="team-sync-q3.srt"'
    cues = list(srt.parse(response.content.decode()))
    assert [c.index for c in cues] == [1, 2, 3]
    assert cues[1].content == "Arrows -> like this and blank lines stay in one cue."
    assert cues[2].start == timedelta(seconds=3601.5) and cues[2].end == timedelta(seconds=3604.125)
    assert all(c.start < c.end for c in cues)


def test_vtt_parses_back_with_valid_timings(client, alice, transcribed):
    client.force_login(alice)
    response = download(client, transcribed, "vtt")
    assert response["Content-Type"].startswith("text/vtt")
    captions = webvtt.from_string(response.content.decode()).captions
    assert [c.text for c in captions][0] == "Hello and welcome."
    assert len(captions) == 3
    assert captions[2].start == "01:00:01.500" and captions[2].end == "01:00:04.125"


def test_txt_has_one_line_per_segment(client, alice, transcribed):
    client.force_login(alice)
    lines = download(client, transcribed, "txt").content.decode().splitlines()
    assert lines[0] == "Hello and welcome." and lines[-1] == "Still here after an hour."


def test_json_has_segments_and_words(client, alice, transcribed):
    client.force_login(alice)
    data = json.loads(download(client, transcribed, "json").content)
    assert data["title"] == "Team sync: Q3" and data["language"] == "en"
    assert [s["id"] for s in data["segments"]] == [0, 1, 2]
    assert data["segments"][0]["words"] is None
    assert data["segments"][2]["words"] == [
        {"start": 3601.5, "end": 3602.0, "word": " Still", "probability": 0.9},
        {"start": 3602.0, "end": 3604.125, "word": " here", "probability": 0.8},
    ]
    for seg in data["segments"]:
        assert isinstance(seg["start"], float) and seg["start"] <= seg["end"] and isinstance(seg["text"], str)


def test_an_unchanged_transcript_is_a_304(client, alice, transcribed):
    client.force_login(alice)
    first = download(client, transcribed, "srt")
    assert first["ETag"] and first["Last-Modified"]
    again = download(client, transcribed, "srt", if_none_match=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    since = download(client, transcribed, "srt", if_modified_since=first["Last-Modified"])
    assert since.status_code == 304


def test_exports_are_only_for_the_owner(client, bob, transcribed):
    client.force_login(bob)
    assert download(client, transcribed, "txt").status_code == 404
    client.logout()
    assert download(client, transcribed, "txt").status_code == 302  # to the login page


def test_unknown_format_and_missing_transcript(client, alice, transcribed):
    client.force_login(alice)
    assert download(client, transcribed, "docx").status_code == 404
    Transcript.objects.filter(recording=transcribed).delete()
    response = download(client, transcribed, "srt")
    assert response.status_code == 409 and "no transcript yet" in response.json()["detail"]


def test_the_detail_page_links_every_format(client, alice, transcribed):
    client.force_login(alice)
    page = client.get(reverse("recording-detail", args=[transcribed.pk])).content.decode()
    for fmt in exports.FORMATS:
        assert reverse("recording-export", args=[transcribed.pk, fmt]) in page
