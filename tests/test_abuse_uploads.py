"""Hostile uploads, tried for real: playlists naming a local server (which must see no request), other
demuxers that read URLs or files, decode bombs (hours of many channels in a few MB), files too long
or with too many channels, a page named like audio, an MP3 named .html, and per-user quotas. Each gets
a clear 4xx on the upload page, the REST API and the OpenAI endpoint, and loses nothing stored."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken
from tests.factories import convert, synthesized, without_stated_length
from transcription import engine
from transcription.models import Recording

ROOT = Path(__file__).resolve().parent.parent
REMOTE_ANSWER = b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nremote-secret"


class Listener:
    """A local TCP server, as an attacker's target would be: it records every connection and
    answers each with a 404 whose text must never reach the uploader."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(1024))
                    conn.sendall(REMOTE_ANSWER)
                except OSError:
                    self.connections.append(b"")


@pytest.fixture
def listener():
    target = Listener()
    yield target
    target.server.close()


def hostile_files(port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}"
    return {
        # The issue's attack: FFmpeg's HLS demuxer fetched the variant playlist.
        "hls-variant.m3u8": f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{url}/v.m3u8\n".encode(),
        "hls-media.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{url}/a.ts\n#EXT-X-ENDLIST\n".encode(),
        "playlist-named.wav": f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{url}/w.m3u8\n".encode(),
        "concat.ffconcat": f"ffconcat version 1.0\nfile '{url}/a.wav'\nfile '/etc/passwd'\n".encode(),
        "session.sdp": f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0\n".encode(),
        "manifest.mpd": (
            '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            'mediaPresentationDuration="PT10S" minBufferTime="PT1S"><Period><AdaptationSet mimeType="audio/mp4">'
            f'<Representation id="a" bandwidth="1"><BaseURL>{url}/a.m4a</BaseURL></Representation>'
            "</AdaptationSet></Period></MPD>"
        ).encode(),
    }


def assert_neutral(message: str) -> None:
    """The error says what is wrong with the file, and nothing FFmpeg or a remote server said."""
    assert "not an audio or video file we can read" in message, message
    for leak in ("404", "Not Found", "remote-secret", "127.0.0.1", "Server returned", "Invalid data"):
        assert leak not in message, message


@pytest.fixture
def alice_key(alice):
    return ApiToken.issue(alice, "abuse")[1]


def upload_page(client, name: str, content: bytes):
    return client.post(reverse("recording-upload"), {"audio": SimpleUploadedFile(name, content)})


def upload_api(key: str, name: str, content: bytes):
    client = Client(headers={"Authorization": f"Bearer {key}"})
    return client.post("/api/recordings", {"file": SimpleUploadedFile(name, content)})


def upload_openai(key: str, name: str, content: bytes):
    client = Client(headers={"Authorization": f"Bearer {key}"})
    return client.post("/v1/audio/transcriptions", {"file": SimpleUploadedFile(name, content), "model": "whisper-1"})


def page_error(response) -> str:
    return response.context["upload_error"] or response.context["form"].error_text()


# --- No outbound fetch ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(hostile_files(1)))
@pytest.mark.parametrize("as_path", [False, True], ids=["in-memory", "on-disk"])
def test_the_probe_opens_no_url_and_no_other_file(listener, tmp_path, name, as_path):
    content = hostile_files(listener.port)[name]
    if as_path:  # a large upload is probed from its temporary file
        (tmp_path / name).write_bytes(content)
        source = tmp_path / name
    else:
        source = SimpleUploadedFile(name, content)
    with pytest.raises(engine.AudioDecodeError) as refused:
        engine.probe_audio(source)
    assert_neutral(str(refused.value))
    with pytest.raises(engine.AudioDecodeError) as refused:
        engine.decode_audio(source if as_path else SimpleUploadedFile(name, content))
    assert "404" not in str(refused.value) and "remote-secret" not in str(refused.value)
    assert listener.connections == []


def test_a_playlist_upload_is_refused_everywhere_without_a_request(listener, client, alice, alice_key):
    client.force_login(alice)
    playlist = hostile_files(listener.port)["hls-variant.m3u8"]

    page = upload_page(client, "playlist.m3u8", playlist)
    assert page.status_code == 400
    assert_neutral(page_error(page))

    api = upload_api(alice_key, "playlist.m3u8", playlist)
    assert api.status_code == 400
    assert_neutral(api.json()["detail"])

    openai = upload_openai(alice_key, "playlist.m3u8", playlist)
    assert openai.status_code == 400
    assert openai.json()["error"]["param"] == "file"
    assert_neutral(openai.json()["error"]["message"])

    assert listener.connections == []
    assert not Recording.objects.exists()


def test_a_page_named_like_audio_is_refused(client, alice):
    client.force_login(alice)
    html = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n" * 20
    for name in ("song.mp3", "meeting.wav", "voice.m4a"):
        response = upload_page(client, name, html)
        assert response.status_code == 400
        assert_neutral(page_error(response))
    assert not Recording.objects.exists()


# --- Duration and channel limits, decode bombs -----------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """Half an hour of 8-channel silence in under 1 MB of FLAC: 920 MB as float32 at 16 kHz."""
    return synthesized(tmp_path_factory.mktemp("bomb") / "bomb.flac", "silence", 1800, layout="7.1")


def test_a_decode_bomb_is_refused_at_upload_from_its_header(client, alice, alice_key, bomb, settings):
    settings.UPLOAD_MAX_SECONDS = 300
    assert bomb.stat().st_size < 2 * 1024 * 1024
    client.force_login(alice)
    page = upload_page(client, "bomb.flac", bomb.read_bytes())
    assert page.status_code == 413
    assert "longer than the limit of 5 min" in page_error(page)
    api = upload_api(alice_key, "bomb.flac", bomb.read_bytes())
    assert api.status_code == 413 and "longer than the limit of 5 min" in api.json()["detail"]
    openai = upload_openai(alice_key, "bomb.flac", bomb.read_bytes())
    assert openai.status_code == 413 and "longer than the limit" in openai.json()["error"]["message"]
    assert not Recording.objects.exists()


def test_a_bomb_without_a_stated_length_is_measured_up_to_the_limit(bomb, tmp_path, settings):
    settings.UPLOAD_MAX_SECONDS = 300
    unstated = tmp_path / "unstated.flac"
    unstated.write_bytes(bomb.read_bytes())
    without_stated_length(unstated)
    with pytest.raises(engine.AudioLimitError, match="longer than the limit of 5 min") as refused:
        engine.probe_audio(unstated)
    assert refused.value.code == "too_long"


DECODE_IN_A_PROCESS = """
import json, resource, sys
import django
django.setup()
from transcription import engine
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    engine.decode_audio(sys.argv[1], max_seconds=float(sys.argv[2]))
    outcome = "decoded"
except engine.AudioLimitError as exc:
    outcome = exc.code
rise_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"outcome": outcome, "rise_mb": rise_mb}))
"""


def test_decoding_stops_at_the_limit_and_holds_only_mono(bomb, tmp_path):
    """A header that says nothing (or lies) cannot make the worker hold more than the limit: 8 channels
    of 30 min were 920 MB of float32 (and a crash, PyAV's 8-plane copy) before; now decoding stops at
    10 min of mono, 38 MB."""
    unstated = tmp_path / "unstated.flac"
    unstated.write_bytes(bomb.read_bytes())
    without_stated_length(unstated)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings", "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", DECODE_IN_A_PROCESS, str(unstated), "600"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["outcome"] == "too_long"
    assert measured["rise_mb"] < 200, measured


def test_channels_are_averaged_to_mono_inside_ffmpeg(tmp_path):
    levels = [0.1 * (i + 1) for i in range(8)]
    eight = synthesized(tmp_path / "eight.flac", "|".join(f"{v:.1f}" for v in levels), 2, layout="7.1")
    audio = engine.decode_audio(eight)
    assert len(audio) == 2 * engine.SAMPLE_RATE
    assert audio[1000:-1000] == pytest.approx(sum(levels) / 8, abs=1e-3)  # the mean, not a -3 dB sum
    opposite = synthesized(tmp_path / "opposite.flac", "0.5*sin(2*PI*440*t)|-0.5*sin(2*PI*440*t)", 1, layout="stereo")
    assert abs(engine.decode_audio(opposite)).max() < 1e-3


def test_too_many_channels_are_refused_at_upload(client, alice, tmp_path, settings):
    settings.UPLOAD_MAX_CHANNELS = 2
    eight = synthesized(tmp_path / "eight.flac", "silence", 5, layout="7.1")
    client.force_login(alice)
    response = upload_page(client, "surround.flac", eight.read_bytes())
    assert response.status_code == 400
    assert "8 audio channels; the limit is 2" in page_error(response)
    assert not Recording.objects.exists()


def test_a_file_longer_than_the_limit_is_refused_before_queueing(client, alice, tmp_path, settings):
    settings.UPLOAD_MAX_SECONDS = 60
    long_file = synthesized(tmp_path / "long.flac", "silence", 61)
    client.force_login(alice)
    response = upload_page(client, "long.flac", long_file.read_bytes())
    assert response.status_code == 413 and "longer than the limit of 1 min" in page_error(response)
    assert not Recording.objects.exists()
    settings.UPLOAD_MAX_SECONDS = 120
    assert upload_page(client, "long.flac", long_file.read_bytes()).status_code == 302
    assert Recording.objects.get().duration == pytest.approx(61, abs=0.5)


# --- What is stored and how it is served ------------------------------------------------------------


def test_an_mp3_named_html_is_stored_and_served_as_mp3(client, alice, speech, tmp_path, settings):
    path, _ = speech
    mp3 = convert(path, tmp_path / "speech.mp3")
    client.force_login(alice)
    assert upload_page(client, "x.html", mp3.read_bytes()).status_code == 302
    recording = Recording.objects.get()
    assert recording.title == "x"
    assert Path(recording.audio.name).name == f"{recording.uuid}.mp3"  # ours, not the user's name
    assert recording.audio_mime == "audio/mpeg"

    url = reverse("recording-audio", args=[recording.pk])
    for headers in ({}, {"Range": "bytes=0-99"}):
        response = client.get(url, headers=headers)
        assert response["Content-Type"] == "audio/mpeg"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"] == 'inline; filename="x.mp3"'
    settings.MEDIA_X_ACCEL = True
    accel = client.get(url, headers={"X-Sendfile-Type": "X-Accel-Redirect"})
    assert accel["X-Accel-Redirect"].endswith(f"{recording.uuid}.mp3")
    assert accel["Content-Type"] == "audio/mpeg" and accel["X-Content-Type-Options"] == "nosniff"


def test_a_row_stored_before_probing_is_never_served_as_a_page(client, alice):
    legacy = Recording(owner=alice, title="<b>old</b>", size_bytes=5)
    legacy.audio.save("old.html", ContentFile(b"<b>x"), save=True)
    client.force_login(alice)
    response = client.get(reverse("recording-audio", args=[legacy.pk]))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'inline; filename="boldb.bin"'


# --- Quotas ---------------------------------------------------------------------------------------


def stored_files(owner) -> set[str]:
    from django.conf import settings

    folder = Path(settings.MEDIA_ROOT) / "recordings" / str(owner.pk)
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_the_queued_jobs_quota_is_a_429_everywhere(client, alice, bob, alice_key, speech, settings):
    path, _ = speech
    audio = Path(path).read_bytes()
    settings.USER_MAX_QUEUED_JOBS = 1
    client.force_login(alice)
    assert upload_page(client, "first.wav", audio).status_code == 302  # no worker here: it stays queued
    first = Recording.objects.get()
    files = stored_files(alice)

    page = upload_page(client, "second.wav", audio)
    assert page.status_code == 429 and "recordings waiting or being transcribed" in page_error(page)
    api = upload_api(alice_key, "second.wav", audio)
    assert api.status_code == 429 and "recordings waiting" in api.json()["detail"]
    openai = upload_openai(alice_key, "second.wav", audio)
    assert openai.status_code == 429 and openai.json()["error"]["code"] == "too_many_jobs"

    # Nothing stored was lost, nothing new was kept; bob's uploads go on.
    assert list(Recording.objects.all()) == [first] and stored_files(alice) == files
    assert Path(first.audio.path).read_bytes() == audio
    bob_client = Client()
    bob_client.force_login(bob)
    assert upload_page(bob_client, "bob.wav", audio).status_code == 302


def test_the_storage_quota_is_a_413_and_removes_the_refused_file(client, alice, alice_key, speech, settings):
    path, _ = speech
    audio = Path(path).read_bytes()
    settings.USER_STORAGE_QUOTA_BYTES = len(audio) + 1000
    client.force_login(alice)
    assert upload_page(client, "first.wav", audio).status_code == 302
    first = Recording.objects.get()
    files = stored_files(alice)

    # Under the quota before the body was read, over it with this file: refused in the transaction,
    # after its file was written, which is then removed again.
    page = upload_page(client, "second.wav", audio)
    assert page.status_code == 413 and "the limit is 0.3 MB" in page_error(page)
    assert "Delete some recordings to make room" in page_error(page)
    api = upload_api(alice_key, "second.wav", audio)
    assert api.status_code == 413 and "make room" in api.json()["detail"]
    openai = upload_openai(alice_key, "second.wav", audio)
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "storage_quota"

    assert list(Recording.objects.all()) == [first] and stored_files(alice) == files
    assert Path(first.audio.path).read_bytes() == audio
