"""Workflows against the real local LLM (llama.cpp's server on SmolLM2-135M), and its failures."""

import socket
import time

import pytest

from actions import workflow_runs
from tests.factories import make_transcribed
from workflows import engine
from workflows.builtin import ASK, SUMMARY
from workflows.llm import LLM
from workflows.models import NodeRun, Workflow, WorkflowRun

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

MEETING = [
    "Good morning everyone, this is the weekly planning meeting for the Boston office.",
    "Stella Jones reported that the new website will launch on Friday.",
    "John Smith said the budget for the marketing campaign is still not approved.",
    "The team agreed that Stella will call the printing company in Chicago tomorrow.",
    "Finally, everyone should send their holiday plans to John by the end of the month.",
]


async def test_chat_streams_tokens_and_a_repeat_comes_from_the_cache(llm_server):
    tokens = []

    async def emit(node, message):
        if message["type"] == "token":
            tokens.append((node, message["text"]))

    definition = {
        "nodes": [
            {"id": "q", "type": "passthrough", "settings": {"value": f"Name one colour. ({time.time()})"}},
            {"id": "chat", "type": "llm_chat", "inputs": {"prompt": "q.value"}, "settings": {"max_tokens": 20}},
            {"id": "out", "type": "output", "inputs": {"answer": "chat.response"}},
        ]
    }
    llm = LLM()
    try:
        first = await engine.execute(definition, engine.Context(emit=emit, llm=llm))
        streamed = list(tokens)
        again = await engine.execute(definition, engine.Context(emit=emit, llm=llm))
    finally:
        await llm.close()
    assert first.status == "done" and first.outputs["answer"]
    assert len(streamed) > 1 and {node for node, _ in streamed} == {"chat"}
    assert "".join(t for _, t in streamed).strip() == first.outputs["answer"]
    assert again.nodes["chat"].cache_hit and again.outputs == first.outputs
    assert again.nodes["chat"].duration_ms * 50 < first.nodes["chat"].duration_ms
    assert len(tokens) == len(streamed)  # nothing streamed for the cached answer


@pytest.mark.services  # the cache is Redis
async def test_an_unreachable_server_is_retried_then_fails_the_node_with_its_reason(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    settings.LLM_RETRIES = 3
    definition = {
        "nodes": [
            {"id": "q", "type": "passthrough", "settings": {"value": "hi"}},
            {"id": "chat", "type": "llm_chat", "inputs": {"prompt": "q.value"}},
            {"id": "words", "type": "keywords", "inputs": {"text": "q.value"}},
        ]
    }
    llm = LLM(base_url=f"http://127.0.0.1:{port}/v1")
    try:
        result = await engine.execute(definition, engine.Context(llm=llm))
    finally:
        await llm.close()
    assert result.status == "failed"
    assert "did not answer" in result.nodes["chat"].error and result.nodes["chat"].attempts == 3
    assert result.nodes["words"].status == "done"  # finished nodes keep their results


async def test_the_builtin_workflow_summarises_and_fills_the_graph(llm_server, alice):
    recording = await make_transcribed_async(alice, "planning", MEETING)
    workflow = await Workflow.objects.aget(owner__isnull=True, key=SUMMARY)
    run = await WorkflowRun.objects.acreate(workflow=workflow, owner=alice, recording=recording)
    run = await workflow_runs.execute(run.id)
    assert run.status == "done", run.error
    outputs = run.outputs
    assert outputs["summary"] and outputs["summary_method"] in ("llm", "extractive")
    text = " ".join(MEETING).lower()
    assert len(outputs["keywords"]) >= 3 and all(k in text for k in outputs["keywords"])
    names = {e["name"] for e in outputs["entities"]}
    assert {"John Smith", "Boston", "Chicago"} <= names
    assert all(name in " ".join(MEETING) for name in names)  # nothing invented
    assert not names & {"Good morning everyone", "The team"}
    assert outputs["written"] == len(outputs["entities"])
    statuses = {n.node_id: (n.status, n.cache_hit) async for n in NodeRun.objects.filter(run=run)}
    assert all(status == "done" for status, _ in statuses.values()), statuses
    await recording.arefresh_from_db()
    assert {e["name"] for e in recording.knowledge["entities"]} == names


async def make_transcribed_async(user, title, texts):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_transcribed)(user, title, texts)


async def test_asking_about_my_recordings_answers_from_the_matching_segments(llm_server, alice, bob):
    from asgiref.sync import sync_to_async

    from graph import writes

    mine = await make_transcribed_async(alice, "planning", MEETING)
    theirs = await make_transcribed_async(bob, "bob's", ["The printing company in Chicago is closed."])
    await sync_to_async(writes.write_recording)(mine.id)
    await sync_to_async(writes.write_recording)(theirs.id)
    workflow = await Workflow.objects.aget(owner__isnull=True, key=ASK)
    run = await WorkflowRun.objects.acreate(
        workflow=workflow, owner=alice, inputs={"question": "Who will call the printing company?"}
    )
    run = await workflow_runs.execute(run.id)
    assert run.status == "done", run.error
    used = run.outputs["segments"]
    assert used and used[0]["text"] == MEETING[3]  # the segment that says it, first
    assert all(s["recording"] == str(mine.id) for s in used)  # never Bob's
    assert run.outputs["answer"]


@pytest.mark.parametrize("status, retried", [(429, True), (500, True), (503, True), (400, False), (401, False)])
async def test_only_transient_failures_are_retried(status, retried):
    import httpx2 as httpx
    import openai

    from workflows.llm import is_transient

    response = httpx.Response(status, request=httpx.Request("POST", "http://llm/v1/chat/completions"))
    error = {
        429: openai.RateLimitError,
        500: openai.InternalServerError,
        503: openai.InternalServerError,
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
    }[status]("failed", response=response, body=None)
    assert is_transient(error) is retried


async def test_long_text_is_cut_into_pieces_that_fit_the_context(settings):
    from workflows import tokens

    text = " ".join(MEETING * 40)  # ~3,000 tokens: more than the 2,048 context
    budget = tokens.prompt_budget(200)
    pieces = tokens.chunks(text, budget)
    assert tokens.count(text) > settings.LLM_CONTEXT_TOKENS and len(pieces) >= 2
    assert all(tokens.count(p) <= budget for p in pieces)
    assert " ".join(pieces).split() == text.split()  # nothing lost, nothing repeated
    assert all(p.rstrip().endswith(".") for p in pieces)  # cut at sentence ends
    assert tokens.count(tokens.truncate(text, 100)) <= 100
    assert tokens.count("Stella Jones reported") == len(
        tokens._vocabulary().tokenize(b"Stella Jones reported", add_bos=False)
    )
