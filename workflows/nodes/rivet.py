"""Node types for imported Rivet projects (the importer, and how it differs from Rivet, is in
workflows/rivet.py).

Values keep Rivet's shapes: a chat message is `{"type": "user", "message": "..."}`. A port that a
Rivet node does not emit (e.g. extractRegex's groups after a failed match) carries None here,
Rivet's `undefined`: downstream nodes still run with it. NOT_RAN is Rivet's control-flow-excluded.

Nodes of an inlined subgraph get one extra input, `_gate`, from their subGraph node: when that
node did not run, neither does any node of its graph, not even those that take NOT_RAN.
"""

import math
import re

import orjson
from django.conf import settings as django_settings

from .. import tokens
from .ai import ask
from .base import NOT_RAN, NodeError, node_type

GATE = "_gate"

# `{{{name}}}` is a literal `{{name}}`; `{{ name }}` is a variable (trimmed, as newer Rivet does).
ESCAPED = re.compile(r"\{\{\{([^{}]+)\}\}\}")
TOKEN = re.compile(r"\{\{([^{}]+?)\}\}")


def text_of(value) -> str:
    """A value as Rivet coerces it to a string: a chat message is its text, a list its items on
    lines, true/false in lower case, missing values are ''."""
    if value is None or value is NOT_RAN:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))  # JavaScript has one number type: 2.0 prints as 2
    if is_message(value):
        return text_of(value["message"])
    if isinstance(value, (list, tuple)):
        return "\n".join(text_of(item) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def is_message(value) -> bool:
    return isinstance(value, dict) and "type" in value and "message" in value


def _token_name(inner: str) -> str:
    return inner.split("|", 1)[0].strip()


def interpolation_names(template: str) -> list[str]:
    """The input ports a text or prompt node has: one per distinct `{{name}}`, in order."""
    names = (_token_name(m.group(1)) for m in TOKEN.finditer(ESCAPED.sub("", template or "")))
    return list(dict.fromkeys(name for name in names if name and not name.startswith("@")))


def interpolation_problems(template: str) -> list[str]:
    """Tokens this app cannot fill: `| filters` and `@graphInputs` / `@context` references."""
    found = []
    for m in TOKEN.finditer(ESCAPED.sub("", template or "")):
        inner = m.group(1)
        if "|" in inner or inner.strip().startswith("@"):
            found.append(m.group(0))
    return list(dict.fromkeys(found))


def interpolate(template: str, values: dict) -> str:
    """Each `{{name}}` replaced by input `name` as a string ('' when it is missing)."""
    parts = ESCAPED.split(template or "")  # even: text to fill; odd: the inside of an escaped token
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append("{{" + part + "}}")
        else:
            out.append(TOKEN.sub(lambda m: text_of(values.get(_token_name(m.group(1)))), part))
    return "".join(out)


JS_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")  # (?<name> but not the look-behinds (?<= (?<!
JS_BACKREFERENCE = re.compile(r"\\k<(\w+)>")


def js_regex(source: str, multiline: bool = False) -> re.Pattern:
    """A JavaScript regular expression (Rivet's syntax) compiled for Python; re.error if invalid."""
    source = JS_BACKREFERENCE.sub(r"(?P=\1)", JS_NAMED_GROUP.sub("(?P<", str(source)))
    return re.compile(source, re.MULTILINE if multiline else 0)


def rivet_node(name: str, *, optional: tuple = (), outputs: tuple = (), **spec):
    """node_type() plus the `_gate` input of inlined subgraphs. The engine already skips a node
    when an input did not run; nodes that take NOT_RAN check the gate here."""

    def register(run):
        async def gated(ctx, inputs, settings):
            inputs = dict(inputs)
            if inputs.pop(GATE, None) is NOT_RAN:
                return {port: NOT_RAN for port in outputs}
            return await run(ctx, inputs, settings)

        gated.__doc__ = run.__doc__
        node_type(name, optional=(*optional, GATE), outputs=outputs, **spec)(gated)
        return run

    return register


@rivet_node("rivet_text", any_inputs=True, outputs=("output",))
async def text(ctx, inputs, settings):
    """Rivet text: settings.text with each {{name}} replaced by input `name` ('' if missing)."""
    return {"output": interpolate(settings.get("text", ""), inputs)}


MESSAGE_TYPES = ("system", "user", "assistant")


@rivet_node("rivet_prompt", any_inputs=True, outputs=("output", "tokenCount"))
async def prompt(ctx, inputs, settings):
    """Rivet prompt: a chat message {type, message} whose text is settings.promptText, interpolated."""
    values = dict(inputs)
    kind = settings.get("type") or "user"
    if settings.get("useTypeInput"):
        kind = text_of(values.pop("type", None)) or kind
    name = settings.get("name") or ""
    if settings.get("useNameInput"):
        name = text_of(values.pop("name", None)) or name
    if kind not in MESSAGE_TYPES:
        raise NodeError(f"message type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}")
    message = {"type": kind, "message": interpolate(settings.get("promptText", ""), values)}
    if name:
        message["name"] = name
    result = {"output": message}
    if settings.get("computeTokenCount"):
        result["tokenCount"] = tokens.count(message["message"])
    return result


# Chat inputs a Rivet chat node may have (its `useXInput` settings). Only temperature and
# maxTokens change the request; the others are accepted so that projects load, and ignored.
CHAT_PARAMETER_INPUTS = (
    "model",
    "temperature",
    "top_p",
    "useTopP",
    "maxTokens",
    "stop",
    "presencePenalty",
    "frequencyPenalty",
    "user",
    "numberOfChoices",
    "endpoint",
    "headers",
    "seed",
    "toolChoice",
    "toolChoiceFunction",
    "responseFormat",
    "additionalParameters",
    "responseSchemaName",
    "audioVoice",
    "audioFormat",
    "reasoningEffort",
)


def chat_messages(prompt, system) -> list[dict]:
    """Rivet's message list: the prompt (message, string, or a list of either), with the system
    prompt, when given, first (replacing a system message the prompt began with)."""
    items = prompt if isinstance(prompt, (list, tuple)) else [prompt]
    messages = []
    for item in items:
        if item is None or item is NOT_RAN:
            continue
        if is_message(item):
            messages.append({"type": str(item["type"]), "message": text_of(item["message"])})
        else:
            messages.append({"type": "user", "message": text_of(item)})
    system_text = text_of(system)
    if system_text:
        if messages and messages[0]["type"] == "system":
            messages.pop(0)
        messages.insert(0, {"type": "system", "message": system_text})
    return messages


def _number(value, default: float, what: str) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise NodeError(f"{what} must be a number, not {value!r}") from None


@rivet_node(
    "rivet_chat",
    inputs=("prompt",),
    optional=("systemPrompt", *CHAT_PARAMETER_INPUTS),
    outputs=("response", "in-messages", "all-messages", "responseTokens"),
    cached=True,
)
async def chat(ctx, inputs, settings):
    """Rivet chat: the model's reply to the prompt messages. The app's model answers whatever model
    the project names; maxTokens and temperature are honoured, the other sampling settings are not."""
    messages = chat_messages(inputs.get("prompt"), inputs.get("systemPrompt"))
    if not messages:
        raise NodeError("the prompt is empty")
    for message in messages:
        if message["type"] not in MESSAGE_TYPES:
            raise NodeError(f"message type {message['type']!r} is not one of {', '.join(MESSAGE_TYPES)}")
    max_tokens = settings.get("maxTokens", 1024)
    if settings.get("useMaxTokensInput") and "maxTokens" in inputs:
        max_tokens = inputs["maxTokens"]
    temperature = settings.get("temperature", 0.5)
    if settings.get("useTemperatureInput") and "temperature" in inputs:
        temperature = inputs["temperature"]
    max_tokens = int(_number(max_tokens, 1024, "maxTokens"))
    max_tokens = max(1, min(max_tokens, django_settings.LLM_CONTEXT_TOKENS))  # the model cannot write more
    response = await ask(
        ctx,
        [{"role": m["type"], "content": m["message"]} for m in messages],
        max_tokens=max_tokens,
        temperature=_number(temperature, 0.5, "temperature"),
    )
    return {
        "response": response,
        "in-messages": messages,
        "all-messages": [*messages, {"type": "assistant", "message": response}],
        "responseTokens": tokens.count(response) if response else 0,
    }


def coerce(value, data_type: str):
    """A graph input as its declared Rivet data type (strings, numbers, booleans, arrays; others as given)."""
    if data_type == "string":
        return text_of(value)
    if data_type == "number":
        if isinstance(value, bool):
            return int(value)
        number = _number(value, 0, "the input")
        return int(number) if number.is_integer() else number
    if data_type == "boolean":
        if isinstance(value, str):
            return value.strip().lower() not in ("", "false")
        return bool(value)
    if data_type.endswith("[]") and not isinstance(value, list):
        return [value]
    return value


def type_default(data_type: str):
    if data_type.endswith("[]"):
        return []
    return {"string": "", "number": 0, "boolean": False}.get(data_type)


@rivet_node("rivet_graph_input", optional=("value", "default"), outputs=("data",))
async def graph_input(ctx, inputs, settings):
    """Rivet graphInput: the run's input named settings.id (in a subgraph: what the subGraph node
    was given), else the `default` input, else settings.defaultValue."""
    if settings.get("inlined"):
        value = inputs.get("value", settings.get("callerValue"))
    else:
        value = ctx.inputs.get(settings.get("id"))
    if value is None:
        value = inputs.get("default")
    if value is None:
        value = settings.get("defaultValue")
    data_type = settings.get("dataType") or "string"
    return {"data": type_default(data_type) if value is None else coerce(value, data_type)}


@rivet_node("rivet_graph_output", optional=("value",), outputs=("valueOutput",), takes_not_ran=True)
async def graph_output(ctx, inputs, settings):
    """Rivet graphOutput: passes its value on (not-ran stays not-ran) to the run's output settings.id."""
    return {"valueOutput": inputs.get("value")}


@rivet_node("rivet_subgraph", any_inputs=True, outputs=("ran",))
async def subgraph(ctx, inputs, settings):
    """Rivet subGraph: the graph's nodes are inlined after it; this node only runs when all its
    inputs ran, and the inlined nodes wait for it (so a branch not taken skips the whole graph)."""
    return {"ran": True}


@rivet_node(
    "rivet_extract_regex",
    inputs=("input",),
    optional=("regex",),
    any_outputs=True,
    outputs=("matches", "succeeded", "failed"),
)
async def extract_regex(ctx, inputs, settings):
    """Rivet extractRegex: groups of the first match on output1…, group 1 of every match on
    `matches`, and succeeded / failed (booleans). After a failed match the groups are None."""
    source = settings.get("regex", "")
    if settings.get("useRegexInput") and "regex" in inputs:
        source = text_of(inputs["regex"])
    try:
        pattern = js_regex(source, settings.get("multilineMode", False))
    except re.error as exc:
        raise NodeError(f"not a valid regular expression {source!r}: {exc}") from None
    text = text_of(inputs["input"])
    found = list(pattern.finditer(text))
    count = max(pattern.groups, int(settings.get("outputs", 0)))
    outputs = {f"output{i}": None for i in range(1, count + 1)} | {"matches": None}
    if not found:
        if settings.get("errorOnFailed"):
            raise NodeError(f"{source!r} does not match the input")
        return outputs | {"succeeded": False, "failed": True}
    first = found[0]
    for i in range(1, pattern.groups + 1):
        outputs[f"output{i}"] = first.group(i)
    matches = [m.group(1) for m in found if pattern.groups and m.group(1)]
    return outputs | {"matches": matches, "succeeded": True, "failed": False}


def rivet_truthy(value) -> bool:
    """Rivet's if: false for missing / not-ran / '' / false / an empty message or list; anything
    else (0 and "false" too) is true."""
    if value is None or value is NOT_RAN or value is False or value == "":
        return False
    if is_message(value):
        return text_of(value) != ""
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return True


@rivet_node("rivet_if", optional=("if", "value"), outputs=("output", "falseOutput"), takes_not_ran=True)
async def if_node(ctx, inputs, settings):
    """Rivet if: `value` on `output` when `if` is true, else on `falseOutput`; the other is not run.
    With no value, the taken branch gets not-run (settings.unconnectedControlFlowExcluded) or None."""
    value = inputs.get("value")
    if value is None:
        value = NOT_RAN if settings.get("unconnectedControlFlowExcluded") else None
    if rivet_truthy(inputs.get("if")):
        return {"output": value, "falseOutput": NOT_RAN}
    return {"output": NOT_RAN, "falseOutput": value}


@rivet_node("rivet_match", inputs=("input",), optional=("value",), any_outputs=True, outputs=("unmatched",))
async def match(ctx, inputs, settings):
    """Rivet match: `value` (or the input) on case1, case2… for each of settings.cases (regular
    expressions) that the input matches, only the first if settings.exclusive; else on `unmatched`."""
    text = text_of(inputs["input"])
    value = inputs["value"] if "value" in inputs else inputs["input"]
    outputs, matched = {}, False
    for i, case in enumerate(settings.get("cases") or [], 1):
        try:
            hit = js_regex(case).search(text) is not None
        except re.error as exc:
            raise NodeError(f"case {i} is not a valid regular expression: {exc}") from None
        fires = hit and not (matched and settings.get("exclusive"))
        outputs[f"case{i}"] = value if fires else NOT_RAN
        matched = matched or hit
    outputs["unmatched"] = NOT_RAN if matched else value
    return outputs


INPUT_PORT = re.compile(r"input(\d+)")


@rivet_node("rivet_coalesce", any_inputs=True, outputs=("output",), takes_not_ran=True)
async def coalesce(ctx, inputs, settings):
    """Rivet coalesce: the first of input1, input2… that ran and has a value ('' and false count);
    not run when none has, or when `conditional` did not run."""
    if inputs.get("conditional", True) is NOT_RAN:
        return {"output": NOT_RAN}
    numbered = sorted((int(m.group(1)), port) for port in inputs if (m := INPUT_PORT.fullmatch(port)))
    for _, port in numbered:
        if inputs[port] is not None and inputs[port] is not NOT_RAN:
            return {"output": inputs[port]}
    return {"output": NOT_RAN}
