"""/healthz: a public liveness check that asks no dependency; /readyz: each part the app needs (503
naming the one that is down), for staff or this machine only."""

import socket
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import PASSWORD

REMOTE = "203.0.113.7"  # a documentation address: not this machine


def test_liveness_is_public_and_asks_no_dependency(client, db, settings, django_assert_num_queries):
    # Every dependency pointed at a closed port: liveness does not care, and runs no query.
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.NEO4J_BOLT_URL = "bolt://neo4j:neo4j@127.0.0.1:9"
    with django_assert_num_queries(0):
        response = client.get(reverse("healthz"), REMOTE_ADDR=REMOTE)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_is_refused_to_anonymous_remote_callers(client, db):
    response = client.get(reverse("readyz"), REMOTE_ADDR=REMOTE)
    assert response.status_code == 403 and "/healthz" in response.json()["detail"]
    assert "database" not in response.json()


def test_readiness_is_refused_to_remote_users_who_are_not_staff(client, db):
    client.force_login(get_user_model().objects.create_user("carol", password=PASSWORD))
    assert client.get(reverse("readyz"), REMOTE_ADDR=REMOTE).status_code == 403


@pytest.mark.services  # it checks Redis and Neo4j
def test_every_part_answers_on_this_machine(client, db, llm_server):
    response = client.get(reverse("readyz"))  # the test client's address is 127.0.0.1
    assert response.status_code == 200
    assert response.json() == {"database": True, "redis": True, "neo4j": True, "llm": True}


@pytest.mark.services
def test_staff_may_ask_from_anywhere(client, db, llm_server):
    client.force_login(get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True))
    assert client.get(reverse("readyz"), REMOTE_ADDR=REMOTE).status_code == 200


@pytest.mark.services
def test_a_part_that_is_down_is_named(client, db, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    settings.LLM_BASE_URL = f"http://127.0.0.1:{port}/v1"
    response = client.get(reverse("readyz"))
    assert response.status_code == 503 and response.json()["llm"] is False
    assert response.json()["neo4j"] is True


@pytest.mark.services
def test_a_part_that_hangs_is_reported_down_within_the_time_bound(client, db, settings):
    # A "Redis" that accepts and never answers: redis-py gives up reading after 5 s; the bound (0.5 s
    # here) answers well before (a generous margin, for a busy machine).
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.5
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()
        location = f"redis://127.0.0.1:{hanging.getsockname()[1]}/0"
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": location}}
        started = time.monotonic()
        response = client.get(reverse("readyz"))
        elapsed = time.monotonic() - started
    assert elapsed < 4.5
    assert response.status_code == 503
    assert response.json()["redis"] is False and response.json()["database"] is True


@pytest.mark.services
def test_through_daphne_a_forwarded_remote_address_is_refused(daphne_server):
    import urllib.error
    import urllib.request

    live = urllib.request.urlopen(f"{daphne_server}/healthz", timeout=30)
    assert live.status == 200
    # Behind nginx, Daphne takes the client's address from X-Forwarded-For (--proxy-headers).
    request = urllib.request.Request(f"{daphne_server}/readyz", headers={"X-Forwarded-For": REMOTE})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
