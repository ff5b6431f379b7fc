"""Import Rivet projects (Ironclad's AI graph IDE, `.rivet-project`, serialisation version 4) and
turn them into workflow definitions for the engine (workflows/engine.py).

The file is YAML 1.2: `data.graphs` maps graph ids to graphs; each graph's `nodes` maps keys
`[id]:type "title"` to `{data, outgoingConnections, ...}`, and each connection, stored on its
source node, reads `outPort->"Target title" targetId/inPort`. It is read with ruamel.yaml because
Rivet writes strings such as YES, NO, on and 12:30 unquoted, which a YAML 1.1 parser (PyYAML)
would turn into booleans and numbers.

The main graph (`mainGraphId`, else the first) and every graph it calls are checked, and all
problems are reported at once, each naming the node by its title: node types other than the ten
below, options this app cannot honour, invalid regular expressions, connections to missing nodes or
from ports a node does not have, subGraphs calling missing graphs or themselves.

Rivet type     engine node                 notes
text           rivet_text                  {{name}} inputs, '' when missing
prompt         rivet_prompt                a chat message {type, message}
chat           rivet_chat                  one request through nodes.ai.ask()
graphInput     rivet_graph_input           the run's input `id` (ctx.values["inputs"]), else its default
graphOutput    rivet_graph_output + output the main graph's outputs are one `output` node, port = id
subGraph       rivet_subgraph + inlined    the called graph's nodes, ids prefixed "<subGraph id>/"
extractRegex   rivet_extract_regex
if             rivet_if
match          rivet_match
coalesce       rivet_coalesce
The engine node ids are the Rivet node ids, and each node's settings keep its `title`. The existing
text.py nodes (template, if, match, coalesce, extract_regex) differ from Rivet in the details that
decide which branch runs (what counts as true, exclusive matching, '' in coalesce, outputs after a
failed match), so Rivet's behaviour gets its own node types (workflows/nodes/rivet.py).

Deviations from Rivet:
- The model is the app's (settings.LLM_MODEL): the project's model name is ignored, and so are
  every sampling setting but maxTokens (capped at the model's context) and temperature (top_p,
  stop, penalties, seed, endpoint, headers, caching...), and a prompt message's `name` is not
  sent. Chat results are cached like every AI node's; token counts use the app's tokenizer. Function calling, several choices, JSON response formats, predicted outputs and audio
  are refused at import, and so are the outputs the app does not produce (cost, usage, duration...).
- Not-ran (control-flow-excluded) follows Rivet: a node with an input that did not run does not
  run, except if, coalesce and graphOutput. A port a node did not emit is None (Rivet's
  undefined) and does not stop the nodes after it. A subGraph is inlined rather than called: its
  nodes wait for the subGraph node, so a subGraph whose inputs did not run runs none of its nodes;
  its graphOutput nodes then show as done with nothing in them.
- A failing node inside a subGraph fails the run (useErrorOutput is refused).
- coalesce looks at every connected inputN in order (Rivet stops at the count of connected
  inputs, so a gap hides the last one). Several graphOutput nodes with the same id: the first in
  the file that has a value wins.
- extractRegex and match take JavaScript regular expressions; they run on Python's `re` after
  rewriting named groups. extractRegex has one output per real capture group (Rivet also counts
  `(?:`); a connected outputN beyond them carries None.
- Interpolation: `{{name}}` (trimmed) and `{{{literal}}}` are supported; `{{x | filter}}` and
  `{{@graphInputs.x}}` / `{{@context.x}}` are refused at import.
- Disabled nodes and split runs (isSplitRun) are refused: their semantics are not ones the
  engine has. Connections to input ports a node does not have are ignored, as Rivet does.
- Only the main graph and the graphs it calls are checked and converted; others are ignored.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError

from .nodes.rivet import CHAT_PARAMETER_INPUTS, GATE, interpolation_names, interpolation_problems, js_regex

SUPPORTED = (
    "text",
    "prompt",
    "chat",
    "graphInput",
    "graphOutput",
    "subGraph",
    "extractRegex",
    "if",
    "match",
    "coalesce",
)
ENGINE_TYPES = {
    "text": "rivet_text",
    "prompt": "rivet_prompt",
    "chat": "rivet_chat",
    "graphInput": "rivet_graph_input",
    "graphOutput": "rivet_graph_output",
    "subGraph": "rivet_subgraph",
    "extractRegex": "rivet_extract_regex",
    "if": "rivet_if",
    "match": "rivet_match",
    "coalesce": "rivet_coalesce",
}
# The `data` fields each node type needs at run time (copied into the engine node's settings).
KEPT_DATA = {
    "text": ("text",),
    "prompt": ("type", "promptText", "name", "useTypeInput", "useNameInput", "computeTokenCount"),
    "chat": ("model", "maxTokens", "temperature", "useMaxTokensInput", "useTemperatureInput"),
    "graphInput": ("id", "dataType", "defaultValue", "useDefaultValueInput"),
    "graphOutput": ("id", "dataType"),
    "subGraph": ("graphId",),
    "extractRegex": ("regex", "useRegexInput", "errorOnFailed", "multilineMode"),
    "if": ("unconnectedControlFlowExcluded",),
    "match": ("cases", "exclusive"),
    "coalesce": (),
}
REQUIRED_INPUTS = {"chat": ("prompt",), "extractRegex": ("input",), "match": ("input",)}
MAX_NODES = 2000  # after inlining subgraphs: a graph calling another twice, and so on, grows fast
OUTPUT_NODE = "graph-outputs"

# Rivet's own patterns (serialization_v4.ts): the title is everything between the quotes.
NODE_KEY = re.compile(r'\[(?P<id>[^\]]+)\]:(?P<type>\S+) "(?P<title>.*)"')
CONNECTION = re.compile(r'(?P<port>.+)->"(?P<title>.+)" (?P<target>.+)/(?P<target_port>.+)')


class RivetImportError(ValueError):
    """The file cannot be imported; `problems` lists every reason found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Connection:
    source: str
    source_port: str
    target: str
    target_port: str


@dataclass
class RivetNode:
    id: str
    type: str
    title: str
    data: dict
    disabled: bool = False
    split_run: bool = False


@dataclass
class RivetGraph:
    id: str
    name: str
    description: str
    nodes: dict[str, RivetNode]  # in file order
    connections: list[Connection]


@dataclass
class Project:
    id: str
    title: str
    description: str
    main_graph_id: str
    graphs: dict[str, RivetGraph] = field(default_factory=dict)


class _Constructor(SafeConstructor):
    """YAML 1.2 as Rivet writes it: ruamel still reads 2023-01-01 as a date; Rivet means the text."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", lambda self, node: self.construct_scalar(node))


def _load_yaml(text: str):
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _Constructor
    try:
        return yaml.load(text)
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise RivetImportError(f"not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise RivetImportError("not valid YAML: nested too deeply") from None


def _text(value) -> str:
    return "" if value is None else str(value)


def parse_project(text: str | bytes) -> Project:
    """The project in a .rivet-project file, or RivetImportError (not YAML, not a Rivet project,
    another version, malformed nodes or connections, connections to missing nodes)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RivetImportError("not a Rivet project: the file is not UTF-8 text") from None
    size = len(text.encode())
    if size > settings.MAX_RIVET_PROJECT_BYTES:
        raise RivetImportError(f"the file is {size} bytes; the limit is {settings.MAX_RIVET_PROJECT_BYTES}")
    doc = _load_yaml(text)
    if not isinstance(doc, dict) or "version" not in doc or not isinstance(doc.get("data"), dict):
        raise RivetImportError("not a Rivet project: expected `version` and `data` at the top level")
    if doc["version"] != 4:
        raise RivetImportError(f"unsupported Rivet file version {doc['version']!r}: only version 4 can be imported")
    data = doc["data"]
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    raw_graphs = data.get("graphs")
    if raw_graphs is None and "nodes" in data:  # one graph exported on its own
        graph_id = _text(metadata.get("id")) or "graph"
        raw_graphs = {graph_id: {"metadata": metadata, "nodes": data["nodes"]}}
        metadata = {"title": metadata.get("name"), "description": metadata.get("description")}
    if not isinstance(raw_graphs, dict) or not raw_graphs:
        raise RivetImportError("not a Rivet project: `data.graphs` is missing or empty")

    main = _text(metadata.get("mainGraphId")) or _text(next(iter(raw_graphs)))
    problems = []
    graphs = {}
    for graph_id, raw in raw_graphs.items():
        graph_id = _text(graph_id)
        if not isinstance(raw, dict):
            problems.append(f"graph {graph_id!r} is not a mapping")
            continue
        graph_meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        name = _text(graph_meta.get("name")) or graph_id
        where = "" if graph_id == main else f"graph {name!r}: "  # problems name the graph unless it is the main one
        raw_nodes = raw.get("nodes") or {}  # an empty graph is written as `nodes: {}`
        if not isinstance(raw_nodes, dict):
            problems.append(f"{where}`nodes` is not a mapping of nodes")
            raw_nodes = {}
        nodes, connections = {}, []
        for key, value in raw_nodes.items():
            m = NODE_KEY.fullmatch(_text(key))
            if m is None or not m["title"]:
                problems.append(f'{where}{_text(key)!r} is not a Rivet node key ([id]:type "title")')
                continue
            value = {} if value is None else value
            node_data = value.get("data") if isinstance(value, dict) else None
            if not isinstance(value, dict) or not isinstance(node_data or {}, dict):
                problems.append(f"{where}node {m['title']!r} is not a mapping with a `data` mapping")
                continue
            if m["id"] in nodes:
                problems.append(f"{where}node id {m['id']!r} is used twice")
                continue
            nodes[m["id"]] = RivetNode(
                m["id"],
                m["type"],
                m["title"],
                dict(node_data or {}),
                bool(value.get("disabled")),
                bool(value.get("isSplitRun")),
            )
            outgoing = value.get("outgoingConnections") or []
            for item in outgoing if isinstance(outgoing, list) else [outgoing]:
                c = CONNECTION.fullmatch(_text(item))
                if c is None:
                    problems.append(
                        f'{where}node {m["title"]!r}: {_text(item)!r} is not a connection (port->"Title" nodeId/port)'
                    )
                    continue
                connections.append(Connection(m["id"], c["port"], c["target"], c["target_port"]))
        for c in connections:
            if c.target not in nodes:
                problems.append(
                    f"{where}node {nodes[c.source].title!r}: output {c.source_port!r} is connected "
                    f"to node {c.target!r}, which is not in the graph"
                )
        graphs[graph_id] = RivetGraph(graph_id, name, _text(graph_meta.get("description")), nodes, connections)

    if main not in graphs:
        problems.append(f"the main graph {main!r} is not one of the project's graphs")
    if problems:
        raise RivetImportError(problems)
    return Project(
        _text(metadata.get("id")), _text(metadata.get("title")), _text(metadata.get("description")), main, graphs
    )


# Ports, as Rivet derives them from a node's data.


def _use_flag(parameter: str) -> str:
    return {"top_p": "useTopPInput", "useTopP": "useUseTopPInput"}.get(
        parameter, f"use{parameter[0].upper()}{parameter[1:]}Input"
    )


def _graph_ids(project: Project, node: RivetNode, kind: str) -> list[str]:
    """The distinct ids of the graphInput / graphOutput nodes of the graph a subGraph node calls."""
    graph = project.graphs.get(_text(node.data.get("graphId")))
    if graph is None:
        return []
    return sorted({_text(n.data.get("id")) for n in graph.nodes.values() if n.type == kind})


def accepts_input(project: Project, node: RivetNode, port: str) -> bool:
    d = node.data
    match node.type:
        case "text":
            return port in interpolation_names(_text(d.get("text")))
        case "prompt":
            return (
                port in interpolation_names(_text(d.get("promptText")))
                or (port == "type" and bool(d.get("useTypeInput")))
                or (port == "name" and bool(d.get("useNameInput")))
            )
        case "chat":
            return port in ("systemPrompt", "prompt") or (
                port in CHAT_PARAMETER_INPUTS and bool(d.get(_use_flag(port)))
            )
        case "graphInput":
            return port == "default" and bool(d.get("useDefaultValueInput"))
        case "graphOutput":
            return port == "value"
        case "subGraph":
            return port in _graph_ids(project, node, "graphInput")
        case "extractRegex":
            return port == "input" or (port == "regex" and bool(d.get("useRegexInput")))
        case "if":
            return port in ("if", "value")
        case "match":
            return port in ("input", "value")
        case "coalesce":
            return port == "conditional" or re.fullmatch(r"input\d+", port) is not None
    return False


def has_output(project: Project, node: RivetNode, port: str) -> bool:
    d = node.data
    match node.type:
        case "text":
            return port == "output"
        case "prompt":
            return port == "output" or (port == "tokenCount" and bool(d.get("computeTokenCount")))
        case "chat":
            return port in ("response", "in-messages", "all-messages", "responseTokens")
        case "graphInput":
            return port == "data"
        case "graphOutput":
            return port == "valueOutput"
        case "subGraph":
            return port in _graph_ids(project, node, "graphOutput")
        case "extractRegex":
            return port in ("matches", "succeeded", "failed") or re.fullmatch(r"output[1-9]\d*", port) is not None
        case "if":
            return port in ("output", "falseOutput")
        case "match":
            cases = d.get("cases") if isinstance(d.get("cases"), list) else []
            return port == "unmatched" or port in {f"case{i}" for i in range(1, len(cases) + 1)}
        case "coalesce":
            return port == "output"
    return False


# Checks.


def _graphs_to_run(project: Project, graph_id: str, problems: list[str]) -> list[str]:
    """The graph and every graph it calls, depth first; missing graphs and recursion are problems."""
    done, path = [], []

    def visit(gid: str) -> None:
        path.append(gid)
        graph = project.graphs[gid]
        for node in graph.nodes.values():
            if node.type != "subGraph":
                continue
            target = _text(node.data.get("graphId"))
            where = "" if gid == graph_id else f"graph {graph.name!r}: "
            if target not in project.graphs:
                problems.append(f"{where}subGraph {node.title!r} calls graph {target!r}, which is not in the project")
            elif target in path:
                chain = " → ".join(project.graphs[g].name for g in [*path[path.index(target) :], target])
                problems.append(
                    f"{where}subGraph {node.title!r} calls graph {project.graphs[target].name!r} "
                    f"recursively ({chain}), which this app cannot run"
                )
            elif target not in done:
                visit(target)
        path.pop()
        done.append(gid)

    visit(graph_id)
    return done[::-1]


def _node_problems(project: Project, node: RivetNode) -> list[str]:
    """What stops this app from running the node as Rivet would, each starting with its title."""
    if node.type not in SUPPORTED:
        return [
            f"node {node.title!r} has type {node.type!r}, which this app cannot run (supported: {', '.join(SUPPORTED)})"
        ]
    d, name = node.data, f"node {node.title!r} ({node.type})"
    found = []
    if node.disabled:
        found.append(f"{name} is disabled; enable or delete it before importing")
    if node.split_run:
        found.append(f"{name} uses split run, which this app cannot run")
    match node.type:
        case "text" | "prompt":
            template = _text(d.get("text" if node.type == "text" else "promptText"))
            for token in interpolation_problems(template):
                found.append(
                    f"{name} uses {token}, which this app cannot fill "
                    "(filters and @graphInputs/@context are not supported)"
                )
            if node.type == "prompt":
                if d.get("enableFunctionCall"):
                    found.append(f"{name} uses function calls, which this app cannot run")
                if not d.get("useTypeInput") and _text(d.get("type") or "user") not in ("system", "user", "assistant"):
                    found.append(f"{name} makes a {_text(d.get('type'))!r} message, which this app cannot send")
        case "chat":
            unsupported = {
                "function calling": d.get("enableFunctionUse"),
                "several choices": (d.get("numberOfChoices") or 1) != 1 or d.get("useNumberOfChoicesInput"),
                "a JSON response format": d.get("responseFormat") not in (None, "", "text")
                or d.get("useResponseFormatInput"),
                "a predicted output": d.get("usePredictedOutput"),
                "audio": d.get("modalitiesIncludeAudio"),
            }
            found += [f"{name} asks for {what}, which this app cannot do" for what, on in unsupported.items() if on]
        case "graphInput" | "graphOutput":
            if not _text(d.get("id")):
                found.append(f"{name} has no id")
        case "subGraph":
            if d.get("useErrorOutput"):
                found.append(f"{name} uses its error output, which this app cannot provide")
        case "extractRegex":
            if not d.get("useRegexInput"):
                try:
                    js_regex(_text(d.get("regex")), bool(d.get("multilineMode")))
                except re.error as exc:
                    found.append(f"{name}: {_text(d.get('regex'))!r} is not a valid regular expression ({exc})")
        case "match":
            cases = d.get("cases")
            if not isinstance(cases, list):
                found.append(f"{name} has no list of cases")
            for i, case in enumerate(cases if isinstance(cases, list) else [], 1):
                try:
                    js_regex(_text(case))
                except re.error as exc:
                    found.append(f"{name}: case {i} {_text(case)!r} is not a valid regular expression ({exc})")
    return found


def _graph_problems(project: Project, graph: RivetGraph) -> list[str]:
    found = []
    for node in graph.nodes.values():
        found += _node_problems(project, node)
    fed = {}
    for c in graph.connections:
        source, target = graph.nodes[c.source], graph.nodes[c.target]
        calls_nothing = source.type == "subGraph" and _text(source.data.get("graphId")) not in project.graphs
        if source.type in SUPPORTED and not calls_nothing and not has_output(project, source, c.source_port):
            found.append(
                f"node {source.title!r} ({source.type}) has no output {c.source_port!r} that this app "
                f"can produce, but it is connected to {target.title!r}"
            )
        if target.type in SUPPORTED and accepts_input(project, target, c.target_port):
            if (c.target, c.target_port) in fed:
                found.append(f"node {target.title!r}: input {c.target_port!r} has more than one connection")
            fed[(c.target, c.target_port)] = c
    for node in graph.nodes.values():
        for port in REQUIRED_INPUTS.get(node.type, ()):
            if (node.id, port) not in fed:
                found.append(f"node {node.title!r} ({node.type}): input {port!r} is not connected")
    return found


# Building the definition.


class _Builder:
    def __init__(self, project: Project):
        self.project = project
        self.nodes: list[dict] = []

    def add(self, node: dict) -> None:
        if len(self.nodes) >= MAX_NODES:
            raise RivetImportError(f"the graph has more than {MAX_NODES} nodes once its subGraphs are included")
        self.nodes.append(node)

    def settings_of(self, node: RivetNode) -> dict:
        kept = {key: node.data[key] for key in KEPT_DATA[node.type] if key in node.data}
        for key in ("text", "promptText", "regex", "id", "graphId"):
            if key in kept:
                kept[key] = _text(kept[key])
        if "cases" in kept:
            kept["cases"] = [_text(case) for case in kept["cases"]]
        return {"title": node.title, **kept}

    def graph(self, graph_id: str, prefix: str = "", gate: str | None = None, caller: dict | None = None) -> dict:
        """Add the graph's nodes (ids prefixed, each waiting for `gate`); its outputs: id → reference.
        `caller`, for a subgraph: {"inputs": {graph input id: reference}, "values": {id: value}}."""
        project, graph = self.project, self.project.graphs[graph_id]
        incoming: dict[str, dict[str, Connection]] = {}
        for c in graph.connections:
            if accepts_input(project, graph.nodes[c.target], c.target_port):  # Rivet ignores the others
                incoming.setdefault(c.target, {})[c.target_port] = c
        inlined: dict[str, dict | None] = {}  # subGraph node id → its outputs (None while inlining)

        def reference(c: Connection) -> str:
            source = graph.nodes[c.source]
            if source.type == "subGraph":
                return inline(source)[c.source_port]
            return f"{prefix}{source.id}.{c.source_port}"

        def inputs_of(node: RivetNode) -> dict:
            inputs = {port: reference(c) for port, c in incoming.get(node.id, {}).items()}
            return inputs | ({GATE: gate} if gate else {})

        def inline(node: RivetNode) -> dict:
            if node.id in inlined:
                if inlined[node.id] is None:
                    raise RivetImportError(f"subGraph {node.title!r} is connected in a cycle")
                return inlined[node.id]
            inlined[node.id] = None
            engine_id = prefix + node.id
            inputs = inputs_of(node)
            self.add({"id": engine_id, "type": "rivet_subgraph", "settings": self.settings_of(node), "inputs": inputs})
            # The called graph's inputs are fed by what feeds this node (or its inputData), directly.
            given = node.data.get("inputData") if isinstance(node.data.get("inputData"), dict) else {}
            values = {
                _text(key): value.get("value") if isinstance(value, dict) else value for key, value in given.items()
            }
            fed = {port: ref for port, ref in inputs.items() if port != GATE}
            inlined[node.id] = self.graph(
                _text(node.data["graphId"]), f"{engine_id}/", f"{engine_id}.ran", {"inputs": fed, "values": values}
            )
            return inlined[node.id]

        outputs: dict[str, list[str]] = {}
        for node in graph.nodes.values():
            if node.type == "subGraph":
                inline(node)
                continue
            settings, inputs = self.settings_of(node), inputs_of(node)
            if node.type == "graphInput" and caller is not None:
                settings["inlined"] = True
                if settings["id"] in caller["inputs"]:
                    inputs["value"] = caller["inputs"][settings["id"]]
                elif caller["values"].get(settings["id"]) is not None:
                    settings["callerValue"] = caller["values"][settings["id"]]
            if node.type == "extractRegex":  # outputN connected beyond the regex's groups: None, as in Rivet
                wanted = [
                    int(c.source_port[6:])
                    for c in graph.connections
                    if c.source == node.id and re.fullmatch(r"output\d+", c.source_port)
                ]
                settings["outputs"] = max(wanted, default=0)
            if node.type == "graphOutput":
                outputs.setdefault(settings["id"], []).append(f"{prefix}{node.id}.valueOutput")
            self.add({"id": prefix + node.id, "type": ENGINE_TYPES[node.type], "settings": settings, "inputs": inputs})

        results = {}
        for output_id, sources in outputs.items():
            if len(sources) == 1:
                results[output_id] = sources[0]
                continue
            merge = f"{prefix}output:{output_id}"  # graphOutputs sharing an id: the first with a value
            inputs = {f"input{i}": source for i, source in enumerate(sources, 1)} | ({GATE: gate} if gate else {})
            self.add(
                {
                    "id": merge,
                    "type": "rivet_coalesce",
                    "inputs": inputs,
                    "settings": {"title": f"Output {output_id!r}"},
                }
            )
            results[output_id] = f"{merge}.output"
        return results


def to_definition(project: Project, graph_id: str | None = None) -> dict:
    """The engine definition of the main graph (or `graph_id`), subGraphs inlined, or
    RivetImportError listing everything in it (and the graphs it calls) that cannot run."""
    graph_id = graph_id or project.main_graph_id
    if graph_id not in project.graphs:
        raise RivetImportError(f"graph {graph_id!r} is not in the project")
    problems = []
    for gid in _graphs_to_run(project, graph_id, problems):
        graph = project.graphs[gid]
        where = "" if gid == graph_id else f"graph {graph.name!r}: "
        problems += [where + problem for problem in _graph_problems(project, graph)]
    if problems:
        raise RivetImportError(list(dict.fromkeys(problems)))
    builder = _Builder(project)
    outputs = builder.graph(graph_id)
    if outputs:
        taken = {node["id"] for node in builder.nodes}
        output_id = OUTPUT_NODE
        while output_id in taken:
            output_id += "_"
        builder.add({"id": output_id, "type": "output", "settings": {"title": "Graph outputs"}, "inputs": outputs})
    return {"nodes": builder.nodes}


def import_project(owner, uploaded_text: str | bytes, name: str | None = None):
    """Parse, convert and validate an uploaded project, and save it as the owner's Workflow."""
    from . import engine
    from .models import Workflow

    project = parse_project(uploaded_text)
    definition = to_definition(project)
    try:
        engine.validate(definition)
    except engine.WorkflowInvalid as exc:
        raise RivetImportError(exc.problems) from None
    main = project.graphs[project.main_graph_id]
    return Workflow.objects.create(
        owner=owner,
        name=(name or project.title or main.name or "Rivet project")[:200],
        description=project.description or main.description,
        source=Workflow.Source.RIVET,
        definition=definition,
    )
