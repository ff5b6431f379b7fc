"""/healthz: each part the app needs, and a 503 naming the one that is down."""

import socket

import pytest
from django.urls import reverse

pytestmark = pytest.mark.services  # it checks Redis and Neo4j


def test_every_part_answers(client, db, llm_server):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"database": True, "redis": True, "neo4j": True, "llm": True}


def test_a_part_that_is_down_is_named(client, db, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    settings.LLM_BASE_URL = f"http://127.0.0.1:{port}/v1"
    response = client.get(reverse("healthz"))
    assert response.status_code == 503 and response.json()["llm"] is False
    assert response.json()["neo4j"] is True
