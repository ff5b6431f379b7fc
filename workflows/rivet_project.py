"""The `.rivet-project` file (Ironclad's Rivet, serialisation version 4) read into plain objects:
a Project of RivetGraphs of RivetNodes and their Connections. What the node types mean, and how
they become a workflow, is in workflows/nodes/rivet.py and workflows/rivet_import.py.

The file is YAML 1.2: `data.graphs` maps graph ids to graphs; each graph's `nodes` maps keys
`[id]:type "title"` to `{data, outgoingConnections, ...}`, and each connection, stored on its
source node, reads `outPort->"Target title" targetId/inPort`. The YAML is read as YAML 1.2 (Rivet
writes YES, NO, on and 12:30 unquoted and means text) by workflows/rivet_yaml.py, which refuses
anchors and aliases; the web process has it read in a child process under CPU, memory and time
limits (`aparse_project`). Sizes are capped before anything is built from them: the file's bytes,
the nodes and connections (WORKFLOW_MAX_NODES) and the length of a node key or connection.
"""

import asyncio
import json
import re
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import rivet_yaml

# Rivet's own pattern (serialization_v4.ts): the title is everything between the quotes.
NODE_KEY = re.compile(r'\[(?P<id>[^\]]+)\]:(?P<type>\S+) "(?P<title>.*)"')


def split_connection(text: str) -> tuple[str, str, str, str] | None:
    """(port, title, target id, target port) of `port->"Title" targetId/targetPort`, as Rivet's
    pattern `(.+)->"(.+)" (.+)/(.+)` reads it (each part greedy), or None. Found with three rfind
    calls: the pattern's backtracking took 0.06 s on one hostile 1,000-character connection."""
    if "\n" in text:  # `.` does not match a newline
        return None
    slash = text.rfind("/", 0, max(len(text) - 1, 0))
    quote = text.rfind('" ', 0, max(slash - 1, 0)) if slash > 0 else -1
    arrow = text.rfind('->"', 1, max(quote - 1, 0)) if quote > 0 else -1
    if arrow < 1:
        return None
    return text[:arrow], text[arrow + 3 : quote], text[quote + 2 : slash], text[slash + 1 :]


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


# Rivet's ids are 21 characters and titles short: a longer node key is not Rivet's, and NODE_KEY
# must not be given megabytes to backtrack over.
MAX_KEY_CHARS = 1000
# Connections in a whole file, per allowed node: generous (Rivet nodes have a handful each).
CONNECTIONS_PER_NODE = 8


def _checked_text(text: str | bytes) -> str:
    """The file as text, or RivetImportError if it is not UTF-8 or larger than the limit."""
    size = len(text) if isinstance(text, bytes) else len(text.encode())
    if size > settings.MAX_RIVET_PROJECT_BYTES:
        raise RivetImportError(f"the file is {size} bytes; the limit is {settings.MAX_RIVET_PROJECT_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RivetImportError("not a Rivet project: the file is not UTF-8 text") from None
    return text


def _load_yaml(text: str) -> Any:
    """The YAML, read in this process (tests, commands); the web process uses `aload_yaml`."""
    try:
        return rivet_yaml.load(text)
    except rivet_yaml.YAMLRefused as exc:
        raise RivetImportError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise RivetImportError("not valid YAML: nested too deeply") from None


async def aload_yaml(text: str | bytes) -> Any:
    """The YAML, read by a child process (workflows/rivet_yaml.py) that the kernel stops past
    RIVET_PARSE_MEMORY_BYTES of memory or RIVET_PARSE_TIMEOUT_SECONDS of CPU, and that is killed
    past that much wall-clock time: awaiting it leaves the event loop free for other requests."""
    data = _checked_text(text).encode()
    seconds, memory = settings.RIVET_PARSE_TIMEOUT_SECONDS, settings.RIVET_PARSE_MEMORY_BYTES
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workflows.rivet_yaml",
        str(seconds),
        str(memory),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=settings.BASE_DIR,
    )
    try:
        out, _ = await asyncio.wait_for(child.communicate(data), timeout=seconds)
    except TimeoutError:
        out = b""
    finally:
        if child.returncode is None:  # timed out, or this request was cancelled: the child goes too
            child.kill()
            await child.wait()
    if child.returncode != 0 or not out:
        why = f"{seconds} s" if child.returncode in (-signal.SIGKILL, -signal.SIGXCPU) else f"{memory // 2**20} MB"
        raise RivetImportError(f"the file could not be read within the limits ({why}); it is too large or complex")
    answer = await asyncio.to_thread(json.loads, out)
    if "error" in answer:
        raise RivetImportError(f"not valid YAML: {answer['error']}")
    return answer["value"]


def parse_project(text: str | bytes) -> Project:
    """The project in a .rivet-project file, read in this process, or RivetImportError (see
    `project_from_document`)."""
    return project_from_document(_load_yaml(_checked_text(text)))


def project_from_document(doc: Any) -> Project:
    """The project in a .rivet-project file's YAML, or RivetImportError (not a Rivet project,
    another version, malformed nodes or connections, connections to missing nodes, too many)."""
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
    _check_counts(raw_graphs)
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
            m = NODE_KEY.fullmatch(str_or_empty(key)) if len(str_or_empty(key)) <= MAX_KEY_CHARS else None
            if m is None or not m["title"]:
                problems.append(f'{where}{str_or_empty(key)[:200]!r} is not a Rivet node key ([id]:type "title")')
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
                link = split_connection(str_or_empty(item))
                if link is None:
                    problems.append(
                        f"{where}node {m['title']!r}: {str_or_empty(item)[:200]!r} is not a connection "
                        '(port->"Title" nodeId/port)'
                    )
                    continue
                port, _, target, target_port = link
                connections.append(Connection(m["id"], port, target, target_port))
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


def _check_counts(raw_graphs: dict) -> None:
    """RivetImportError before anything is built if the file has more nodes or connections than a
    workflow may (WORKFLOW_MAX_NODES, and CONNECTIONS_PER_NODE times that)."""
    max_nodes = settings.WORKFLOW_MAX_NODES
    max_connections = max_nodes * CONNECTIONS_PER_NODE
    nodes = connections = 0
    for raw in raw_graphs.values():
        raw_nodes = raw.get("nodes") if isinstance(raw, dict) else None
        if not isinstance(raw_nodes, dict):
            continue
        nodes += len(raw_nodes)
        for value in raw_nodes.values():
            outgoing = value.get("outgoingConnections") if isinstance(value, dict) else None
            connections += len(outgoing) if isinstance(outgoing, list) else int(outgoing is not None)
    if nodes > max_nodes:
        raise RivetImportError(f"the project has {nodes} nodes; the limit is {max_nodes}")
    if connections > max_connections:
        raise RivetImportError(f"the project has {connections} connections; the limit is {max_connections}")
