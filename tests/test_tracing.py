"""Traces: one upload is one trace, from the request through the worker's steps to the graph write,
in the real Zipkin; no user data in it; the JSON log lines of that work carry its trace id."""

import json
import secrets
import time

import pytest
import requests
from django.conf import settings

from accounts.models import ApiToken
from graph.models import GraphChange
from tests.services import spans_of
from transcription.models import Recording

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_upload_is_one_trace_from_the_request_through_the_worker_to_the_graph(
    zipkin, daphne_server, celery_worker_process, alice, speech
):
    path, text = speech
    alice.email = "alice.tracing@example.com"
    alice.save()
    key = ApiToken.issue(alice, "tracing")[1]
    # As nginx (or the browser) sends it: the trace id is the request's.
    trace_id = secrets.token_hex(16)
    title = "Quarterly board secrets"
    with path.open("rb") as audio:
        answer = requests.post(
            f"{daphne_server}/api/recordings",
            files={"file": ("stella-private-notes.wav", audio, "audio/wav")},
            data={"title": title},
            headers={"Authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            timeout=60,
        )
    assert answer.status_code == 202, answer.text
    recording_id = answer.json()["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (
        Recording.objects.get(pk=recording_id).status != Recording.Status.DONE
        or GraphChange.objects.filter(recording_id=recording_id).exists()
    ):
        time.sleep(0.5)
    assert Recording.objects.get(pk=recording_id).status == Recording.Status.DONE

    # Zipkin keeps span names in lower case.
    wanted = {
        "post api/recordings",
        "transcription.decode",
        "transcription.inference",
        "transcription.store",
        "run/actions.tasks.transcribe_recording",
        "neo4j write_recording",
    }
    spans = spans_of(zipkin, trace_id, wanted)
    names = {span["name"] for span in spans}
    assert wanted <= names, sorted(names)
    services_seen = {span["localEndpoint"]["serviceName"] for span in spans}
    assert {"web", "worker"} <= services_seen
    # Parent links hold the steps together: the worker's task hangs under the request's publish.
    by_id = {span["id"]: span for span in spans}
    task = next(span for span in spans if span["name"] == "run/actions.tasks.transcribe_recording")
    assert by_id[task["parentId"]]["localEndpoint"]["serviceName"] == "web"
    inference = next(span for span in spans if span["name"] == "transcription.inference")
    assert inference["tags"]["whisper.model"] == settings.WHISPER_MODEL

    # A search for a word said: its trace has the route and the path, not the words.
    search_trace = secrets.token_hex(16)
    searched = requests.get(
        f"{daphne_server}/api/search",
        params={"q": "Stella plates"},
        headers={"Authorization": f"Bearer {key}", "traceparent": f"00-{search_trace}-{secrets.token_hex(8)}-01"},
        timeout=30,
    )
    assert searched.status_code == 200, searched.text
    search_spans = spans_of(zipkin, search_trace, {"get api/search", "neo4j search_segments"})
    assert {"get api/search", "neo4j search_segments"} <= {span["name"] for span in search_spans}

    # Nothing of the user's in any span: no email, title, file name, or words said.
    dumped = json.dumps(spans + search_spans).lower()
    said = {word.strip(".").lower() for word in text.split() if len(word) > 4}
    for secret in {alice.email, title.lower(), "stella-private-notes", *said}:
        assert secret not in dumped, secret

    # The worker's JSON log lines of that job carry the trace id.
    _, log = celery_worker_process
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "the test worker logs JSON (LOG_FORMAT=json)"
    traced = [line for line in lines if line.get("trace_id") == trace_id]
    assert traced and all(len(line["span_id"]) == 16 for line in traced)
