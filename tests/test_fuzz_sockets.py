"""Property-based fuzzing of every WebSocket route (assistant_site/routing.py): live transcription, a
recording's progress, a workflow run's events. Driven in-process through the real ASGI application
(Origin check, session auth, routing) with channels' WebsocketCommunicator, on the real Redis.

Random text frames (the protocol's messages with random fields, any JSON, invalid JSON, huge strings),
random binary frames (odd, empty, oversize), messages in the wrong order (stop before start, audio
before start, double start). For any of them: no exception
escapes a consumer (the communicator re-raises it), every connection either ends with a close code of
ours (4000-4999) or a standard one (1000, 1008, 1009, 1011) or is still open and answering, nothing
hangs, and afterwards no live session is left behind and every recording is in a state it can be in.
Who may connect (session, Origin) is checked case by case in test_live.py and test_progress_socket.py.

The close codes are checked by range, not one by one, so the live socket's own limits (rate caps, session
length) can change their codes without breaking these tests. Derandomized and bounded: about a minute.
"""

import asyncio
import time

import orjson
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from assistant_site.asgi import application
from tests.factories import make_transcribed
from tests.test_progress_socket import session_cookie
from transcription import live, live_store
from transcription.models import Recording
from transcription.progress import recording_group
from workflows.models import Workflow, WorkflowRun
from workflows.runs import run_group

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

GOOD_ORIGIN = b"http://127.0.0.1:8000"
ACCEPTABLE_CLOSE_CODES = {1000, 1008, 1009, 1011, *range(4000, 5000)}
STEP_TIMEOUT = 20.0  # seconds for any one answer: generous (busy machine), a hang still fails
HUGE_TEXT = 256 * 1024  # the largest text frame sent


def fuzz_settings(examples: int):
    return hypothesis_settings(
        max_examples=examples, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )


# --- What the fuzzer sends ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
huge_strings = st.integers(1, HUGE_TEXT).map(lambda n: "x" * n)
field_values = st.one_of(
    json_values,
    st.sampled_from(["en", "de", "", "tiny.en", "base", "local-agreement", "naive", "auto", "0" * 40]),
    huge_strings,
)
live_messages = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("start")},
        optional={"language": field_values, "model": field_values, "policy": field_values, "resume": field_values},
    ),
    st.fixed_dictionaries({"type": st.just("stop")}, optional={"now": json_values}),
    st.fixed_dictionaries({"type": json_values}),
    json_values,
).map(lambda message: {"text_data": orjson.dumps(message).decode()})
text_frames = st.one_of(
    live_messages,
    st.text(max_size=200).map(lambda text: {"text_data": text}),  # mostly not JSON
    huge_strings.map(lambda s: {"text_data": '{"type": "start", "language": "' + s + '"}'}),
)
binary_frames = st.one_of(
    st.binary(max_size=4096),  # odd lengths too
    st.integers(0, 3200).map(lambda n: bytes(2 * n)),  # silence, up to 0.2 s
    st.just(b""),
    st.just(bytes(settings.LIVE_MAX_FRAME_BYTES + 2)),  # over the frame limit
).map(lambda data: {"bytes_data": data})
frames = st.lists(st.one_of(text_frames, binary_frames), max_size=6)
START = {"text_data": '{"type": "start", "language": "en"}'}
# Half the time the stream is started properly first, so audio and late messages reach a session.
live_conversations = st.tuples(st.booleans(), frames).map(lambda t: ([START] if t[0] else []) + t[1])


# --- Driving a socket ---------------------------------------------------------------------------


def socket(path: str, cookie: str | None = None, origin: bytes | None = GOOD_ORIGIN) -> WebsocketCommunicator:
    headers = [] if origin is None else [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def pending_output(ws: WebsocketCommunicator, wait: float = 0.05) -> list[dict]:
    """What the consumer has sent so far (re-raises any exception that escaped it)."""
    out = []
    while not await ws.receive_nothing(timeout=wait, interval=0.01):
        out.append(await ws.receive_output(timeout=STEP_TIMEOUT))
    return out


def close_code(outputs: list[dict]) -> int | None:
    for message in outputs:
        if message["type"] == "websocket.close":
            return message.get("code") or 1000
    return None


async def play(ws: WebsocketCommunicator, conversation: list[dict]) -> tuple[list[dict], int | None]:
    """Send the frames one by one, stopping when the server closes; (server messages, close code)."""
    received: list[dict] = []
    for frame in conversation:
        # Straight to the application: the communicator's send_to() refuses empty frames, a client may not.
        if "text_data" in frame:
            await ws.send_input({"type": "websocket.receive", "text": frame["text_data"]})
        else:
            await ws.send_input({"type": "websocket.receive", "bytes": frame["bytes_data"]})
        outputs = await pending_output(ws)
        received += [orjson.loads(m["text"]) for m in outputs if m["type"] == "websocket.send" and m.get("text")]
        code = close_code(outputs)
        if code is not None:
            return received, code
    return received, None


async def answers_or_closes(ws: WebsocketCommunicator, probe: dict, is_answer) -> int | None:
    """Send a probe frame; wait for an answer to it (or a close). The close code, if closed."""
    await ws.send_to(**probe)
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        message = await ws.receive_output(timeout=STEP_TIMEOUT)
        if message["type"] == "websocket.close":
            return message.get("code") or 1000
        if message.get("text") and is_answer(orjson.loads(message["text"])):
            return None
    raise AssertionError(f"no answer to {probe} within {STEP_TIMEOUT} s")


async def no_live_session_left(user_id: int, deadline_seconds: float = 60) -> None:
    """Every session of the user stopped and saved (or discarded): none served here, none in Redis.
    (Waited for in the example's own event loop: leaving it would cancel a save under way.)"""
    deadline = time.monotonic() + deadline_seconds
    while (live._sessions or live_store.open_sessions(user_id)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not live._sessions, f"live sessions left behind: {list(live._sessions)}"
    assert live_store.open_sessions(user_id) == 0, "a live session left in Redis"


@pytest.fixture
def quick_expiry(settings):
    """A live session whose socket goes away is saved at once (not after the resume window), so each
    example ends with its session stored and nothing is left running between examples."""
    settings.LIVE_RESUME_SECONDS = 0
    yield
    live._sessions.clear()
    client = live_store.client()
    for key in client.scan_iter("live:*"):
        client.delete(key)


def is_error(message: dict) -> bool:
    return message.get("type") == "error"


# --- The live socket ----------------------------------------------------------------------------


def test_the_live_socket_survives_any_sequence_of_frames(alice, bob, quick_expiry):
    cookie = session_cookie(alice)
    bobs = make_transcribed(bob, "bob's", ["hello"])

    @fuzz_settings(25)
    @given(conversation=live_conversations)
    def fuzz(conversation):
        async def scenario():
            ws = socket("/ws/live/", cookie)
            connected, _ = await ws.connect(timeout=STEP_TIMEOUT)
            assert connected
            received, code = await play(ws, conversation)
            if code is None:  # still open: it must still answer
                code = await answers_or_closes(ws, {"text_data": '{"type": "are-you-there"}'}, is_error)
            if code is None:
                await ws.disconnect(timeout=STEP_TIMEOUT)
            else:
                assert code in ACCEPTABLE_CLOSE_CODES, (code, received)
                await ws.disconnect(timeout=STEP_TIMEOUT)  # the consumer ends without an exception
            for message in received:
                assert isinstance(message, dict) and "type" in message, message
            await no_live_session_left(alice.id)

        asyncio.run(scenario())

    fuzz()
    # Afterwards: every live recording saved is whole and done, bob's untouched, nothing left in Redis.
    for recording in Recording.objects.filter(owner=alice):
        assert recording.status == Recording.Status.DONE, (recording.pk, recording.status, recording.error)
        assert recording.audio and recording.audio.storage.exists(recording.audio.name)
    assert Recording.objects.get(pk=bobs.pk).status == Recording.Status.DONE
    assert live_store.open_sessions(alice.id) == 0


def test_policy_and_options_of_any_json_type_are_refused_cleanly(alice, quick_expiry):
    """Fuzz finding: a start message whose policy was a JSON list or object (`"policy": [1]`) raised
    TypeError (unhashable) out of the consumer."""
    cookie = session_cookie(alice)

    async def scenario():
        for start in (
            {"type": "start", "policy": [1]},
            {"type": "start", "policy": {"a": 1}},
            {"type": "start", "language": ["en"], "model": {"x": 1}},
            {"type": "start", "resume": {"id": 1}},
        ):
            ws = socket("/ws/live/", cookie)
            assert (await ws.connect(timeout=STEP_TIMEOUT))[0]
            await ws.send_json_to(start)
            reply = await ws.receive_json_from(timeout=STEP_TIMEOUT)
            assert reply["type"] in ("error", "ready"), reply
            await ws.disconnect(timeout=STEP_TIMEOUT)
        await no_live_session_left(alice.id)

    asyncio.run(scenario())


# --- The progress and workflow-run sockets (server to page only) --------------------------------


def test_the_listening_sockets_ignore_anything_sent_and_keep_pushing(alice, bob):
    cookie = session_cookie(alice)
    own = make_transcribed(alice, "alice's", ["hello"])
    others = make_transcribed(bob, "bob's", ["hello"])
    alices_run = WorkflowRun.objects.create(
        workflow=Workflow.objects.create(owner=alice, name="w", definition={"nodes": []}), owner=alice
    )
    bobs_run = WorkflowRun.objects.create(
        workflow=Workflow.objects.create(owner=bob, name="w", definition={"nodes": []}), owner=bob
    )
    routes = {
        "progress": (
            "/ws/recordings/{}/",
            own.pk,
            others.pk,
            lambda pk: (recording_group(pk), {"type": "recording.progress", "data": {"status": "probe"}}),
        ),
        "run": (
            "/ws/workflows/runs/{}/",
            alices_run.pk,
            bobs_run.pk,
            lambda pk: (run_group(pk), {"type": "run.event", "data": {"status": "probe"}}),
        ),
    }
    ids = st.sampled_from(["own", "others", 0, 2**31, 10**30])

    @fuzz_settings(12)
    @given(route=st.sampled_from(sorted(routes)), which=ids, conversation=frames)
    def fuzz(route, which, conversation):
        template, own_pk, others_pk, event = routes[route]
        pk = {"own": own_pk, "others": others_pk}.get(which, which)

        async def scenario():
            ws = socket(template.format(pk), cookie)
            connected, code = await ws.connect(timeout=STEP_TIMEOUT)
            if pk != own_pk:
                assert not connected and code in ACCEPTABLE_CLOSE_CODES, (route, pk, code)
                await ws.disconnect(timeout=STEP_TIMEOUT)  # as the server would, after its close
                return
            assert connected
            snapshot = await ws.receive_json_from(timeout=STEP_TIMEOUT)
            assert "status" in snapshot
            received, code = await play(ws, conversation)
            assert received == [] and code is None, (received, code)  # ignored, still open
            group, message = event(pk)
            await get_channel_layer().group_send(group, message)
            assert (await ws.receive_json_from(timeout=STEP_TIMEOUT)) == {"status": "probe"}
            await ws.disconnect(timeout=STEP_TIMEOUT)

        asyncio.run(scenario())

    fuzz()
