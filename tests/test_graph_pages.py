"""The graph's pages and API: what Alice sees, what Bob never sees, and Neo4j being away."""

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from neomodel import db

from accounts.models import ApiToken
from graph import writes
from graph.connection import configure
from tests.factories import make_transcribed

pytestmark = pytest.mark.services  # Neo4j, and Redis for the cache


@pytest.fixture
def standup(alice):
    recording = make_transcribed(
        alice, "standup", ["Today Stella met John Smith in Boston.", "The budget for <b>Boston</b> is late."]
    )
    writes.write_recording(recording.id)
    return recording


def entity_uid(name: str) -> str:
    return db.cypher_query("MATCH (e:Entity {name: $name}) RETURN e.uid", {"name": name})[0][0][0]


def bearer(user):
    return {"Authorization": f"Bearer {ApiToken.issue(user, 'test')[1]}"}


def test_the_search_page_highlights_and_links_to_the_moment(client, alice, standup):
    client.force_login(alice)
    html = client.get(reverse("graph-search"), {"q": "budget"}).content.decode()
    assert "The <mark>budget</mark> for &lt;b&gt;Boston&lt;/b&gt; is late." in html  # escaped, then marked
    assert f'href="/recordings/{standup.id}/#t=2.0"' in html
    html = client.get(reverse("graph-search"), {"q": "stella"}).content.decode()
    assert f'href="/graph/entities/{entity_uid("Stella")}"' in html


def test_another_user_finds_nothing_of_mine_anywhere(client, alice, bob, standup):
    stella = entity_uid("Stella")
    client.force_login(bob)
    found = client.get(reverse("graph-search"), {"q": "budget"})
    assert found.context["page"]["segments"] == [] and "<mark>" not in found.content.decode()
    assert client.get(reverse("graph-entity", args=[stella])).status_code == 404
    assert client.get(reverse("graph-recording", args=[standup.id])).status_code == 404
    assert client.get(reverse("graph-explore"), {"node": f"recording:{standup.id}"}).status_code == 404
    assert client.get(reverse("graph-neighbours"), {"node": f"entity:{stella}"}).status_code == 404
    assert client.get(reverse("recording-audio", args=[standup.id])).status_code == 404

    api = client.__class__(headers=bearer(bob))
    assert api.get("/api/search", {"q": "budget"}).json() == {"segments": [], "entities": [], "next_cursor": None}
    assert api.get(f"/api/entities/{stella}").status_code == 404
    assert api.get(f"/api/recordings/{standup.id}/graph").status_code == 404
    assert api.get("/api/graph/neighbours", {"node": f"entity:{stella}"}).status_code == 404


def test_pages_need_a_login(client, standup):
    for url in (
        reverse("graph-search") + "?q=x",
        reverse("graph-entity", args=["abc"]),
        reverse("graph-explore") + "?node=recording:1",
        reverse("graph-neighbours") + "?node=recording:1",
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get("/api/search", {"q": "budget"}).status_code == 401


def test_my_pages_show_the_graph(client, alice, standup):
    client.force_login(alice)
    stella = entity_uid("Stella")
    entity = client.get(reverse("graph-entity", args=[stella])).content.decode()
    assert "Stella" in entity and "John Smith" in entity and f"/recordings/{standup.id}/#t=0.0" in entity
    fragment = client.get(reverse("graph-recording", args=[standup.id])).content.decode()
    assert "John Smith" in fragment and f"node=recording:{standup.id}" in fragment
    explore = client.get(reverse("graph-explore"), {"node": f"recording:{standup.id}"})
    assert explore.status_code == 200 and b"dist/graph.js" in explore.content
    data = client.get(reverse("graph-neighbours"), {"node": f"recording:{standup.id}"}).json()
    assert {n["label"] for n in data["nodes"]} >= {"standup", "Stella", "John Smith", "Boston"}
    assert client.get(reverse("graph-neighbours"), {"node": "user:1"}).status_code == 400
    assert client.get(reverse("graph-explore"), {"node": "nonsense"}).status_code == 400


def test_the_api_searches_with_a_cursor(client, alice, standup):
    api = client.__class__(headers=bearer(alice))
    first = api.get("/api/search", {"q": "boston", "limit": 1}).json()
    assert len(first["segments"]) == 1 and first["next_cursor"]
    assert first["entities"][0]["name"] == "Boston"
    second = api.get("/api/search", {"q": "boston", "limit": 1, "cursor": first["next_cursor"]}).json()
    assert second["segments"][0]["index"] != first["segments"][0]["index"] and not second["next_cursor"]
    assert api.get("/api/search", {"q": "boston", "cursor": "garbage"}).status_code == 400
    assert api.get("/api/search").status_code == 422
    graph = api.get(f"/api/recordings/{standup.id}/graph").json()
    assert "Stella" in {e["name"] for e in graph["entities"]}


def test_neo4j_away_is_a_clear_503_not_an_error(client, alice, standup, settings):
    client.force_login(alice)
    real_url = settings.NEO4J_BOLT_URL
    settings.NEO4J_BOLT_URL = "bolt://neo4j:neo4j@127.0.0.1:1"
    configure()
    try:
        page = client.get(reverse("graph-search"), {"q": "neo4j-down-check"})
        assert page.status_code == 503 and b"recordings and\n     transcripts are safe" in page.content
        assert client.get(reverse("graph-neighbours"), {"node": "recording:99"}).status_code == 503
        api = client.__class__(headers=bearer(alice))
        assert api.get("/api/search", {"q": "neo4j-down-check"}).status_code == 503
        # The recording itself does not need Neo4j.
        assert client.get(reverse("recording-detail", args=[standup.id])).status_code == 200
    finally:
        settings.NEO4J_BOLT_URL = real_url
        configure()


def test_the_audio_plays_from_any_point(client, alice):
    recording = make_transcribed(alice, "audio", ["Hello."])
    recording.audio.save("a.wav", ContentFile(bytes(range(256)) * 4), save=True)
    client.force_login(alice)
    url = reverse("recording-audio", args=[recording.id])
    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == bytes(range(256)) * 4
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == bytes(range(10, 20))
    assert part["Content-Range"] == "bytes 10-19/1024"
    tail = client.get(url, headers={"Range": "bytes=-4"})
    assert tail.content == bytes([252, 253, 254, 255])
    assert client.get(url, headers={"Range": "bytes=5000-"}).status_code == 416
    page = client.get(reverse("recording-detail", args=[recording.id])).content.decode()
    assert f'src="{url}"' in page and 'href="#t=0.0"' in page
