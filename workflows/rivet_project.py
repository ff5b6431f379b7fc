"""The `.rivet-project` file (Ironclad's Rivet, serialisation version 4) read into plain objects:
a Project of RivetGraphs of RivetNodes and their Connections. What the node types mean, and how
they become a workflow, is in workflows/nodes/rivet.py and workflows/rivet_import.py.

The file is YAML 1.2: `data.graphs` maps graph ids to graphs; each graph's `nodes` maps keys
`[id]:type "title"` to `{data, outgoingConnections, ...}`, and each connection, stored on its
source node, reads `outPort->"Target title" targetId/inPort`. It is read with ruamel.yaml because
Rivet writes strings such as YES, NO, on and 12:30 unquoted, which a YAML 1.1 parser (PyYAML)
would turn into booleans and numbers.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError

# Rivet's own patterns (serialization_v4.ts): the title is everything between the quotes.
NODE_KEY = re.compile(r'\[(?P<id>[^\]]+)\]:(?P<type>\S+) "(?P<title>.*)"')
CONNECTION = re.compile(r'(?P<port>.+)->"(?P<title>.+)" (?P<target>.+)/(?P<target_port>.+)')


def str_or_empty(value: Any) -> str:
    """A YAML value as the text Rivet means by it ('' for a missing one)."""
    return "" if value is None else str(value)


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

    @property
    def label(self) -> str:
        """How problems name the node: by its title, as Rivet shows it, and its type."""
        return f"node {self.title!r} ({self.type})"

    def text(self, key: str) -> str:
        """The data field as text ('' when it is missing)."""
        return str_or_empty(self.data.get(key))


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


def _load_yaml(text: str) -> Any:
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
        graph_id = str_or_empty(metadata.get("id")) or "graph"
        raw_graphs = {graph_id: {"metadata": metadata, "nodes": data["nodes"]}}
        metadata = {"title": metadata.get("name"), "description": metadata.get("description")}
    if not isinstance(raw_graphs, dict) or not raw_graphs:
        raise RivetImportError("not a Rivet project: `data.graphs` is missing or empty")

    main = str_or_empty(metadata.get("mainGraphId")) or str_or_empty(next(iter(raw_graphs)))
    problems = []
    graphs = {}
    for graph_id, raw in raw_graphs.items():
        graph_id = str_or_empty(graph_id)
        if not isinstance(raw, dict):
            problems.append(f"graph {graph_id!r} is not a mapping")
            continue
        graph_meta = raw.get("metadata")
        graph_meta = graph_meta if isinstance(graph_meta, dict) else {}
        name = str_or_empty(graph_meta.get("name")) or graph_id
        where = "" if graph_id == main else f"graph {name!r}: "  # problems name the graph unless it is the main one
        raw_nodes = raw.get("nodes") or {}  # an empty graph is written as `nodes: {}`
        if not isinstance(raw_nodes, dict):
            problems.append(f"{where}`nodes` is not a mapping of nodes")
            raw_nodes = {}
        nodes, connections = {}, []
        for key, value in raw_nodes.items():
            m = NODE_KEY.fullmatch(str_or_empty(key))
            if m is None or not m["title"]:
                problems.append(f'{where}{str_or_empty(key)!r} is not a Rivet node key ([id]:type "title")')
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
                link = CONNECTION.fullmatch(str_or_empty(item))
                if link is None:
                    problems.append(
                        f'{where}node {m["title"]!r}: {str_or_empty(item)!r} is not a connection (port->"Title" nodeId/port)'
                    )
                    continue
                connections.append(Connection(m["id"], link["port"], link["target"], link["target_port"]))
        for c in connections:
            if c.target not in nodes:
                problems.append(
                    f"{where}node {nodes[c.source].title!r}: output {c.source_port!r} is connected "
                    f"to node {c.target!r}, which is not in the graph"
                )
        graphs[graph_id] = RivetGraph(graph_id, name, str_or_empty(graph_meta.get("description")), nodes, connections)

    if main not in graphs:
        problems.append(f"the main graph {main!r} is not one of the project's graphs")
    if problems:
        raise RivetImportError(problems)
    return Project(
        str_or_empty(metadata.get("id")),
        str_or_empty(metadata.get("title")),
        str_or_empty(metadata.get("description")),
        main,
        graphs,
    )
