"""Rivet's node types (Ironclad's AI graph IDE), for projects imported by workflows/rivet_import.py.

Each supported Rivet type is one RivetNodeSpec, the argument of the `@rivet_node` that registers
the engine node type running it: everything the importer knows of the type (its ports, the data
it keeps, what in it this app cannot run) is next to what it does. The text.py nodes (template, if,
match, coalesce, extract_regex) differ from Rivet in the details that decide which branch runs
(what counts as true, exclusive matching, '' in coalesce, outputs after a failed match), so
Rivet's behaviour gets its own node types.

Values keep Rivet's shapes: a chat message is `{"type": "user", "message": "..."}`. A port that a
Rivet node does not emit (e.g. extractRegex's groups after a failed match) carries None here,
Rivet's `undefined`: downstream nodes still run with it. NOT_RAN is Rivet's control-flow-excluded:
a node with an input that did not run does not run, except if, coalesce and graphOutput.

Nodes of an inlined subgraph get one extra input, `_gate`, from their subGraph node: when that
node did not run, neither does any node of its graph, not even those that take NOT_RAN.

Deviations from Rivet:
- chat: the model is the app's (settings.LLM_MODEL): the project's model name is ignored, and so
  are every sampling setting but maxTokens (capped at the model's context) and temperature (top_p,
  stop, penalties, seed, endpoint, headers, caching...), and a prompt message's `name` is not
  sent. Chat results are cached like every AI node's; token counts use the app's tokenizer.
  Function calling, several choices, JSON response formats, predicted outputs and audio are
  refused at import, and so are the outputs the app does not produce (cost, usage, duration...).
- coalesce looks at every connected inputN in order (Rivet stops at the count of connected
  inputs, so a gap hides the last one).
- extractRegex and match take JavaScript regular expressions; they run on the `regex` module
  (Python's syntax, with a time limit: workflows/nodes/patterns.py) after rewriting named groups. extractRegex has one output per real capture group (Rivet also counts
  `(?:`); a connected outputN beyond them carries None.
- Interpolation (text, prompt): `{{name}}` (trimmed) and `{{{literal}}}` are supported;
  `{{x | filter}}` and `{{@graphInputs.x}}` / `{{@context.x}}` are refused at import.
- subGraph: its error output (useErrorOutput) is refused; a failing node inside it fails the run.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings as django_settings

from .. import tokens
from ..rivet_project import Project, RivetNode, str_or_empty
from . import patterns
from .ai import ask
from .base import NOT_RAN, NodeError, node_type
from .limits import joined

GATE = "_gate"

# `{{{name}}}` is a literal `{{name}}`; `{{ name }}` is a variable (trimmed, as newer Rivet does).
ESCAPED = re.compile(r"\{\{\{([^{}]+)\}\}\}")
TOKEN = re.compile(r"\{\{([^{}]+?)\}\}")


def as_rivet_string(value: Any) -> str:
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
        return as_rivet_string(value["message"])
    if isinstance(value, (list, tuple)):
        return "\n".join(as_rivet_string(item) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def is_message(value: Any) -> bool:
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


def rivet_interpolate(template: str, values: dict) -> str:
    """Rivet's interpolation: each `{{name}}` replaced by input `name` as a Rivet string ('' when
    it is missing), each `{{{literal}}}` by `{{literal}}`. NodeError if the result would be over
    WORKFLOW_MAX_VALUE_CHARS: the pieces are measured before they are joined."""
    parts = ESCAPED.split(template or "")  # even: text to fill; odd: the inside of an escaped token
    texts: dict[str, str] = {}  # each value as a string once, however often the template uses it
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append("{{" + part + "}}")
            continue
        end = 0
        for m in TOKEN.finditer(part):
            name = _token_name(m.group(1))
            if name not in texts:
                texts[name] = as_rivet_string(values.get(name))
            out += [part[end : m.start()], texts[name]]
            end = m.end()
        out.append(part[end:])
    return joined(out, "the interpolated text")


JS_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")  # (?<name> but not the look-behinds (?<= (?<!
JS_BACKREFERENCE = re.compile(r"\\k<(\w+)>")


def js_regex(source: str, multiline: bool = False) -> patterns.Pattern:
    """A JavaScript regular expression (Rivet's syntax) compiled for the `regex` module;
    patterns.error if invalid."""
    source = JS_BACKREFERENCE.sub(r"(?P=\1)", JS_NAMED_GROUP.sub("(?P<", str(source)))
    return patterns.compile_pattern(source, patterns.MULTILINE if multiline else 0)


# outputN / caseN: a port number sizes the node's outputs, so it is capped (output300000000 was a
# dict of 300 million entries); a regular expression has fewer groups than this, a match fewer cases.
MAX_PORT_NUMBER = 100
NUMBERED_OUTPUT = re.compile(r"output([1-9]\d{0,2})")


# What the importer knows of a Rivet node type.

PortTest = Callable[[RivetNode, str, Project], bool]  # is `port` one of this node's ports?


def ports(*names: str) -> PortTest:
    """Ports that every node of the type has, whatever its data."""
    return lambda node, port, project: port in names


def _as_is(value: Any) -> Any:
    return value


def keep(*fields: str, **converted: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    """The data fields a node needs at run time: copied as they are, or (by keyword) converted."""
    return dict.fromkeys(fields, _as_is) | converted


def _no_problems(node: RivetNode) -> list[str]:
    return []


def _no_settings(connected_outputs: list[str]) -> dict:
    return {}


@dataclass(frozen=True)
class RivetNodeSpec:
    """One Rivet node type as the importer sees it. Rivet derives a node's ports from its data
    (a text node has one input per {{name}}), so ports are tests rather than lists."""

    rivet_type: str
    node_type: str  # the engine node type that runs it
    accepts: PortTest  # its inputs (connections to other ports are ignored, as Rivet does)
    emits: PortTest  # its outputs (a connection from another port is a problem)
    keeps: dict[str, Callable[[Any], Any]] = field(default_factory=dict)  # data field → its setting
    required: tuple[str, ...] = ()  # inputs that must be connected
    # What stops this app from running the node as Rivet would, each naming it by node.label.
    problems: Callable[[RivetNode], list[str]] = _no_problems
    # Settings that follow from which of its output ports the graph connects.
    wiring: Callable[[list[str]], dict] = _no_settings

    def settings(self, node: RivetNode, connected_outputs: list[str]) -> dict:
        """The engine node's settings: its title, the data it keeps, and what its wiring says."""
        kept = {key: convert(node.data[key]) for key, convert in self.keeps.items() if key in node.data}
        return {"title": node.title, **kept, **self.wiring(connected_outputs)}


# The Rivet node types this app imports, by Rivet type, in the order they are defined below.
SPECS: dict[str, RivetNodeSpec] = {}


def rivet_node(spec: RivetNodeSpec, *, optional: tuple = (), outputs: tuple = (), **ports_and_flags):
    """Register the decorated function as the engine node type `spec.node_type`, and `spec` as how
    the importer reads its Rivet type. The node gets the `_gate` input of inlined subgraphs: the
    engine already skips a node when an input did not run; nodes that take NOT_RAN check it here."""

    def register(run):
        async def gated(ctx, inputs, settings):
            inputs = dict(inputs)
            if inputs.pop(GATE, None) is NOT_RAN:
                return {port: NOT_RAN for port in outputs}
            return await run(ctx, inputs, settings)

        gated.__doc__ = run.__doc__
        node_type(spec.node_type, optional=(*optional, GATE), outputs=outputs, **ports_and_flags)(gated)
        SPECS[spec.rivet_type] = spec
        return run

    return register


def template_problems(node: RivetNode, template: str) -> list[str]:
    return [
        f"{node.label} uses {token}, which this app cannot fill (filters and @graphInputs/@context are not supported)"
        for token in interpolation_problems(template)
    ]


TEXT = RivetNodeSpec(
    "text",
    "rivet_text",
    accepts=lambda node, port, project: port in interpolation_names(node.text("text")),
    emits=ports("output"),
    keeps=keep(text=str_or_empty),
    problems=lambda node: template_problems(node, node.text("text")),
)


@rivet_node(TEXT, any_inputs=True, outputs=("output",))
async def text(ctx, inputs, settings):
    """Rivet text: settings.text with each {{name}} replaced by input `name` ('' if missing)."""
    return {"output": rivet_interpolate(settings.get("text", ""), inputs)}


MESSAGE_TYPES = ("system", "user", "assistant")


def _prompt_accepts(node: RivetNode, port: str, project: Project) -> bool:
    return (
        port in interpolation_names(node.text("promptText"))
        or (port == "type" and bool(node.data.get("useTypeInput")))
        or (port == "name" and bool(node.data.get("useNameInput")))
    )


def _prompt_problems(node: RivetNode) -> list[str]:
    found = template_problems(node, node.text("promptText"))
    if node.data.get("enableFunctionCall"):
        found.append(f"{node.label} uses function calls, which this app cannot run")
    if not node.data.get("useTypeInput") and str_or_empty(node.data.get("type") or "user") not in MESSAGE_TYPES:
        found.append(f"{node.label} makes a {node.text('type')!r} message, which this app cannot send")
    return found


PROMPT = RivetNodeSpec(
    "prompt",
    "rivet_prompt",
    accepts=_prompt_accepts,
    emits=lambda node, port, project: (
        port == "output" or (port == "tokenCount" and bool(node.data.get("computeTokenCount")))
    ),
    keeps=keep("type", "name", "useTypeInput", "useNameInput", "computeTokenCount", promptText=str_or_empty),
    problems=_prompt_problems,
)


@rivet_node(PROMPT, any_inputs=True, outputs=("output", "tokenCount"))
async def prompt(ctx, inputs, settings):
    """Rivet prompt: a chat message {type, message} whose text is settings.promptText, interpolated."""
    values = dict(inputs)
    kind = settings.get("type") or "user"
    if settings.get("useTypeInput"):
        kind = as_rivet_string(values.pop("type", None)) or kind
    name = settings.get("name") or ""
    if settings.get("useNameInput"):
        name = as_rivet_string(values.pop("name", None)) or name
    if kind not in MESSAGE_TYPES:
        raise NodeError(f"message type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}")
    message = {"type": kind, "message": rivet_interpolate(settings.get("promptText", ""), values)}
    if name:
        message["name"] = name
    result: dict[str, Any] = {"output": message}
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
CHAT_OUTPUTS = ("response", "in-messages", "all-messages", "responseTokens")


def _use_flag(parameter: str) -> str:
    """The data flag that gives a chat node an input for `parameter`, as Rivet names it."""
    return {"top_p": "useTopPInput", "useTopP": "useUseTopPInput"}.get(
        parameter, f"use{parameter[0].upper()}{parameter[1:]}Input"
    )


def _chat_problems(node: RivetNode) -> list[str]:
    d = node.data
    unsupported = {
        "function calling": d.get("enableFunctionUse"),
        "several choices": (d.get("numberOfChoices") or 1) != 1 or d.get("useNumberOfChoicesInput"),
        "a JSON response format": d.get("responseFormat") not in (None, "", "text") or d.get("useResponseFormatInput"),
        "a predicted output": d.get("usePredictedOutput"),
        "audio": d.get("modalitiesIncludeAudio"),
    }
    return [f"{node.label} asks for {what}, which this app cannot do" for what, on in unsupported.items() if on]


CHAT = RivetNodeSpec(
    "chat",
    "rivet_chat",
    accepts=lambda node, port, project: (
        port in ("systemPrompt", "prompt") or (port in CHAT_PARAMETER_INPUTS and bool(node.data.get(_use_flag(port))))
    ),
    emits=ports(*CHAT_OUTPUTS),
    keeps=keep("model", "maxTokens", "temperature", "useMaxTokensInput", "useTemperatureInput"),
    required=("prompt",),
    problems=_chat_problems,
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
            messages.append({"type": str(item["type"]), "message": as_rivet_string(item["message"])})
        else:
            messages.append({"type": "user", "message": as_rivet_string(item)})
    system_text = as_rivet_string(system)
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
    CHAT,
    inputs=("prompt",),
    optional=("systemPrompt", *CHAT_PARAMETER_INPUTS),
    outputs=CHAT_OUTPUTS,
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
        return as_rivet_string(value)
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


def _needs_id(node: RivetNode) -> list[str]:
    return [] if node.text("id") else [f"{node.label} has no id"]


# A graphInput of an inlined subgraph is fed by its caller: the importer sets `inlined`, and the
# `value` input or `callerValue` (see rivet_import.py).
GRAPH_INPUT = RivetNodeSpec(
    "graphInput",
    "rivet_graph_input",
    accepts=lambda node, port, project: port == "default" and bool(node.data.get("useDefaultValueInput")),
    emits=ports("data"),
    keeps=keep("dataType", "defaultValue", "useDefaultValueInput", id=str_or_empty),
    problems=_needs_id,
)


@rivet_node(GRAPH_INPUT, optional=("value", "default"), outputs=("data",))
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


# The main graph's graphOutputs become the ports of one `output` node (see rivet_import.py).
GRAPH_OUTPUT = RivetNodeSpec(
    "graphOutput",
    "rivet_graph_output",
    accepts=ports("value"),
    emits=ports("valueOutput"),
    keeps=keep("dataType", id=str_or_empty),
    problems=_needs_id,
)


@rivet_node(GRAPH_OUTPUT, optional=("value",), outputs=("valueOutput",), takes_not_ran=True)
async def graph_output(ctx, inputs, settings):
    """Rivet graphOutput: passes its value on (not-ran stays not-ran) to the run's output settings.id."""
    return {"valueOutput": inputs.get("value")}


def _called_graph_ids(kind: str) -> PortTest:
    """A subGraph node's ports: the ids of the `kind` nodes (graphInput, graphOutput) of the graph it calls."""

    def test(node: RivetNode, port: str, project: Project) -> bool:
        called = project.graphs.get(node.text("graphId"))
        return called is not None and any(n.type == kind and n.text("id") == port for n in called.nodes.values())

    return test


SUBGRAPH = RivetNodeSpec(
    "subGraph",
    "rivet_subgraph",
    accepts=_called_graph_ids(GRAPH_INPUT.rivet_type),
    emits=_called_graph_ids(GRAPH_OUTPUT.rivet_type),
    keeps=keep(graphId=str_or_empty),
    problems=lambda node: (
        [f"{node.label} uses its error output, which this app cannot provide"]
        if node.data.get("useErrorOutput")
        else []
    ),
)


@rivet_node(SUBGRAPH, any_inputs=True, outputs=("ran",))
async def subgraph(ctx, inputs, settings):
    """Rivet subGraph: the graph's nodes are inlined after it; this node only runs when all its
    inputs ran, and the inlined nodes wait for it (so a branch not taken skips the whole graph)."""
    return {"ran": True}


def _regex_problems(node: RivetNode) -> list[str]:
    if node.data.get("useRegexInput"):
        return []  # known only when the run gives it
    try:
        js_regex(node.text("regex"), bool(node.data.get("multilineMode")))
    except patterns.error as exc:
        return [f"{node.label}: {node.text('regex')[:200]!r} is not a valid regular expression ({exc})"]
    return []


def _numbered_output(port: str) -> int | None:
    """N of a port `outputN` within MAX_PORT_NUMBER, else None."""
    m = NUMBERED_OUTPUT.fullmatch(port)
    return int(m.group(1)) if m is not None and int(m.group(1)) <= MAX_PORT_NUMBER else None


EXTRACT_REGEX = RivetNodeSpec(
    "extractRegex",
    "rivet_extract_regex",
    accepts=lambda node, port, project: port == "input" or (port == "regex" and bool(node.data.get("useRegexInput"))),
    emits=lambda node, port, project: port in ("matches", "succeeded", "failed") or _numbered_output(port) is not None,
    keeps=keep("useRegexInput", "errorOnFailed", "multilineMode", regex=str_or_empty),
    required=("input",),
    problems=_regex_problems,
    # outputN connected beyond the regex's groups: the node emits None there, as Rivet does.
    wiring=lambda connected: {"outputs": max((n for port in connected if (n := _numbered_output(port))), default=0)},
)


@rivet_node(
    EXTRACT_REGEX,
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
        source = as_rivet_string(inputs["regex"])
    try:
        pattern = js_regex(source, settings.get("multilineMode", False))
    except patterns.error as exc:
        raise NodeError(f"not a valid regular expression {source[:200]!r}: {exc}") from None
    text = as_rivet_string(inputs["input"])
    found = patterns.find_all(pattern, text)
    count = max(pattern.groups, min(int(settings.get("outputs", 0)), MAX_PORT_NUMBER))
    outputs: dict[str, Any] = {f"output{i}": None for i in range(1, count + 1)} | {"matches": None}
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
        return as_rivet_string(value) != ""
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return True


IF = RivetNodeSpec(
    "if",
    "rivet_if",
    accepts=ports("if", "value"),
    emits=ports("output", "falseOutput"),
    keeps=keep("unconnectedControlFlowExcluded"),
)


@rivet_node(IF, optional=("if", "value"), outputs=("output", "falseOutput"), takes_not_ran=True)
async def if_node(ctx, inputs, settings):
    """Rivet if: `value` on `output` when `if` is true, else on `falseOutput`; the other is not run.
    With no value, the taken branch gets not-run (settings.unconnectedControlFlowExcluded) or None."""
    value = inputs.get("value")
    if value is None:
        value = NOT_RAN if settings.get("unconnectedControlFlowExcluded") else None
    if rivet_truthy(inputs.get("if")):
        return {"output": value, "falseOutput": NOT_RAN}
    return {"output": NOT_RAN, "falseOutput": value}


def _cases(node: RivetNode) -> list:
    cases = node.data.get("cases")
    return cases if isinstance(cases, list) else []


def _match_problems(node: RivetNode) -> list[str]:
    found = [] if isinstance(node.data.get("cases"), list) else [f"{node.label} has no list of cases"]
    if len(_cases(node)) > MAX_PORT_NUMBER:
        return [f"{node.label} has {len(_cases(node))} cases; the limit is {MAX_PORT_NUMBER}"]
    for i, case in enumerate(_cases(node), 1):
        try:
            js_regex(str_or_empty(case))
        except patterns.error as exc:
            found.append(
                f"{node.label}: case {i} {str_or_empty(case)[:200]!r} is not a valid regular expression ({exc})"
            )
    return found


def _is_case_port(node: RivetNode, port: str) -> bool:
    m = re.fullmatch(r"case([1-9]\d{0,2})", port)
    return m is not None and int(m.group(1)) <= min(len(_cases(node)), MAX_PORT_NUMBER)


MATCH = RivetNodeSpec(
    "match",
    "rivet_match",
    accepts=ports("input", "value"),
    emits=lambda node, port, project: port == "unmatched" or _is_case_port(node, port),
    keeps=keep("exclusive", cases=lambda cases: [str_or_empty(case) for case in cases]),
    required=("input",),
    problems=_match_problems,
)


@rivet_node(MATCH, inputs=("input",), optional=("value",), any_outputs=True, outputs=("unmatched",))
async def match(ctx, inputs, settings):
    """Rivet match: `value` (or the input) on case1, case2… for each of settings.cases (regular
    expressions) that the input matches, only the first if settings.exclusive; else on `unmatched`."""
    text = as_rivet_string(inputs["input"])
    value = inputs["value"] if "value" in inputs else inputs["input"]
    outputs, matched = {}, False
    for i, case in enumerate(settings.get("cases") or [], 1):
        try:
            pattern = js_regex(case)
        except patterns.error as exc:
            raise NodeError(f"case {i} is not a valid regular expression: {exc}") from None
        hit = patterns.search(pattern, text) is not None
        fires = hit and not (matched and settings.get("exclusive"))
        outputs[f"case{i}"] = value if fires else NOT_RAN
        matched = matched or hit
    outputs["unmatched"] = NOT_RAN if matched else value
    return outputs


INPUT_PORT = re.compile(r"input(\d+)")

COALESCE = RivetNodeSpec(
    "coalesce",
    "rivet_coalesce",
    accepts=lambda node, port, project: port == "conditional" or INPUT_PORT.fullmatch(port) is not None,
    emits=ports("output"),
)


@rivet_node(COALESCE, any_inputs=True, outputs=("output",), takes_not_ran=True)
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
