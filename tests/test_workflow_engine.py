"""The DAG engine on its own: validation, parallel branches, caps, control flow, failures, cache."""

import asyncio
import time

import pytest

from workflows import engine
from workflows.nodes.base import Context, NodeError, node_type

pytestmark = pytest.mark.asyncio

STARTED: list[tuple[str, float]] = []
COUNTED: list[str] = []  # the values test_count really ran on (not from the cache)


@node_type("test_sleep", optional=("value",), outputs=("value",))
async def _sleep(ctx, inputs, settings):
    STARTED.append((settings.get("name", ""), time.perf_counter()))
    async with ctx.limit(settings["resource"]) if settings.get("resource") else _nothing():
        await asyncio.sleep(settings.get("seconds", 0.2))
    return {"value": settings.get("value", inputs.get("value"))}


class _nothing:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return False


@node_type("test_fail", optional=("value",), outputs=("value",))
async def _fail(ctx, inputs, settings):
    await asyncio.sleep(settings.get("seconds", 0))
    raise NodeError("it was told to fail")


@node_type("test_count", inputs=("value",), outputs=("value",), cached=True)
async def _count(ctx, inputs, settings):
    COUNTED.append(inputs["value"])
    return {"value": f"{inputs['value']}!"}


def sleepers(k: int, seconds: float, resource: str | None = None) -> dict:
    nodes = [
        {"id": f"b{i}", "type": "test_sleep", "settings": {"seconds": seconds, "value": i, "resource": resource}}
        for i in range(k)
    ]
    nodes.append({"id": "out", "type": "output", "inputs": {f"v{i}": f"b{i}.value" for i in range(k)}})
    return {"nodes": nodes}


async def test_independent_branches_run_at_once():
    began = time.perf_counter()
    result = await engine.execute(sleepers(4, 0.3))
    elapsed = time.perf_counter() - began
    assert result.status == "done" and result.outputs == {"v0": 0, "v1": 1, "v2": 2, "v3": 3}
    assert elapsed < 0.3 * 2  # four 0.3 s branches, not 1.2 s


async def test_a_resource_cap_bounds_how_many_run_together():
    began = time.perf_counter()
    result = await engine.execute(sleepers(4, 0.2, resource="llm"), limits={"llm": 2})
    elapsed = time.perf_counter() - began
    assert result.status == "done"
    assert 0.4 <= elapsed < 0.4 + 0.3  # two at a time: two rounds


async def test_runs_sharing_a_context_keep_their_own_caps_and_leave_it_unchanged():
    ctx = Context(owner_id=1, inputs={"name": "Ana"})
    given = Context(owner_id=1, inputs={"name": "Ana"})
    caps = {"llm": 1}

    async def timed(definition: dict, limits: dict) -> float:
        began = time.perf_counter()
        result = await engine.execute(definition, ctx, limits=limits)
        assert result.status == "done"
        return time.perf_counter() - began

    one_at_a_time, all_at_once = await asyncio.gather(
        timed(sleepers(3, 0.15, resource="llm"), caps), timed(sleepers(3, 0.15, resource="llm"), {"llm": 3})
    )
    assert one_at_a_time >= 0.45 and all_at_once < 0.3  # neither run took the other's semaphores
    assert ctx == given and caps == {"llm": 1}


async def test_a_node_waits_for_all_its_inputs():
    STARTED.clear()
    definition = {
        "nodes": [
            {"id": "slow", "type": "test_sleep", "settings": {"seconds": 0.3, "value": "a", "name": "slow"}},
            {"id": "fast", "type": "test_sleep", "settings": {"seconds": 0.0, "value": "b", "name": "fast"}},
            {
                "id": "join",
                "type": "template",
                "inputs": {"x": "slow.value", "y": "fast.value"},
                "settings": {"template": "{{x}}+{{y}}"},
            },
            {
                "id": "after",
                "type": "test_sleep",
                "inputs": {"value": "join.text"},
                "settings": {"seconds": 0, "name": "after"},
            },
            {"id": "out", "type": "output", "inputs": {"joined": "after.value"}},
        ]
    }
    result = await engine.execute(definition)
    assert result.outputs == {"joined": "a+b"}
    times = dict(STARTED)
    assert times["after"] - times["slow"] >= 0.3


@pytest.mark.parametrize("condition, taken, skipped", [("yes", "t", "f"), ("", "f", "t")])
async def test_if_runs_one_branch_and_coalesce_joins_them(condition, taken, skipped):
    definition = {
        "nodes": [
            {"id": "c", "type": "passthrough", "settings": {"value": condition}},
            {"id": "if", "type": "if", "inputs": {"condition": "c.value"}},
            {"id": "t", "type": "template", "inputs": {"v": "if.true"}, "settings": {"template": "true branch"}},
            {"id": "f", "type": "template", "inputs": {"v": "if.false"}, "settings": {"template": "false branch"}},
            {"id": "join", "type": "coalesce", "inputs": {"a": "t.text", "b": "f.text"}},
            {"id": "out", "type": "output", "inputs": {"answer": "join.value", "t": "t.text"}},
        ]
    }
    result = await engine.execute(definition)
    assert result.status == "done"
    assert result.nodes[taken].status == "done" and result.nodes[skipped].status == "skipped"
    assert result.outputs["answer"] == ("true branch" if taken == "t" else "false branch")
    assert ("t" in result.outputs) == (taken == "t")


async def test_match_and_extract_regex_route_by_content():
    definition = {
        "nodes": [
            {"id": "text", "type": "passthrough", "settings": {"value": "Order 66 from Boston"}},
            {
                "id": "m",
                "type": "match",
                "inputs": {"value": "text.value"},
                "settings": {"cases": ["^Invoice", r"Order \d+"]},
            },
            {
                "id": "num",
                "type": "extract_regex",
                "inputs": {"text": "m.case2"},
                "settings": {"regex": r"Order (\d+) from (\w+)"},
            },
            {"id": "inv", "type": "template", "inputs": {"x": "m.case1"}, "settings": {"template": "invoice"}},
            {
                "id": "out",
                "type": "output",
                "inputs": {"number": "num.output1", "city": "num.output2", "inv": "inv.text"},
            },
        ]
    }
    result = await engine.execute(definition)
    assert result.outputs == {"number": "66", "city": "Boston"}
    assert result.nodes["inv"].status == "skipped"


async def test_a_failed_node_fails_the_run_and_finished_nodes_keep_their_results():
    definition = {
        "nodes": [
            {"id": "quick", "type": "test_sleep", "settings": {"seconds": 0, "value": "kept"}},
            {"id": "boom", "type": "test_fail", "settings": {"seconds": 0.05}},
            {"id": "slow", "type": "test_sleep", "settings": {"seconds": 5}},
            {"id": "later", "type": "template", "inputs": {"x": "boom.value"}, "settings": {"template": "{{x}}"}},
            {"id": "out", "type": "output", "inputs": {"a": "quick.value", "b": "later.text", "c": "slow.value"}},
        ]
    }
    began = time.perf_counter()
    result = await engine.execute(definition)
    assert time.perf_counter() - began < 2  # the 5 s node was cancelled, not waited for
    assert result.status == "failed" and "boom" in result.error and "it was told to fail" in result.error
    assert result.nodes["quick"].status == "done" and result.nodes["quick"].outputs == {"value": "kept"}
    assert result.nodes["slow"].status == "cancelled"
    assert result.nodes["later"].status == "not_run" and result.nodes["out"].status == "not_run"


async def test_validation_names_the_node_before_anything_runs():
    STARTED.clear()
    bad = {
        "nodes": [
            {"id": "ok", "type": "test_sleep", "settings": {"name": "ok"}},
            {"id": "mystery", "type": "summon_demon"},
            {"id": "loose", "type": "llm_chat"},
            {"id": "wrong", "type": "template", "inputs": {"x": "ok.nonexistent"}},
            {"id": "a", "type": "passthrough", "inputs": {"value": "b.value"}},
            {"id": "b", "type": "passthrough", "inputs": {"value": "a.value"}},
        ]
    }
    with pytest.raises(engine.WorkflowInvalid) as failure:
        await engine.execute(bad)
    problems = " | ".join(failure.value.problems)
    assert "node 'mystery': unknown node type 'summon_demon'" in problems
    assert "node 'loose' (llm_chat): input 'prompt' is not connected" in problems
    assert "has no output 'nonexistent'" in problems
    assert STARTED == []
    with pytest.raises(engine.WorkflowInvalid, match="cycle"):
        engine.validate({"nodes": bad["nodes"][-2:]})
    with pytest.raises(engine.WorkflowInvalid, match="no nodes"):
        engine.validate({"nodes": []})


@pytest.mark.services  # the cache is Redis
@pytest.mark.django_db
async def test_repeated_operations_come_from_the_cache():
    definition = {
        "nodes": [
            {"id": "in", "type": "passthrough", "settings": {"value": f"text {time.time()}"}},
            {"id": "c", "type": "test_count", "inputs": {"value": "in.value"}},
            {"id": "out", "type": "output", "inputs": {"v": "c.value"}},
        ]
    }
    ctx = Context()
    first = await engine.execute(definition, ctx)
    second = await engine.execute(definition, ctx)
    assert COUNTED.count(definition["nodes"][0]["settings"]["value"]) == 1
    assert not first.nodes["c"].cache_hit and second.nodes["c"].cache_hit
    assert second.outputs == first.outputs
    assert second.nodes["c"].duration_ms < 50
