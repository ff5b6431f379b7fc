"""Property-based fuzzing of the HTTP API: every operation of the REST API's OpenAPI schema (schemathesis),
and the OpenAI-compatible endpoint (not in that schema: hypothesis directly), called in-process through
the ASGI app as a signed-in user with a real API token.

What must hold for any input: no 5xx, no hang (a per-call timeout), answers that match the schema where
the schema describes them, and nothing of another user's touched: alice fuzzes (deletes included) while
bob's recordings exist, and bob's recordings, transcripts and files are all still there afterwards.

Reproducible: hypothesis is derandomized (the same examples on every run) and the number of examples per
operation is bounded, so the module takes about a minute.
"""

from pathlib import Path

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.models import ApiToken
from assistant_site.api import api
from assistant_site.asgi import application
from tests.factories import make_transcribed
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

CALL_TIMEOUT = 20  # seconds per request: a hang is a failure, not a stuck suite
EXAMPLES_PER_OPERATION = 25
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

# What the fuzzer aims recording ids at besides random integers: its own recordings and another
# user's (filled in by the fixture; the hooks read it while generating).
KNOWN_IDS: dict[str, list[int]] = {"alice": [], "bob": []}
SMALL_AUDIO: dict[str, bytes] = {}


def bobs_state() -> list[tuple]:
    return sorted(
        (r.pk, r.title, r.status, r.audio.name, Path(r.audio.path).is_file(), r.transcript.text)
        for r in Recording.objects.filter(owner__username="bob").select_related("transcript")
    )


# The API's own schema, its calls sent in-process to the ASGI app (no port, no Daphne). Built eagerly:
# schemathesis' fixture-based (lazy) loader does not run under pytest 9.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = application


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict) or "recording_id" not in path_parameters:
        return st.just(path_parameters)
    ids = st.sampled_from(KNOWN_IDS["alice"] + KNOWN_IDS["bob"])
    return st.one_of(st.just(path_parameters), ids.map(lambda pk: {**path_parameters, "recording_id": pk}))


@schema.hook
def flatmap_body(context, body):
    # Random bytes as "audio" only ever reach the probe's 400; real audio also reaches the queue.
    if not isinstance(body, dict) or "file" not in body:
        return st.just(body)
    return st.sampled_from([body, {**body, "file": SMALL_AUDIO["wav"]}])


@pytest.fixture
def two_users_data(alice, bob, speech):
    """alice and bob each own transcribed recordings (with audio files); bob's must come through
    alice's fuzzing untouched."""
    path, _ = speech
    SMALL_AUDIO["wav"] = Path(path).read_bytes()
    for owner in (alice, bob):
        made = [make_transcribed(owner, f"{owner.username} {i}", ["hello there", "general kenobi"]) for i in range(3)]
        for recording in made:
            Path(recording.audio.path).parent.mkdir(parents=True, exist_ok=True)
            Path(recording.audio.path).write_bytes(SMALL_AUDIO["wav"])
        KNOWN_IDS[owner.username] = [r.pk for r in made]
    before = bobs_state()
    yield
    assert bobs_state() == before, "alice's fuzzing changed bob's recordings"


@pytest.fixture
def alice_headers(alice):
    return {"Authorization": f"Bearer {ApiToken.issue(alice, 'fuzz')[1]}"}


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_input_to_the_api_is_a_server_error_or_a_hang(case, two_users_data, alice_headers):
    case.call_and_validate(headers=alice_headers, checks=CHECKS, timeout=CALL_TIMEOUT)


def test_the_schema_is_served_to_a_signed_in_user(alice):
    client = Client()
    client.force_login(alice)
    served = client.get("/api/openapi.json").json()
    assert set(served["paths"]) == set(api.get_openapi_schema()["paths"])


# --- The OpenAI-compatible endpoint (not in the schema: fuzzed with hypothesis directly) -----------

form_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["whisper-1", "tiny.en", "json", "text", "srt", "vtt", "verbose_json", "en", "0.2", "word"]),
    st.integers(1, 300_000).map(lambda n: "x" * n),
)
openai_forms = st.fixed_dictionaries(
    {},
    optional={
        "model": form_values,
        "response_format": form_values,
        "language": form_values,
        "prompt": form_values,
        "temperature": form_values,
        "timestamp_granularities[]": st.lists(form_values, max_size=3),
    },
)
# Never valid audio (no container or codec starts with these bytes), so no job is queued and the request
# cannot wait for a worker: what is fuzzed is everything before that.
not_audio = st.binary(max_size=2048).map(lambda data: b"\x00fuzz\x00" + data)
filenames = st.text(alphabet=st.characters(codec="ascii", exclude_characters='"\\\r\n'), max_size=40)


@settings(max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    auth=st.sampled_from(["token", "none", "garbage"]),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE"]),
    form=openai_forms,
    upload=st.one_of(st.none(), st.tuples(filenames, not_audio)),
    raw_body=st.one_of(st.none(), st.binary(max_size=512)),
)
def test_no_request_to_the_openai_endpoint_is_a_server_error_or_a_hang(
    openai_key, auth, method, form, upload, raw_body
):
    headers = {"token": {"Authorization": f"Bearer {openai_key}"}, "none": {}}.get(
        auth, {"Authorization": "Bearer wa_x"}
    )
    with asgi.get_client(application) as client:
        if raw_body is not None:  # a body that claims to be multipart and is not
            headers = {**headers, "Content-Type": "multipart/form-data; boundary=fuzz"}
            response = client.request(
                method, "/v1/audio/transcriptions", headers=headers, data=raw_body, timeout=CALL_TIMEOUT
            )
        else:
            files = {"file": upload} if upload else None
            response = client.request(
                method, "/v1/audio/transcriptions", headers=headers, data=form, files=files, timeout=CALL_TIMEOUT
            )
    assert response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]  # OpenAI's shape, whatever went wrong
    assert error["message"] and error["type"]
    assert not Recording.objects.filter(owner__username="alice").exists()  # nothing stored for garbage


@pytest.fixture
def openai_key(alice):
    return ApiToken.issue(alice, "fuzz")[1]


# Findings of the fuzzing above, kept as explicit examples.


@pytest.mark.parametrize(
    "moment",
    [
        "0110-06-06T12:53:06.419-19:03",  # an offset PostgreSQL refuses (it takes up to ±15:59): was a 500
        "2026-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00+19:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-23:59",  # after year 9999 in UTC
    ],
)
def test_a_date_filter_with_any_offset_is_answered_without_a_server_error(alice, alice_headers, moment):
    make_transcribed(alice, "dated", ["hello"])
    api = Client(headers=alice_headers)
    for name in ("created_before", "created_after"):
        response = api.get("/api/recordings", {name: moment})
        assert response.status_code in (200, 422), (name, moment, response.status_code)
    assert api.get("/api/recordings", {"created_before": "2026-01-01T00:00:00+23:59"}).status_code == 200
