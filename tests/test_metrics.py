"""Prometheus metrics: /metrics is for this machine or staff; after a real upload through the worker,
a live session and a workflow run, the named series are there and moved, on the web side and on the
worker's port; no label carries a user, a title or a transcript's words."""

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from actions import workflow_runs
from tests.test_live import FRAME_SECONDS, connected, pcm16_frames
from transcription.models import Recording
from workflows.builtin import SUMMARY
from workflows.models import WorkflowRun

TITLE = "zanzibar-quarterly"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(found: dict, name: str, **labels) -> float:
    """The sum of a sample over the series whose labels include `labels`."""
    return sum(v for (n, ls), v in found.items() if n == name and labels.items() <= dict(ls).items())


def web_scrape() -> dict:
    response = Client().get("/metrics")  # from 127.0.0.1
    assert response.status_code == 200
    return samples(response.content.decode())


def worker_scrape(worker) -> dict:
    with urllib.request.urlopen(worker.metrics_url, timeout=10) as response:
        return samples(response.read().decode())


@pytest.mark.django_db
def test_metrics_are_for_this_machine_or_staff(alice, django_user_model):
    assert Client(REMOTE_ADDR="203.0.113.7").get("/metrics").status_code == 403
    outsider = Client(REMOTE_ADDR="203.0.113.7")
    outsider.force_login(alice)
    assert outsider.get("/metrics").status_code == 403
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    outsider.force_login(staff)
    assert outsider.get("/metrics").status_code == 200
    assert Client().get("/metrics").status_code == 200


@pytest.mark.django_db
def test_the_route_label_is_the_url_pattern_not_the_path():
    Client().get("/recordings/987654/")  # a redirect to sign in: the pattern matched all the same
    Client().get("/no/such/page/31337")
    found = web_scrape()
    assert total(found, "assistant_http_request_duration_seconds_count", route="recordings/<int:pk>/") >= 1
    assert total(found, "assistant_http_request_duration_seconds_count", route="unmatched", status="404") >= 1
    assert not any("987654" in v or "31337" in v for _, labels in found for _, v in labels)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_the_named_series_move_after_an_upload_a_live_session_and_a_workflow_run(
    celery_worker_process, llm_server, alice, speech
):
    worker, _ = celery_worker_process
    path, text = speech
    web_before, worker_before = await sync_to_async(web_scrape)(), await sync_to_async(worker_scrape)(worker)

    # An upload, transcribed by the worker.
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    upload = SimpleUploadedFile(f"{TITLE}.wav", Path(path).read_bytes())
    response = await database_sync_to_async(client.post)("/recordings/upload", {"audio": upload})
    assert response.status_code == 302
    recording = await Recording.objects.aget(owner=alice, title=TITLE)

    # A live session meanwhile (in this process, as a web process serves it).
    ws = await connected(alice)
    await ws.send_json_to({"type": "start", "language": "en"})
    assert (await ws.receive_json_from(timeout=10))["type"] == "ready"
    for frame in pcm16_frames(path):
        await ws.send_to(bytes_data=frame)
        await asyncio.sleep(FRAME_SECONDS / 2)
    await ws.send_json_to({"type": "stop"})
    while (await ws.receive_json_from(timeout=120))["type"] != "saved":
        pass
    await ws.disconnect()

    deadline = time.monotonic() + 180
    while (await Recording.objects.aget(pk=recording.pk)).status not in ("done", "failed"):
        assert time.monotonic() < deadline, "the upload was not transcribed"
        await asyncio.sleep(0.5)
    assert (await Recording.objects.aget(pk=recording.pk)).status == "done"

    # The summary workflow on it, run by the worker against the real LLM.
    run = await sync_to_async(workflow_runs.start_builtin)(SUMMARY, recording)
    assert run is not None
    while (run := await WorkflowRun.objects.aget(pk=run.pk)).status not in ("done", "failed"):
        assert time.monotonic() < deadline + 180, "the workflow run did not finish"
        await asyncio.sleep(0.5)
    assert run.status == "done", run.error

    web = await sync_to_async(web_scrape)()
    moved_web = [
        ("assistant_http_request_duration_seconds_count", {"route": "recordings/upload", "status": "302"}),
        ("assistant_upload_size_bytes_count", {"endpoint": "form"}),
        ("assistant_websocket_connections_total", {"kind": "live"}),
        ("assistant_live_audio_seconds_total", {}),
        ("assistant_live_inference_seconds_count", {}),
        ("assistant_live_lag_seconds_count", {}),
        ("assistant_live_first_seen_latency_seconds_count", {}),
        ("assistant_live_final_latency_seconds_count", {}),
    ]
    for name, labels in moved_web:
        assert total(web, name, **labels) > total(web_before, name, **labels), (name, labels)
    assert ("assistant_websocket_connections", (("kind", "live"),)) in web
    assert ("assistant_live_streams", ()) in web

    deadline = time.monotonic() + 60
    moved_worker = [
        ("assistant_job_wait_seconds_count", {"queue": "celery"}),
        ("assistant_job_wait_seconds_count", {"queue": "workflows"}),
        ("assistant_transcription_step_seconds_count", {"step": "decode"}),
        ("assistant_transcription_step_seconds_count", {"step": "inference"}),
        ("assistant_transcription_step_seconds_count", {"step": "store"}),
        ("assistant_transcription_speed_ratio_count", {}),
        ("assistant_transcription_audio_seconds_total", {}),
        ("assistant_transcriptions_total", {"outcome": "done"}),
        ("assistant_workflow_runs_total", {"outcome": "done"}),
        ("assistant_workflow_run_seconds_count", {}),
        ("assistant_llm_requests_total", {"outcome": "ok"}),
        ("assistant_llm_time_to_first_token_seconds_count", {}),
        ("assistant_llm_tokens_total", {"kind": "completion"}),
        ("assistant_ai_cache_requests_total", {"result": "miss"}),
        ("assistant_neo4j_query_seconds_count", {"query": "write_recording"}),
    ]
    while True:  # the graph write of the live recording may still be on its way
        found = await sync_to_async(worker_scrape)(worker)
        still = [(n, ls) for n, ls in moved_worker if total(found, n, **ls) <= total(worker_before, n, **ls)]
        if not still or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert not still, still
    assert total(found, "assistant_model_load_seconds_count") >= 1
    for name in (
        "assistant_graph_outbox_backlog",
        "assistant_graph_outbox_oldest_seconds",
        "assistant_graph_outbox_failed",
    ):
        assert (name, ()) in found, name
    assert ("assistant_job_queue_length", (("queue", "celery"),)) in found

    # Nothing about the user, the recording or what was said in any label value.
    private = {alice.username.lower(), alice.email.lower(), TITLE} | {w for w in text.lower().split() if len(w) > 4}
    values = {v.lower() for scrape in (web, found) for _, labels in scrape for _, v in labels}
    assert not {v for v in values for p in private if p and p.strip(".") in v}
