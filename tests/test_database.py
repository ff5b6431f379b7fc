"""The database under the app's real load: processes writing at once, connections held while waiting,
and the lookups the app relies on (on PostgreSQL, the default; SQLite through DATABASE_URL).

The concurrent writers are separate processes (WRITER), as the web processes and workers are, on the
test database; each writes through the app's own functions.
"""

import io
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import wave
from pathlib import Path

import openai
import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from accounts.models import ApiToken
from tests import services
from tests.factories import make_user
from transcription import engine
from transcription.models import Recording
from workflows.models import Workflow, WorkflowRun

ROOT = Path(__file__).resolve().parent.parent
# A Redis database no worker of the suite listens on: the follow-up tasks the writers queue (graph
# writes) wait there instead of racing the tests that come after.
QUIET_REDIS_DB = 5
# Writer processes import this module once Django is set up (its models are imported at the top).
WRITER = "import django, sys; django.setup(); from tests.test_database import main; main(sys.argv[1])"


def quiet_redis_url() -> str:
    return f"{settings.REDIS_URL.rsplit('/', 1)[0]}/{QUIET_REDIS_DB}"


def fake_result(segments: int, tag: str) -> engine.TranscriptionResult:
    return engine.TranscriptionResult(
        model_name="tiny.en",
        compute_type="int8",
        pipeline="sequential",
        language="en",
        language_probability=1.0,
        duration=segments * 2.0,
        processing_seconds=0.1,
        segments=[
            engine.SegmentResult(index=i, start=i * 2.0, end=i * 2.0 + 1.5, text=f"{tag} said thing number {i}.")
            for i in range(segments)
        ],
    )


class StoppedLiveSession:
    """What `save_live_session` reads of a stopped live session: its audio and its words."""

    def __init__(self, user_id: int, tag: str):
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        self.options = engine.Options()
        self.tag = tag

    def wav(self) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            wav.writeframes(b"\0\0" * 1600)
        return out.getvalue()

    received_seconds = 0.1

    def wav_file(self) -> io.BytesIO:
        return io.BytesIO(self.wav())

    def wav_size(self) -> int:
        return len(self.wav())

    def result(self) -> engine.TranscriptionResult:
        return fake_result(5, self.tag)


# --- The writer process -----------------------------------------------------------------------------


def write(index: int, owner_id: int, queued: list[int], hot: int, rounds: int, gate: Path) -> dict:
    """One process's share: uploads accepted, jobs raced for (claim, progress, store the transcript),
    live sessions saved, knowledge set on the one recording everybody writes to. Every error is kept."""
    from actions.recordings import save_live_session, set_knowledge, store_transcript
    from transcription import jobs

    done: dict = {"claimed": [], "uploads": [], "live": [], "errors": []}

    def attempt(what: str, step) -> None:
        try:
            step()
        except Exception as exc:  # all of them: the test shows what failed, and where
            done["errors"].append(f"{what}: {type(exc).__name__}: {exc}")

    def race_for(recording_id: int) -> None:
        recording = jobs.claim(recording_id)
        if recording is None:
            return  # another process has it: that is the point
        for fraction in (0.25, 0.5, 0.75):  # as ProgressReporter stores it
            Recording.objects.filter(pk=recording.pk).update(progress=fraction)
        if store_transcript(recording, fake_result(30, f"job {recording_id}")):
            done["claimed"].append(recording_id)

    def upload(n: int) -> None:
        with transaction.atomic():  # as accept_upload: the row, its file name, the job queued on commit
            recording = Recording.objects.create(
                owner_id=owner_id, title=f"upload {index}-{n}", audio=f"recordings/x/{index}-{n}.wav", size_bytes=1
            )
        done["uploads"].append(recording.pk)

    def save_live(n: int) -> None:
        done["live"].append(save_live_session(StoppedLiveSession(owner_id, f"live {index}-{n}")).pk)

    order = random.Random(index).sample(queued, len(queued))
    (gate.parent / f"ready-{index}").touch()
    while not gate.exists():
        time.sleep(0.005)
    started = time.monotonic()
    for n in range(rounds):
        attempt("upload", lambda n=n: upload(n))
        for recording_id in order[n::rounds]:
            attempt(f"job {recording_id}", lambda r=recording_id: race_for(r))
        attempt("live save", lambda n=n: save_live(n))
        attempt("knowledge", lambda n=n: set_knowledge(owner_id, hot, [{"name": f"Writer {index}-{n}"}]))
    done["seconds"] = round(time.monotonic() - started, 2)
    return done


# --- Tests --------------------------------------------------------------------------------------------


def start_writers(count: int, args: dict, gate: Path) -> list[subprocess.Popen]:
    env = services.test_process_env()
    env["REDIS_URL"] = quiet_redis_url()
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps({**args, "index": i, "gate": str(gate)})],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


@pytest.mark.services  # Redis: the writes queue their follow-ups (graph writes) on commit, as in production
def test_processes_writing_at_once_never_fail_on_locking(transactional_db, tmp_path):
    writers, rounds, jobs = 4, 6, 48
    alice = make_user("alice")
    queued = [
        Recording.objects.create(owner=alice, title=f"queued {i}", audio=f"recordings/q/{i}.wav").pk
        for i in range(jobs)
    ]
    hot = Recording.objects.create(owner=alice, title="everybody's", audio="recordings/hot.wav").pk
    gate = tmp_path / "go"
    args = {"owner_id": alice.pk, "queued": queued, "hot": hot, "rounds": rounds}
    processes = start_writers(writers, args, gate)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < writers:  # all imported and connected: then all at once
        assert time.monotonic() < deadline, "the writers did not start"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.05)
    gate.touch()
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))

    print("writers' seconds:", [outcome["seconds"] for outcome in outcomes])
    errors = [error for outcome in outcomes for error in outcome["errors"]]
    assert not errors, errors
    # Each queued job was claimed by exactly one process and stored whole.
    claimed = sorted(r for outcome in outcomes for r in outcome["claimed"])
    assert claimed == sorted(queued)
    for recording in Recording.objects.filter(pk__in=queued).select_related("transcript"):
        assert (recording.status, recording.progress) == (Recording.Status.DONE, 1.0)
        assert recording.transcript.segments.count() == 30
    uploads = [r for outcome in outcomes for r in outcome["uploads"]]
    assert Recording.objects.filter(pk__in=uploads, status=Recording.Status.QUEUED).count() == writers * rounds
    live = [r for outcome in outcomes for r in outcome["live"]]
    assert len(live) == writers * rounds
    assert Recording.objects.filter(pk__in=live, status=Recording.Status.DONE, transcript__isnull=False).count() == len(
        live
    )
    # The hot row holds one writer's whole write (the last one's), never a mix.
    entities = Recording.objects.get(pk=hot).knowledge["entities"]
    assert len(entities) == 1 and entities[0]["name"].startswith("Writer ")
    redis.Redis.from_url(quiet_redis_url()).flushdb()


@pytest.mark.services  # Redis: the channel layer the waiting request listens on
def test_a_request_waiting_for_its_transcription_holds_no_database_connection(transactional_db, speech, tmp_path):
    """An OpenAI-style request waits for the worker as long as the job runs. With a pool of one
    connection, it must not keep that one from everybody else meanwhile."""
    alice = make_user("alice")
    key = ApiToken.issue(alice, "waiting")[1]
    env = services.test_process_env()
    # No worker listens on this Redis database: the job stays queued and the request keeps waiting.
    env["REDIS_URL"] = quiet_redis_url()
    env["DATABASE_POOL_SIZE"] = "1"
    log = tmp_path / "daphne.log"
    daphne, base = services.start_daphne(env, log)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=8)
        outcome = []

        def transcribe():
            with speech[0].open("rb") as audio:
                try:
                    client.audio.transcriptions.create(model="whisper-1", file=audio)
                except openai.APIError as exc:
                    outcome.append(exc)

        waiting = threading.Thread(target=transcribe)
        waiting.start()
        deadline = time.monotonic() + 10
        while not Recording.objects.filter(owner=alice).exists():  # accepted: the request now waits
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        request = urllib.request.Request(f"{base}/api/recordings", headers={"Authorization": f"Bearer {key}"})
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert len(json.loads(response.read())["results"]) == 1
        # The pool's own timeout is 10 s: this answered without waiting for the connection, while
        # the other request was still waiting for its transcription.
        assert time.monotonic() - started < 5
        assert waiting.is_alive()
        waiting.join(30)
        assert isinstance(outcome[0], openai.APITimeoutError)  # it waited until the client gave up
    finally:
        services.stop(daphne)
        redis.Redis.from_url(quiet_redis_url()).flushdb()


def test_the_lookups_the_app_relies_on(db, alice):
    """JSON key lookups (a migration uses one), case-insensitive search, row locks."""
    workflow = Workflow.objects.create(owner=alice, name="w", definition={"nodes": []})
    WorkflowRun.objects.create(workflow=workflow, owner=alice, inputs={"_overrides": {"a": 1}})
    WorkflowRun.objects.create(workflow=workflow, owner=alice, inputs={"text": "x"})
    assert WorkflowRun.objects.filter(inputs__has_key="_overrides").count() == 1
    Recording.objects.create(owner=alice, title="Budget Meeting with Stella", audio="recordings/a.wav")
    assert Recording.objects.filter(title__icontains="MEETING WITH stella").count() == 1
    if connection.vendor == "postgresql":  # SQLite folds ASCII letters only
        Recording.objects.create(owner=alice, title="Réunion à Zürich", audio="recordings/b.wav")
        assert Recording.objects.filter(title__icontains="ZÜRICH").count() == 1
    with transaction.atomic():
        locked = Recording.objects.select_for_update().filter(owner=alice).order_by("pk")
        assert len(locked) == Recording.objects.filter(owner=alice).count()


def main(arguments: str) -> None:
    """A writer process of test_processes_writing_at_once_never_fail_on_locking (see WRITER)."""
    options = json.loads(arguments)
    print(json.dumps(write(**{**options, "gate": Path(options["gate"])})))
