"""Nodes without a language model: inputs, templates, keywords, control flow, outputs."""

import re
from typing import Any

import orjson
from asgiref.sync import sync_to_async

from graph import extraction

from . import patterns
from .base import NOT_RAN, NodeError, node_type
from .limits import joined

PLACEHOLDER = re.compile(r"\{\{\s*([\w .-]+?)\s*\}\}")


def as_text(value) -> str:
    if value is None or value is NOT_RAN:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def fill_placeholders(template: str, values: dict) -> str:
    """`{{name}}` replaced by the value of input `name` (unknown names are left as they are);
    NodeError if the result would be over WORKFLOW_MAX_VALUE_CHARS (measured before it is built)."""
    texts: dict[str, str] = {}  # each value as text once, however often the template uses it
    pieces, end = [], 0
    for m in PLACEHOLDER.finditer(template):
        name = m.group(1)
        pieces.append(template[end : m.start()])
        if name in values:
            if name not in texts:
                texts[name] = as_text(values[name])
            pieces.append(texts[name])
        else:
            pieces.append(m.group(0))
        end = m.end()
    pieces.append(template[end:])
    return joined(pieces, "the filled template")


def _transcript_of(owner_id: int, recording_id: int) -> dict:
    from transcription.models import Recording

    recording = (
        Recording.objects.owned_by_id(owner_id)
        .select_related("transcript")
        .filter(pk=recording_id, status=Recording.Status.DONE)
        .first()
    )
    if recording is None or not hasattr(recording, "transcript"):
        raise NodeError(f"recording {recording_id} has no transcript (or is not yours)")
    segments = list(recording.transcript.segments.values("index", "start", "end", "text"))
    return {"text": recording.transcript.text, "segments": segments, "title": recording.title}


@node_type("transcript", outputs=("text", "segments", "title"))
async def transcript(ctx, inputs, settings):
    """The run's recording (or settings.recording): its text, timed segments and title."""
    recording_id = settings.get("recording") or ctx.recording_id
    if not recording_id:
        raise NodeError("no recording to read: run the workflow on a recording")
    return await sync_to_async(_transcript_of)(ctx.owner_id, int(recording_id))


@node_type("input", outputs=("value",))
async def run_input(ctx, inputs, settings):
    """A value given when the run starts (settings.name), or settings.default."""
    name = settings.get("name", "input")
    return {"value": ctx.inputs.get(name, settings.get("default", ""))}


@node_type("template", any_inputs=True, outputs=("text",))
async def template(ctx, inputs, settings):
    """settings.template with each {{name}} replaced by input `name`."""
    return {"text": fill_placeholders(settings.get("template", ""), inputs)}


@node_type("keywords", inputs=("text",), outputs=("keywords",))
async def keywords(ctx, inputs, settings):
    """Key phrases of the text (YAKE: statistical, no model), best first."""
    found = extraction.topics(as_text(inputs["text"]), limit=int(settings.get("limit", 8)))
    return {"keywords": [phrase for phrase, _ in found]}


@node_type("passthrough", optional=("value",), outputs=("value",))
async def passthrough(ctx, inputs, settings):
    """Its input, unchanged (or settings.value): for joining branches, and for measuring the engine."""
    return {"value": inputs.get("value", settings.get("value"))}


def truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "null", "none")
    return bool(value)


@node_type("if", inputs=("condition",), optional=("value",), outputs=("true", "false"))
async def if_node(ctx, inputs, settings):
    """Passes `value` (or the condition) on `true` or `false`; the other branch does not run."""
    value = inputs.get("value", inputs["condition"])
    if truthy(inputs["condition"]):
        return {"true": value, "false": NOT_RAN}
    return {"true": NOT_RAN, "false": value}


@node_type("match", inputs=("value",), any_outputs=True)
async def match(ctx, inputs, settings):
    """Sends `value` to the first of settings.cases (regular expressions) it matches: output
    case1, case2…, or `unmatched`. Only that branch runs."""
    text = as_text(inputs["value"])
    cases = settings.get("cases") or []
    outputs = {f"case{i + 1}": NOT_RAN for i in range(len(cases))} | {"unmatched": NOT_RAN}
    for i, source in enumerate(cases):
        try:
            pattern = patterns.compile_pattern(source)
        except patterns.error as exc:
            raise NodeError(f"case {i + 1} is not a valid regular expression: {exc}") from None
        if patterns.search(pattern, text):
            outputs[f"case{i + 1}"] = inputs["value"]
            return outputs
    outputs["unmatched"] = inputs["value"]
    return outputs


@node_type("coalesce", any_inputs=True, takes_not_ran=True, outputs=("value",))
async def coalesce(ctx, inputs, settings):
    """The first input (by port name, input2 before input10) that ran and is not empty."""
    natural = lambda port: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", port)]  # noqa: E731
    for port in sorted(inputs, key=natural):
        if inputs[port] is not NOT_RAN and inputs[port] not in (None, ""):
            return {"value": inputs[port]}
    return {"value": NOT_RAN}


@node_type("extract_regex", inputs=("text",), any_outputs=True)
async def extract_regex(ctx, inputs, settings):
    """settings.regex applied to the text: capture groups on output1, output2…; `matches` (all
    matches of the first group), `succeeded` / `failed` (the other is not run)."""
    try:
        flags = patterns.MULTILINE if settings.get("multiline") else 0
        pattern = patterns.compile_pattern(settings.get("regex", ""), flags)
    except patterns.error as exc:
        raise NodeError(f"not a valid regular expression: {exc}") from None
    text = as_text(inputs["text"])
    found = patterns.search(pattern, text)
    outputs: dict[str, Any] = {f"output{i + 1}": NOT_RAN for i in range(pattern.groups)}
    if found is None:
        return outputs | {"matches": [], "succeeded": NOT_RAN, "failed": text}
    for i in range(pattern.groups):
        outputs[f"output{i + 1}"] = found.group(i + 1)
    matches = [m.group(1) if pattern.groups else m.group(0) for m in patterns.find_all(pattern, text)]
    return outputs | {"matches": matches, "succeeded": text, "failed": NOT_RAN}


@node_type("output", any_inputs=True, takes_not_ran=True)
async def output(ctx, inputs, settings):
    """The run's results: each connected input under its port name (branches not run are left out)."""
    return {port: value for port, value in inputs.items() if value is not NOT_RAN}
