"""Abuse of the data paths, tried for real: filling the cache, forged cursors, another user's AI cache,
colliding graph names, a poisoned graph change. Each must be refused or contained, and other users'
work goes on."""

import base64
import json
import threading
import time

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone
from django_redis import get_redis_connection
from neomodel import db

from accounts.models import ApiToken
from graph import nodes as g
from graph import outbox, queries, writes
from graph.models import GraphChange
from tests.factories import make_transcribed, make_user
from workflows import engine
from workflows.nodes.base import Context, node_type

pytestmark = pytest.mark.services  # Redis (both), Neo4j

MiB = 1024 * 1024
RAN: list[tuple[int | None, str]] = []  # (owner, input) each time abuse_count really ran


@node_type("abuse_count", inputs=("value",), outputs=("value",), cached=True)
async def abuse_count(ctx, inputs, settings):
    """A cached node that notes each real run, as an LLM call would cost one."""
    RAN.append((ctx.owner_id, inputs["value"]))
    return {"value": inputs["value"]}


def api(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {ApiToken.issue(user, 'tests')[1]}"})


def unsigned_cursor(*values) -> str:
    """A cursor as the old code made them: base64 of JSON, which anyone could write."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


# --- Redis: the cache is bounded, the broker never evicts -----------------------------------------


def test_the_cache_redis_is_bounded_and_evicts_only_cache_keys():
    cache_redis = get_redis_connection("default")
    broker = redis.Redis.from_url(settings.REDIS_URL)
    assert cache_redis.info("server")["run_id"] != broker.info("server")["run_id"]  # two instances
    assert cache_redis.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    maxmemory = int(cache_redis.config_get("maxmemory")["maxmemory"])
    assert 0 < maxmemory <= 1024 * MiB
    assert broker.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"

    # What lives in the broker's Redis: a queue (no TTL), a task result and a lease (with TTLs).
    broker.rpush("abuse:queue", *[f"job {i}" for i in range(100)])
    broker.set("abuse:celery-task-meta", "result", ex=3600)
    broker.set("abuse:lease", "web-1", ex=3600)
    evicted_before = cache_redis.info("stats")["evicted_keys"]
    filled = 2 * maxmemory // MiB + 8
    try:
        for i in range(filled):
            cache.set(f"abuse:fill:{i}", b"x" * MiB, timeout=3600)
        assert cache_redis.info("stats")["evicted_keys"] > evicted_before
        assert cache_redis.info("memory")["used_memory"] <= maxmemory + 4 * MiB
        assert len(cache_redis.keys("*abuse:fill:*")) < filled
        assert cache.get(f"abuse:fill:{filled - 1}") is not None  # the newest stays
        assert broker.llen("abuse:queue") == 100
        assert broker.get("abuse:celery-task-meta") == b"result" and broker.get("abuse:lease") == b"web-1"
        assert broker.info("stats")["evicted_keys"] == 0
    finally:
        cache.delete_many([f"abuse:fill:{i}" for i in range(filled)])
        broker.delete("abuse:queue", "abuse:celery-task-meta", "abuse:lease")


# --- Cursors: signed; forged, tampered or someone else's is a 400; cursor pages are not cached -----


@pytest.fixture
def sheep(alice):
    for i in range(3):
        recording = make_transcribed(alice, f"take {i}", [f"Stella counted {n} sheep in field {i}." for n in range(7)])
        writes.write_recording(recording.id)


def test_a_forged_or_tampered_search_cursor_is_a_400(alice, bob, sheep):
    client = api(alice)
    first = client.get("/api/search", {"q": "sheep", "limit": 4}).json()
    real = first["next_cursor"]
    assert client.get("/api/search", {"q": "sheep", "limit": 4, "cursor": real}).status_code == 200

    tampered = real[:-3] + ("AAA" if not real.endswith("AAA") else "BBB")
    for forged in (
        unsigned_cursor(1.0, "x", 10**30),  # the old format with a huge count: a 500 before
        unsigned_cursor(1e308, "x", 2**63),
        tampered,
        "x" * 5000,
    ):
        response = client.get("/api/search", {"q": "sheep", "cursor": forged})
        assert response.status_code == 400, forged
        assert response.json()["detail"] == "The cursor is not one this API gave out."

    # A real cursor of Alice's is no cursor for Bob.
    assert api(bob).get("/api/search", {"q": "sheep", "cursor": real}).status_code == 400

    page = Client()
    page.force_login(alice)
    response = page.get("/graph/search", {"q": "sheep", "cursor": unsigned_cursor(1.0, "x", 10**30)})
    assert response.status_code == 400 and b"Search again" in response.content


def test_a_forged_recordings_cursor_is_a_400(alice):
    make_transcribed(alice, "one", ["Hello."])
    client = api(alice)
    response = client.get("/api/recordings", {"cursor": unsigned_cursor(timezone.now().isoformat(), 2**80)})
    assert response.status_code == 400 and "cursor" in response.json()["detail"]


def test_walking_search_pages_caches_only_the_first(alice, sheep):
    cache_redis = get_redis_connection("default")
    before = len(cache_redis.keys("*graph:search:*"))
    client = api(alice)
    pages, cursor = 0, None
    while True:
        page = client.get("/api/search", {"q": "sheep", "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    for _ in range(20):  # forged ones add nothing either
        client.get("/api/search", {"q": "sheep", "cursor": unsigned_cursor(1.0, "x", 5)})
    assert pages >= 10
    assert len(cache_redis.keys("*graph:search:*")) - before == 1


# --- The AI result cache is per user ------------------------------------------------------------


@pytest.mark.django_db
async def test_one_users_ai_result_is_never_a_cache_hit_for_another():
    definition = {
        "nodes": [
            {"id": "in", "type": "passthrough", "settings": {"value": f"private text {time.time()}"}},
            {"id": "ai", "type": "abuse_count", "inputs": {"value": "in.value"}},
            {"id": "out", "type": "output", "inputs": {"v": "ai.value"}},
        ]
    }
    text = definition["nodes"][0]["settings"]["value"]
    alice_first = await engine.execute(definition, Context(owner_id=1001))
    alice_again = await engine.execute(definition, Context(owner_id=1001))
    bob = await engine.execute(definition, Context(owner_id=1002))
    assert not alice_first.nodes["ai"].cache_hit and alice_again.nodes["ai"].cache_hit
    assert not bob.nodes["ai"].cache_hit  # Bob learns nothing of Alice's run...
    assert RAN.count((1002, text)) == 1  # ...and pays for his own
    assert RAN.count((1001, text)) == 1


# --- Graph: node uids carry the owner and cannot collide ----------------------------------------


def entity_uids(user) -> dict[str, str]:
    rows = db.cypher_query("MATCH (e:Entity) WHERE e.owner = $o RETURN e.name, e.uid", {"o": str(user.pk)})[0]
    return dict(rows)


def test_two_users_with_the_same_names_get_their_own_nodes(alice, bob):
    for user in (alice, bob):
        recording = make_transcribed(user, "same names", ["Today Stella met John Smith in Boston."], speakers=["Ana"])
        writes.write_recording(recording.id)
    mine, theirs = entity_uids(alice), entity_uids(bob)
    assert set(mine) == set(theirs) >= {"Stella", "John Smith", "Boston"}
    assert not set(mine.values()) & set(theirs.values())
    assert all(len(uid) == 64 for uid in [*mine.values(), *theirs.values()])  # a whole SHA-256
    for label in ("Entity", "Topic", "Speaker"):
        owners_per_uid = db.cypher_query(f"MATCH (n:{label}) RETURN n.uid, count(DISTINCT n.owner) AS owners")[0]
        assert owners_per_uid and all(owners == 1 for _, owners in owners_per_uid)
    assert queries.entity(str(bob.pk), mine["Stella"]) is None
    assert queries.entity(str(alice.pk), mine["Stella"])["entity"]["name"] == "Stella"
    assert [e["uid"] for e in queries.search(str(bob.pk), "stella")["entities"]] == [theirs["Stella"]]


def poison(recording_owner, name: str, squatter) -> None:
    """Put another user's node on the uid `recording_owner`'s entity `name` will get: the write that
    meets it must fail (uids are merged with their owner), never join the two users' nodes."""
    uid = writes.node_uid(str(recording_owner.pk), "entity", name.lower())
    db.cypher_query(
        "CREATE (:Entity {uid: $uid, owner: $owner, name: 'squatter'})", {"uid": uid, "owner": str(squatter.pk)}
    )


def test_a_uid_held_by_another_user_fails_the_write_and_joins_nothing(alice, bob):
    recording = make_transcribed(alice, "poisoned", ["Today Stella met Zorro."])
    poison(alice, "Stella", bob)
    with pytest.raises(Exception, match="(?i)constraint|already exists"):
        writes.write_recording(recording.id)
    squatter = db.cypher_query("MATCH (e:Entity {name: 'squatter'}) RETURN e.owner, COUNT { (e)<--() }")[0]
    assert squatter == [[str(bob.pk), 0]]


# --- The outbox: one failing change delays only its own recording --------------------------------


def test_a_poisoned_change_does_not_hold_up_other_recordings(alice, bob, settings):
    poisoned = make_transcribed(alice, "poisoned", ["Today Stella met Zorro."])
    fine = make_transcribed(bob, "fine", ["Bob flew to Lima."])
    poison(alice, "Stella", bob)
    outbox.record(GraphChange.Kind.WRITE, poisoned.id, alice.pk)  # at the head of the outbox
    outbox.record(GraphChange.Kind.WRITE, fine.id, bob.pk)

    assert outbox.apply_pending() == 1
    assert g.RecordingNode.nodes.get(uid=str(fine.id)).title == "fine"
    change = GraphChange.objects.get()
    assert change.recording_id == poisoned.id and change.attempts == 1 and change.failed_at is None
    assert "already exists" in change.last_error and change.next_attempt_at > timezone.now()
    assert outbox.apply_pending() == 0  # not due yet: no busy loop on the poisoned change

    # Past the attempt cap it is left failed, for the admin to see.
    GraphChange.objects.update(attempts=settings.GRAPH_OUTBOX_MAX_ATTEMPTS - 1, next_attempt_at=timezone.now())
    assert outbox.apply_pending() == 0
    assert GraphChange.objects.get().failed_at is not None
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    page = Client()
    page.force_login(admin)
    listing = page.get("/admin/graph/graphchange/", {"failed_at__isnull": "False"})
    assert listing.status_code == 200 and b"UniqueProperty" in listing.content

    # Once the cause is gone, "Try again now" applies it.
    db.cypher_query("MATCH (e:Entity {name: 'squatter'}) DELETE e")
    assert outbox.retry(GraphChange.objects.all()) == 1
    assert outbox.apply_pending() == 1
    assert g.RecordingNode.nodes.get(uid=str(poisoned.id)).title == "poisoned"
    assert not GraphChange.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_recording_being_applied_elsewhere_is_skipped_not_waited_for(alice, bob):
    busy = make_transcribed(alice, "busy", ["Today Stella met Zorro."])
    other = make_transcribed(bob, "other", ["Bob flew to Lima."])
    # Rows as outbox.record makes them, without queueing the task: a worker of the suite could take it.
    GraphChange.objects.create(kind=GraphChange.Kind.WRITE, recording_id=busy.id, owner_id=alice.pk)
    GraphChange.objects.create(kind=GraphChange.Kind.WRITE, recording_id=other.id, owner_id=bob.pk)
    locked, release = threading.Event(), threading.Event()

    def another_worker():  # holds busy's lock, as a worker in the middle of applying it would
        try:
            with transaction.atomic():
                head = GraphChange.objects.filter(recording_id=busy.id).order_by("id").first()
                list(GraphChange.objects.select_for_update().filter(pk=head.pk))
                locked.set()
                release.wait(60)
        finally:
            connections.close_all()

    worker = threading.Thread(target=another_worker)
    worker.start()
    try:
        assert locked.wait(30)
        if connections["default"].features.has_select_for_update_skip_locked:
            assert outbox.apply_pending() == 1
            assert g.RecordingNode.nodes.get_or_none(uid=str(busy.id)) is None
            assert g.RecordingNode.nodes.get(uid=str(other.id)).title == "other"
    finally:
        release.set()
        worker.join(60)
    assert outbox.apply_pending() == 1
    assert g.RecordingNode.nodes.get(uid=str(busy.id)).title == "busy"


def test_a_graph_with_old_short_uids_is_rewritten_when_the_schema_is_installed(alice, bob):
    recording = make_transcribed(alice, "old", ["Today Stella met John Smith in Boston."])
    writes.write_recording(recording.id)
    untouched = make_transcribed(bob, "new", ["Bob flew to Lima."])
    writes.write_recording(untouched.id)
    # As the old code wrote them: the first 16 hex digits.
    db.cypher_query(
        "MATCH (n) WHERE (n:Entity OR n:Topic) AND n.owner = $o SET n.uid = substring(n.uid, 0, 16)",
        {"o": str(alice.pk)},
    )
    assert writes.owners_with_old_uids() == [alice.pk]

    call_command("graph_schema", verbosity=0)
    assert list(GraphChange.objects.values_list("recording_id", flat=True)) == [recording.id]
    assert outbox.apply_pending() == 1
    assert writes.owners_with_old_uids() == []
    mine = entity_uids(alice)
    assert {"Stella", "John Smith", "Boston"} <= set(mine) and all(len(uid) == 64 for uid in mine.values())
    assert db.cypher_query("MATCH (n) WHERE size(n.uid) = 16 RETURN count(n)")[0][0][0] == 0
