"""Workflow pages and the run stream: what Alice can do, what Bob cannot, tokens on the socket."""

import asyncio
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from actions import recordings, workflow_runs
from assistant_site.asgi import application
from tests.factories import make_transcribed
from tests.test_progress_socket import session_cookie
from transcription.models import Recording
from workflows import builtin
from workflows.models import Workflow, WorkflowRun

UNSUPPORTED = b"""version: 4
data:
  metadata: {id: p1, title: Odd project, mainGraphId: g1}
  graphs:
    g1:
      metadata: {id: g1, name: Main}
      nodes:
        '[n1]:text "Greeting"':
          data: {text: hello}
        '[n2]:httpCall "Call the internet"':
          data: {url: "http://example.com"}
"""


def test_the_list_shows_built_ins_and_imports_refuse_unknown_nodes(client, alice):
    client.force_login(alice)
    page = client.get(reverse("workflow-list")).content.decode()
    assert "Summary, keywords and entities" in page and "Ask about my recordings" in page
    response = client.post(
        reverse("workflow-import"), {"project": SimpleUploadedFile("odd.rivet-project", UNSUPPORTED)}
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "httpCall" in text and "Call the internet" in text
    assert not Workflow.objects.filter(owner=alice).exists()
    response = client.post(reverse("workflow-import"), {"project": SimpleUploadedFile("x.rivet-project", b"{: nope")})
    assert response.status_code == 400


def test_an_imported_workflow_and_its_runs_are_only_mine(client, alice, bob):
    example = Path(__file__).resolve().parent.parent / "workflows/examples/meeting-mood.rivet-project"
    client.force_login(alice)
    response = client.post(
        reverse("workflow-import"), {"project": SimpleUploadedFile("m.rivet-project", example.read_bytes())}
    )
    assert response.status_code == 302
    workflow = Workflow.objects.get(owner=alice)
    detail = client.get(reverse("workflow-detail", args=[workflow.pk]))
    assert detail.context["inputs"] == ["transcript"]  # the subgraph's own input is fed by its caller
    client.post(reverse("workflow-detail", args=[workflow.pk]), {"input-transcript": ""})
    assert WorkflowRun.objects.get(owner=alice).inputs == {}  # empty: the project's default applies
    run = WorkflowRun.objects.create(workflow=workflow, owner=alice)
    client = client.__class__()  # a browser of Bob's own
    client.force_login(bob)
    assert client.get(reverse("workflow-detail", args=[workflow.pk])).status_code == 404
    assert client.get(reverse("workflow-run", args=[run.pk])).status_code == 404
    assert workflow.name not in client.get(reverse("workflow-list")).content.decode()
    summary = Workflow.objects.get(key=builtin.SUMMARY, owner__isnull=True)
    recording = make_transcribed(alice, "alices", ["Hello there."])
    response = client.post(reverse("workflow-detail", args=[summary.pk]), {"recording": recording.pk})
    assert response.status_code == 400 and not WorkflowRun.objects.filter(owner=bob).exists()


def test_asking_starts_the_ask_workflow_scoped_to_a_recording(client, alice, django_capture_on_commit_callbacks):
    recording = make_transcribed(alice, "planning", ["Stella will call the printer."])
    client.force_login(alice)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("workflow-ask"), {"question": "Who calls the printer?", "recording": recording.pk}
        )
    run = WorkflowRun.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == reverse("workflow-run", args=[run.pk])
    assert run.workflow.key == builtin.ASK and run.recording == recording
    assert run.inputs["question"] == "Who calls the printer?"
    assert run.overrides == {"search": {"scope": "recording"}} and "_overrides" not in run.inputs
    assert len(queued) == 1
    page = client.get(reverse("workflow-run", args=[run.pk])).content.decode()
    assert "Who calls the printer?" in page and f"/ws/workflows/runs/{run.pk}/" in page


@pytest.mark.django_db(transaction=True)
def test_a_transcription_runs_the_builtin_workflow_and_the_page_shows_its_summary(
    client, alice, speech, settings, llm_server, django_capture_on_commit_callbacks
):
    settings.WORKFLOWS_AUTO_RUN = True
    path, _ = speech
    recording = Recording(owner=alice, title="Fox report", size_bytes=1)
    recording.audio.save("fox.wav", ContentFile(Path(path).read_bytes()), save=True)
    with django_capture_on_commit_callbacks(execute=False):
        assert recordings.transcribe(recording.id)
    run = WorkflowRun.objects.get(recording=recording)
    assert run.workflow.key == builtin.SUMMARY and run.status == "queued"
    run = asyncio.run(workflow_runs.execute(run.id))
    assert run.status == "done", run.error
    client.force_login(alice)
    page = client.get(reverse("recording-detail", args=[recording.pk])).content.decode()
    assert '<div id="summary"><h2>Summary</h2>' in page and run.outputs["summary"][:20] in page


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_run_page_receives_tokens_as_the_answer_is_written(celery_worker_process, llm_server, alice, bob):
    recording = await database_sync_to_async(make_transcribed)(
        alice, "planning", ["Stella will call the printing company in Chicago tomorrow."]
    )
    from graph import writes

    await database_sync_to_async(writes.write_recording)(recording.id)
    workflow = await Workflow.objects.aget(key=builtin.ASK, owner__isnull=True)
    run = await database_sync_to_async(workflow_runs.start_run)(
        workflow, alice, None, {"question": "Who will call the printing company?"}
    )

    cookie = await database_sync_to_async(session_cookie)(bob)
    intruder = WebsocketCommunicator(
        application,
        f"/ws/workflows/runs/{run.pk}/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, code = await intruder.connect()
    assert not connected and code == 4404

    cookie = await database_sync_to_async(session_cookie)(alice)
    ws = WebsocketCommunicator(
        application,
        f"/ws/workflows/runs/{run.pk}/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    assert (await ws.connect())[0]
    messages = []
    while not messages or messages[-1].get("type") != "finished":
        messages.append(await ws.receive_json_from(timeout=120))
    await ws.disconnect()
    assert messages[0]["type"] == "snapshot"
    tokens = [m for m in messages if m["type"] == "token"]
    assert len(tokens) > 3 and {m["node"] for m in tokens} == {"answer"}
    finished = messages[-1]
    assert finished["status"] == "done" and finished["outputs"]["answer"]
    assert "".join(m["text"] for m in tokens).strip() == finished["outputs"]["answer"]
    node_events = [m["node"] for m in messages if m["type"] == "node"]
    assert node_events.index("search") < node_events.index("answer")
