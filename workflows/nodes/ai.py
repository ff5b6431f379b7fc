"""Nodes that ask the language model: chat, summarise (map-reduce), extract entities (JSON).

Every request holds the run's "llm" slot (settings.LLM_MAX_CONCURRENCY), streams its tokens to the
run's page, and fits the model's context (tokens.py). The small default model is weak, so each
node also has a non-LLM answer it falls back to (extractive summary, capitalised-name entities).
"""

import re

import orjson
from django.conf import settings as django_settings
from pydantic import BaseModel, Field, ValidationError

from graph import extraction

from .. import tokens
from .base import NodeContext, NodeError, node_type
from .text import as_text


async def ask(
    ctx: NodeContext,
    messages: list[dict],
    *,
    max_tokens: int,
    temperature: float = 0.2,
    json_schema: dict | None = None,
    stream: bool = True,
) -> str:
    """One LLM request within the run's concurrency cap; its tokens are sent to the page, and the
    attempts it took are the node's (the last request's, when a node asks several times)."""
    if ctx.llm is None:
        raise NodeError("no language model is configured for this run")
    # Whatever a workflow asks for, the model writes at most its context's worth of tokens.
    max_tokens = max(1, min(int(max_tokens), django_settings.LLM_CONTEXT_TOKENS))

    async def on_token(token: str) -> None:
        await ctx.send({"type": "token", "text": token})

    async def on_retry(attempt: int) -> None:
        ctx.attempts = attempt  # kept if this request fails for good
        await ctx.send({"type": "retry", "attempt": attempt})  # the page drops the partial text

    async with ctx.limit("llm"):
        text, attempts = await ctx.llm.chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            json_schema=json_schema,
            on_token=on_token if stream else None,
            on_retry=on_retry,
        )
    ctx.attempts = attempts
    return text.strip()


@node_type("llm_chat", inputs=("prompt",), optional=("system",), outputs=("response",), cached=True)
async def llm_chat(ctx, inputs, settings):
    """The model's reply to `prompt` (and `system`), streamed to the page as it is written."""
    max_tokens = int(settings.get("max_tokens", 200))
    system = as_text(inputs.get("system")) or settings.get("system", "You are a concise, helpful assistant.")
    budget = tokens.prompt_budget(max_tokens, overhead_tokens=tokens.count(system) + 16)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": tokens.truncate(as_text(inputs["prompt"]), budget)},
    ]
    response = await ask(ctx, messages, max_tokens=max_tokens, temperature=float(settings.get("temperature", 0.2)))
    return {"response": response}


def extractive_summary(text: str, sentences: int = 3) -> str:
    """The sentences that carry the most of the text's key phrases, in their original order."""
    parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    if len(parts) <= sentences:
        return " ".join(parts)
    phrases = extraction.topics(text, limit=12)

    def score(sentence: str) -> float:
        lower = sentence.lower()
        return sum(weight for phrase, weight in phrases if phrase in lower) / (1 + len(sentence) / 400)

    best = sorted(range(len(parts)), key=lambda i: -score(parts[i]))[:sentences]
    return " ".join(parts[i] for i in sorted(best))


def usable(answer: str, source: str) -> bool:
    """Not empty, not a loop, not longer than what it summarises: the small model fails in these ways."""
    words = answer.split()
    if len(words) < 3 or len(answer) > max(len(source), 200) * 1.2:
        return False
    if len(source) > 400 and len(answer) > 0.8 * len(source):  # copied out, not summarised
        return False
    return len(set(words)) / len(words) > 0.4


SUMMARY_SYSTEM = "You summarise transcripts. Reply with the summary only."


@node_type("summarise", inputs=("text",), outputs=("summary", "extractive", "method"), cached=True)
async def summarise(ctx, inputs, settings):
    """A short summary of a text of any length: map-reduce over chunks that fit the model's context
    (each chunk summarised, then the summaries summarised). Falls back to an extractive summary
    when the model's answer is unusable."""
    text = as_text(inputs["text"]).strip()
    extractive = extractive_summary(text)
    if not text:
        return {"summary": "", "extractive": "", "method": "empty"}
    max_tokens = int(settings.get("max_tokens", 120))
    budget = tokens.prompt_budget(max_tokens, overhead_tokens=tokens.count(SUMMARY_SYSTEM) + 24)
    pieces = tokens.chunks(text, budget)
    for _round in range(4):  # each round shrinks the text several-fold; 4 covers hours of speech
        summaries = []
        for piece in pieces:
            messages = [
                {"role": "system", "content": SUMMARY_SYSTEM},
                {"role": "user", "content": f"Summarise in two sentences:\n\n{piece}"},
            ]
            answer = await ask(ctx, messages, max_tokens=max_tokens, stream=len(pieces) == 1)
            summaries.append(answer if usable(answer, piece) else extractive_summary(piece, 2))
        if len(summaries) == 1:
            break
        pieces = tokens.chunks(" ".join(summaries), budget)
    summary = summaries[0] if len(summaries) == 1 else " ".join(summaries)
    method = "llm" if usable(summary, text) and summary != extractive else "extractive"
    return {"summary": summary if method == "llm" else extractive, "extractive": extractive, "method": method}


ENTITY_TYPES = ["person", "place", "organization", "product", "event", "other"]
ENTITY_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ENTITY_TYPES}},
                "required": ["name", "type"],
            },
        }
    },
    "required": ["entities"],
}


class ExtractedEntity(BaseModel):
    name: str = Field(min_length=2, max_length=80)
    type: str


class Extracted(BaseModel):
    entities: list[ExtractedEntity]


def is_name_in(name: str, text: str) -> bool:
    """The small model also "finds" phrases like "The team": keep only names written in the text
    as names (as given, every word capitalised but joiners, not opening with a common word)."""
    words = name.split()
    if not words or name not in text or words[0].lower() in extraction.COMMON:
        return False
    return all(w[0].isupper() or w in extraction.JOINERS for w in words)


ENTITY_SYSTEM = "You list the named people, places, organizations and products in a text, as JSON."


@node_type("extract_entities", inputs=("text",), outputs=("entities",), cached=True)
async def extract_entities(ctx, inputs, settings):
    """Named things in the text with their types: the model's JSON-constrained answer, validated and
    kept only where the name really occurs in the text, merged with the capitalised-name fallback."""
    text = as_text(inputs["text"])
    found: dict[str, dict] = {}
    if settings.get("use_llm", True) and text.strip():
        budget = tokens.prompt_budget(300, overhead_tokens=tokens.count(ENTITY_SYSTEM) + 40)
        for piece in tokens.chunks(text, budget)[: int(settings.get("max_chunks", 8))]:
            messages = [
                {"role": "system", "content": ENTITY_SYSTEM},
                {"role": "user", "content": f"Text:\n{piece}\n\nList its named entities."},
            ]
            raw = await ask(ctx, messages, max_tokens=300, temperature=0.0, json_schema=ENTITY_SCHEMA, stream=False)
            try:
                extracted = Extracted.model_validate(orjson.loads(raw))
            except (orjson.JSONDecodeError, ValidationError):
                continue  # a malformed answer: the fallback below still finds names
            for entity in extracted.entities:
                key = extraction.normalise(entity.name)
                if entity.type in ENTITY_TYPES and key not in found and is_name_in(entity.name.strip(), text):
                    found[key] = {"name": entity.name.strip(), "type": entity.type, "source": "llm"}
    for named in extraction.entities(re.split(r"(?<=[.!?])\s+", text)):
        found.setdefault(named.key, {"name": named.name, "type": "other", "source": "names"})
    return {"entities": list(found.values())}
