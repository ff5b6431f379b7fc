"""Abuse of the account surface, tried for real (Redis counters, the real views): weak passwords, bursts
of wrong passwords (site and admin), sign-up and API bursts, expired tokens, deleting a user."""

import itertools
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from neomodel import db

from accounts.models import ApiToken
from actions.accounts import delete_user
from graph import outbox, writes
from graph.connection import GRAPH_UNAVAILABLE, configure
from graph.models import GraphChange
from tests.factories import PASSWORD, make_transcribed
from transcription import live_store
from transcription.models import Recording

pytestmark = pytest.mark.services  # the counters and the token cache are in Redis

_addresses = itertools.count(1)


def fresh_address() -> str:
    """An address no earlier test (or run: the counters live in Redis for their window) has used."""
    return f"10.{uuid.uuid4().int % 200 + 20}.{next(_addresses) % 250}.{uuid.uuid4().int % 250 + 1}"


def make_user(prefix: str = "user", **extra):
    return get_user_model().objects.create_user(username=f"{prefix}-{uuid.uuid4().hex[:8]}", password=PASSWORD, **extra)


# --- Passwords ------------------------------------------------------------------------------------


def test_a_weak_password_is_refused_at_signup_with_the_validators_messages(client, db):
    username = f"weak-{uuid.uuid4().hex[:8]}"
    response = client.post(
        reverse("signup"),
        {"username": username, "password1": "a", "password2": "a"},
        REMOTE_ADDR=fresh_address(),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "This password is too short. It must contain at least 8 characters." in page
    assert "This password is too common." in page
    assert not get_user_model().objects.filter(username=username).exists()


def test_a_strong_password_is_accepted(client, db):
    username = f"strong-{uuid.uuid4().hex[:8]}"
    response = client.post(
        reverse("signup"),
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR=fresh_address(),
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username=username).exists()


def test_a_password_change_is_validated_too(client, db):
    user = make_user()
    client.force_login(user)
    response = client.post(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": "123", "new_password2": "123"}
    )
    assert response.status_code == 200
    assert "This password is entirely numeric." in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# --- Sign-in bursts -------------------------------------------------------------------------------


def sign_in(client, url: str, username: str, password: str, address: str):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("url_name", ["login", "admin:login"])
def test_a_burst_of_wrong_passwords_locks_the_username_out(client, db, settings, url_name):
    url = reverse(url_name)
    victim, other = make_user("victim", is_staff=True), make_user("other", is_staff=True)
    address = fresh_address()
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME):
        response = sign_in(client, url, victim.username, "wrong password", address)
        assert response.status_code == 200  # the form again, with its error

    refused = sign_in(client, url, victim.username, "wrong password", address)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= settings.LOGIN_LOCKOUT_SECONDS
    assert "Too many failed sign-ins" in refused.content.decode()
    # The right password too, from this address or any other, until the window ends.
    assert sign_in(client, url, victim.username, PASSWORD, address).status_code == 429
    assert sign_in(client, url, victim.username, PASSWORD, fresh_address()).status_code == 429
    assert "_auth_user_id" not in client.session
    # Another user, even from the same address, signs in.
    assert sign_in(client, url, other.username, PASSWORD, address).status_code == 302


def test_an_address_trying_many_usernames_is_locked_out(client, db, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    url, address = reverse("login"), fresh_address()
    for index in range(settings.LOGIN_FAILURES_PER_ADDRESS):
        assert sign_in(client, url, f"guess-{index}-{uuid.uuid4().hex[:6]}", "x", address).status_code == 200
    user = make_user()
    assert sign_in(client, url, user.username, PASSWORD, address).status_code == 429
    assert sign_in(client, url, user.username, PASSWORD, fresh_address()).status_code == 302


def test_a_successful_sign_in_forgets_the_usernames_failures(client, db, settings):
    url, address, user = reverse("login"), fresh_address(), make_user()
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME - 1):
        assert sign_in(client, url, user.username, "wrong", address).status_code == 200
    assert sign_in(client, url, user.username, PASSWORD, address).status_code == 302
    client.logout()
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME - 1):
        assert sign_in(client, url, user.username, "wrong", address).status_code == 200


# --- Sign-up bursts -------------------------------------------------------------------------------


def sign_up(client, address: str):
    username = f"new-{uuid.uuid4().hex[:10]}"
    return client.post(
        reverse("signup"), {"username": username, "password1": PASSWORD, "password2": PASSWORD}, REMOTE_ADDR=address
    )


def test_a_burst_of_sign_ups_from_one_address_is_refused(client, db, settings):
    settings.SIGNUPS_PER_ADDRESS_PER_HOUR = 3
    address = fresh_address()
    for _ in range(3):
        assert sign_up(client, address).status_code == 302
        client.logout()
    before = get_user_model().objects.count()
    refused = sign_up(client, address)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many new accounts" in refused.content.decode()
    assert get_user_model().objects.count() == before
    assert sign_up(client, fresh_address()).status_code == 302  # other addresses are not affected


# --- API bursts -----------------------------------------------------------------------------------


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_a_burst_of_api_requests_with_one_token_gets_429_and_other_tokens_go_on(client, db, settings):
    settings.API_REQUESTS_PER_MINUTE = 5
    _, key = ApiToken.issue(make_user(), "burst")
    _, other_key = ApiToken.issue(make_user(), "calm")
    for _ in range(5):
        assert client.get("/api/recordings", **bearer(key)).status_code == 200
    refused = client.get("/api/recordings", **bearer(key))
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "at most 5 a minute" in refused.json()["detail"]
    assert client.get("/api/recordings", **bearer(other_key)).status_code == 200


def test_a_browser_session_is_limited_per_user(client, db, settings):
    settings.API_REQUESTS_PER_MINUTE = 3
    client.force_login(make_user())
    assert [client.get("/api/recordings").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_uploads_have_a_stricter_limit(client, db, settings):
    settings.API_UPLOADS_PER_MINUTE = 2
    _, key = ApiToken.issue(make_user(), "uploads")
    statuses = [client.post("/api/recordings", {}, **bearer(key)).status_code for _ in range(3)]
    assert statuses[:2] != [429, 429] and statuses[2] == 429  # no file: 4xx, but counted
    assert client.get("/api/recordings", **bearer(key)).status_code == 200  # reads still go


def test_the_openai_endpoint_is_limited_per_token_in_openais_shape(client, db, settings):
    settings.API_REQUESTS_PER_MINUTE = 2
    _, key = ApiToken.issue(make_user(), "openai")
    url = reverse("openai-transcriptions")
    statuses = [client.post(url, {}, **bearer(key)).status_code for _ in range(2)]
    assert 429 not in statuses
    refused = client.post(url, {}, **bearer(key))
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


# --- Token expiry ---------------------------------------------------------------------------------


def test_an_expired_token_is_refused_with_a_clear_message(client, db):
    _, key = ApiToken.issue(make_user(), "old", expires_at=timezone.now() - timedelta(minutes=1))
    response = client.get("/api/recordings", **bearer(key))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"] and "profile page" in response.json()["detail"]
    openai = client.post(reverse("openai-transcriptions"), {}, **bearer(key))
    assert openai.status_code == 401 and "expired" in openai.json()["error"]["message"]


def test_a_cached_token_stops_working_when_it_expires(client, db):
    # The first request caches the token (accounts/tokens.py); the entry must not outlive it.
    _, key = ApiToken.issue(make_user(), "short", expires_at=timezone.now() + timedelta(seconds=3))
    assert client.get("/api/recordings", **bearer(key)).status_code == 200
    deadline = time.monotonic() + 30
    while (status := client.get("/api/recordings", **bearer(key)).status_code) == 200:
        assert time.monotonic() < deadline, "the token still works long after it expired"
        time.sleep(0.2)
    assert status == 401


def test_a_token_can_be_made_with_an_expiry_on_the_profile_page(client, db):
    user = make_user()
    client.force_login(user)
    response = client.post(reverse("profile"), {"name": "ci", "expires_in_days": "7"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=user)
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    client.post(reverse("profile"), {"name": "forever", "expires_in_days": ""})
    assert ApiToken.objects.get(user=user, name="forever").expires_at is None


def test_a_token_made_through_the_api_expires_no_later_than_the_one_that_made_it(client, db):
    user = make_user()
    parent, key = ApiToken.issue(user, "parent", expires_at=timezone.now() + timedelta(days=1))
    made = client.post(
        "/api/tokens", {"name": "child", "expires_in_days": 30}, content_type="application/json", **bearer(key)
    )
    assert made.status_code == 201
    assert made.json()["expires_at"] is not None
    child = ApiToken.objects.get(pk=made.json()["id"])
    assert child.expires_at == parent.expires_at
    assert client.get("/api/recordings", **bearer(made.json()["key"])).status_code == 200
    # With a session, a token may be made that never expires.
    client.force_login(user)
    forever = client.post("/api/tokens", {"name": "forever"}, content_type="application/json")
    assert forever.status_code == 201 and forever.json()["expires_at"] is None


# --- Deleting a user ------------------------------------------------------------------------------


@pytest.fixture
def alice_with_everything(alice, settings, django_capture_on_commit_callbacks):
    """alice with an uploaded file, a recording in the graph and an unsaved live session."""
    uploaded = Recording(owner=alice, title="upload", size_bytes=4)
    uploaded.audio.save("upload.wav", ContentFile(b"RIFF"), save=True)
    transcribed = make_transcribed(alice, "Rome trip", ["Stella flew to Rome with Marco."])
    writes.write_recording(transcribed.id)
    live = live_store.SessionStore(f"test-{uuid.uuid4().hex}")
    live.create(alice.id, {}, "default")
    with live.open_spool() as spool:
        spool.write(b"\0\0" * 1600)
    return {"file": Path(uploaded.audio.path), "live": live}


def owned_nodes(owner_id: int) -> int:
    rows, _ = db.cypher_query(
        "MATCH (n) WHERE n.owner = $owner OR (n:User AND n.uid = $owner) RETURN count(n)", {"owner": str(owner_id)}
    )
    return rows[0][0]


def test_deleting_a_user_removes_their_files_live_spool_and_graph(
    alice, bob, alice_with_everything, django_capture_on_commit_callbacks
):
    bobs = make_transcribed(bob, "Bob's notes", ["Stella flew to Rome."])
    writes.write_recording(bobs.id)
    bobs_nodes = owned_nodes(bob.id)
    assert owned_nodes(alice.id) > 3 and alice_with_everything["file"].exists()
    assert alice_with_everything["live"].spool_path.exists()

    alice_id = alice.pk
    with django_capture_on_commit_callbacks(execute=True):
        delete_user(alice)
    assert outbox.apply_pending() >= 1

    assert not get_user_model().objects.filter(pk=alice_id).exists()
    assert not Recording.objects.filter(owner_id=alice_id).exists()
    assert not alice_with_everything["file"].exists()
    assert not alice_with_everything["live"].spool_path.exists()
    assert alice_with_everything["live"].meta() is None
    assert live_store.open_sessions(alice_id) == 0
    assert owned_nodes(alice_id) == 0
    # bob's recording, nodes and graph are untouched.
    assert Recording.objects.filter(pk=bobs.pk).exists()
    assert owned_nodes(bob.id) == bobs_nodes


def test_a_user_deleted_while_neo4j_is_down_leaves_the_graph_purge_waiting(
    alice, alice_with_everything, settings, django_capture_on_commit_callbacks
):
    alice_id = alice.pk
    real_url = settings.NEO4J_BOLT_URL
    settings.NEO4J_BOLT_URL = "bolt://neo4j:neo4j@127.0.0.1:1"  # nothing listens there
    configure()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delete_user(alice)  # succeeds: the graph is not needed now
        with pytest.raises(GRAPH_UNAVAILABLE):
            outbox.apply_pending()
    finally:
        settings.NEO4J_BOLT_URL = real_url
        configure()
    assert not alice_with_everything["file"].exists()
    assert GraphChange.objects.filter(kind=GraphChange.Kind.PURGE_OWNER, owner_id=alice_id).exists()
    assert owned_nodes(alice_id) > 0

    outbox.apply_pending()
    assert owned_nodes(alice_id) == 0
    assert not GraphChange.objects.exists()


def test_admin_deletion_and_self_service_go_through_delete_user(client, db, django_capture_on_commit_callbacks):
    admin = get_user_model().objects.create_superuser(f"admin-{uuid.uuid4().hex[:6]}", password=PASSWORD)
    doomed, leaving = make_user("doomed"), make_user("leaving")
    for owner in (doomed, leaving):
        Recording(owner=owner, title="x", size_bytes=4).audio.save("x.wav", ContentFile(b"RIFF"), save=True)
    files = {owner.pk: Path(Recording.objects.get(owner=owner).audio.path) for owner in (doomed, leaving)}

    doomed_id, leaving_id = doomed.pk, leaving.pk
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:auth_user_delete", args=[doomed_id]), {"post": "yes"})
    assert response.status_code == 302
    assert not files[doomed_id].exists()
    assert GraphChange.objects.filter(kind=GraphChange.Kind.PURGE_OWNER, owner_id=doomed_id).exists()

    client.force_login(leaving)
    wrong = client.post(reverse("delete-account"), {"password": "not mine"})
    assert wrong.status_code == 400 and files[leaving_id].exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("delete-account"), {"password": PASSWORD})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=leaving_id).exists()
    assert not files[leaving_id].exists()
    assert "_auth_user_id" not in client.session
