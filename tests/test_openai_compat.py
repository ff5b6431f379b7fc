"""`/v1/audio/transcriptions` with the official `openai` client against the app on Daphne + the worker."""

from pathlib import Path

import openai
import pytest
import srt
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import ApiToken
from tests.factories import words
from transcription.models import Recording

ENDPOINT = "/v1/audio/transcriptions"


@pytest.fixture
def openai_client(daphne_server, alice):
    key = ApiToken.issue(alice, "openai")[1]
    return openai.OpenAI(base_url=f"{daphne_server}/v1", api_key=key, max_retries=0, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_the_openai_client_round_trip(openai_client, alice, speech):
    path, text = speech
    with path.open("rb") as audio:
        result = openai_client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
        )
    heard = words(result.text)
    assert {"fox", "dog"} <= heard and len(heard & words(text)) >= 0.7 * len(words(text))
    assert result.language == "english" and result.duration > 3
    assert result.segments and all(s.start < s.end for s in result.segments)
    assert result.words and all(w.start <= w.end for w in result.words)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert "fox" in {w.word.strip(".,").lower() for w in result.words}

    # Like any upload, it is in the history with its transcript (and word timings).
    recording = Recording.objects.get(owner=alice)
    assert recording.status == Recording.Status.DONE and recording.options["word_timestamps"] is True
    assert recording.transcript.segments.first().words


@pytest.mark.django_db(transaction=True)
def test_the_openai_client_gets_srt_and_text(openai_client, speech):
    path, _ = speech
    with path.open("rb") as audio:
        subtitles = openai_client.audio.transcriptions.create(model="tiny.en", file=audio, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert cues and "fox" in " ".join(c.content for c in cues).lower()
    with path.open("rb") as audio:
        plain = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert "fox" in plain.lower()


@pytest.mark.django_db(transaction=True)
def test_the_openai_client_sees_openai_shaped_errors(openai_client, speech):
    path, _ = speech
    with path.open("rb") as audio, pytest.raises(openai.BadRequestError) as error:
        openai_client.audio.transcriptions.create(model="large-v9", file=audio)
    assert error.value.body["param"] == "model" and "Unknown model 'large-v9'" in error.value.body["message"]

    bad_key = openai.OpenAI(base_url=openai_client.base_url, api_key="wa_wrong", max_retries=0)
    with path.open("rb") as audio, pytest.raises(openai.AuthenticationError) as error:
        bad_key.audio.transcriptions.create(model="whisper-1", file=audio)
    assert error.value.body["code"] == "invalid_api_key"


# The request-level checks need no worker: the sync test client drives the async view in-process.


def post(key: str, data: dict):
    return Client(headers={"Authorization": f"Bearer {key}"}).post(ENDPOINT, data)


@pytest.fixture
def key(alice):
    return ApiToken.issue(alice, "t")[1]


@pytest.mark.parametrize(
    "data, param, message",
    [
        ({"model": "whisper-1"}, "file", "You must provide a file"),
        ({"file": True}, "model", "You must provide a model"),
        ({"file": True, "model": "whisper-1", "response_format": "xml"}, "response_format", "Invalid response_format"),
        (
            {"file": True, "model": "whisper-1", "timestamp_granularities[]": "word"},
            "timestamp_granularities",
            "verbose_json",
        ),
        ({"file": True, "model": "whisper-1", "temperature": "hot"}, "temperature", "temperature"),
        ({"file": True, "model": "whisper-1", "language": "English!"}, "language", "ISO-639-1"),
        ({"file": b"not audio at all\n" * 50, "model": "whisper-1"}, "file", "audio or video file we can read"),
    ],
)
def test_bad_requests_get_a_400_in_openais_shape(key, speech, data, param, message):
    path, _ = speech
    data = dict(data)
    if "file" in data:
        content = Path(path).read_bytes() if data["file"] is True else data["file"]
        data["file"] = SimpleUploadedFile("clip.wav", content)
    response = post(key, data)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]
    assert not Recording.objects.exists()


def test_oversize_and_auth_errors(key, settings, db):
    settings.MAX_UPLOAD_BYTES = 1024 * 1024
    response = post(key, {"model": "whisper-1", "file": SimpleUploadedFile("big.wav", b"\0" * (2 * 1024 * 1024))})
    assert response.status_code == 413 and "the limit is 1 MB" in response.json()["error"]["message"]
    assert Client().post(ENDPOINT, {}).status_code == 401
    assert Client().get(ENDPOINT, headers={"Authorization": f"Bearer {key}"}).status_code == 405
