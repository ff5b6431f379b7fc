"""Import Rivet projects (Ironclad's AI graph IDE, `.rivet-project`, read by workflows/rivet_project.py)
as workflow definitions for the engine (workflows/engine.py), and save them as workflows.

What each supported Rivet node type means (its engine node type, ports, kept data, what in it is
refused) is its RivetNodeSpec in workflows/nodes/rivet.py; this module is generic over them but
for the three types that join graphs: a subGraph is inlined, its graphInputs fed by what feeds
it, and the main graph's graphOutputs become one `output` node.

The main graph (`mainGraphId`, else the first) and every graph it calls are checked, and all
problems are reported at once, each naming the node by its title: node types without a spec,
options this app cannot honour, invalid regular expressions, connections to missing nodes or
from ports a node does not have, subGraphs calling missing graphs or themselves.

The engine node ids are the Rivet node ids (in an inlined subgraph prefixed "<subGraph id>/"),
and each node's settings keep its `title`. Deviations from Rivet in importing (those of the node
types are in workflows/nodes/rivet.py):
- A subGraph is inlined rather than called: its nodes wait for the subGraph node, so a subGraph
  whose inputs did not run runs none of its nodes; its graphOutput nodes then show as done with
  nothing in them.
- Several graphOutput nodes with the same id: the first in the file that has a value wins.
- Disabled nodes and split runs (isSplitRun) are refused: their semantics are not ones the
  engine has. Connections to input ports a node does not have are ignored, as Rivet does.
- Only the main graph and the graphs it calls are checked and converted; others are ignored.
"""

from typing import Any

from django.conf import settings

from .nodes.rivet import COALESCE, GATE, GRAPH_INPUT, GRAPH_OUTPUT, SPECS, SUBGRAPH
from .rivet_project import (
    Connection,
    Project,
    RivetGraph,
    RivetImportError,
    RivetNode,
    aload_yaml,
    parse_project,
    project_from_document,
    str_or_empty,
)

__all__ = ["RivetImportError", "aload_yaml", "import_document", "import_project", "to_definition"]  # views, tests

OUTPUT_NODE = "graph-outputs"


def _accepts(project: Project, node: RivetNode, port: str) -> bool:
    spec = SPECS.get(node.type)
    return spec is not None and spec.accepts(node, port, project)


# Checks.


def _graphs_to_run(project: Project, graph_id: str, problems: list[str]) -> list[str]:
    """The graph and every graph it calls, depth first; missing graphs and recursion are problems."""
    done, path = [], []

    def visit(gid: str) -> None:
        path.append(gid)
        graph = project.graphs[gid]
        for node in graph.nodes.values():
            if node.type != SUBGRAPH.rivet_type:
                continue
            target = node.text("graphId")
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


def _node_problems(node: RivetNode) -> list[str]:
    """What stops this app from running the node as Rivet would, each starting with its title."""
    spec = SPECS.get(node.type)
    if spec is None:
        return [
            f"node {node.title!r} has type {node.type!r}, which this app cannot run (supported: {', '.join(SPECS)})"
        ]
    found = []
    if node.disabled:
        found.append(f"{node.label} is disabled; enable or delete it before importing")
    if node.split_run:
        found.append(f"{node.label} uses split run, which this app cannot run")
    return found + spec.problems(node)


def _graph_problems(project: Project, graph: RivetGraph) -> list[str]:
    found = []
    for node in graph.nodes.values():
        found += _node_problems(node)
    fed = set()
    for c in graph.connections:
        source, target = graph.nodes[c.source], graph.nodes[c.target]
        spec = SPECS.get(source.type)
        # A subGraph calling a missing graph has no ports; _graphs_to_run reports it once.
        calls_nothing = source.type == SUBGRAPH.rivet_type and source.text("graphId") not in project.graphs
        if spec is not None and not calls_nothing and not spec.emits(source, c.source_port, project):
            found.append(
                f"{source.label} has no output {c.source_port!r} that this app "
                f"can produce, but it is connected to {target.title!r}"
            )
        if _accepts(project, target, c.target_port):
            if (c.target, c.target_port) in fed:
                found.append(f"node {target.title!r}: input {c.target_port!r} has more than one connection")
            fed.add((c.target, c.target_port))
    for node in graph.nodes.values():
        spec = SPECS.get(node.type)
        for port in spec.required if spec is not None else ():
            if (node.id, port) not in fed:
                found.append(f"{node.label}: input {port!r} is not connected")
    return found


# Building the definition.


class _Builder:
    def __init__(self, project: Project):
        self.project = project
        self.nodes: list[dict] = []

    def add(self, node: dict) -> None:
        # After inlining: a graph calling another twice, and so on, grows fast.
        if len(self.nodes) >= settings.WORKFLOW_MAX_NODES:
            raise RivetImportError(
                f"the graph has more than {settings.WORKFLOW_MAX_NODES} nodes once its subGraphs are included"
            )
        self.nodes.append(node)

    def graph(self, graph_id: str, prefix: str = "", gate: str | None = None, caller: dict | None = None) -> dict:
        """Add the graph's nodes (ids prefixed, each waiting for `gate`); its outputs: id → reference.
        `caller`, for a subgraph: {"inputs": {graph input id: reference}, "values": {id: value}}."""
        project, graph = self.project, self.project.graphs[graph_id]
        incoming: dict[str, dict[str, Connection]] = {}
        outgoing: dict[str, list[str]] = {}  # node id → its connected output ports
        for c in graph.connections:
            if _accepts(project, graph.nodes[c.target], c.target_port):  # Rivet ignores the others
                incoming.setdefault(c.target, {})[c.target_port] = c
            outgoing.setdefault(c.source, []).append(c.source_port)
        inlined: dict[str, dict | None] = {}  # subGraph node id → its outputs (None while inlining)

        def settings_of(node: RivetNode) -> dict:
            return SPECS[node.type].settings(node, outgoing.get(node.id, []))

        def reference(c: Connection) -> str:
            source = graph.nodes[c.source]
            if source.type == SUBGRAPH.rivet_type:
                return inline(source)[c.source_port]
            return f"{prefix}{source.id}.{c.source_port}"

        def inputs_of(node: RivetNode) -> dict:
            inputs = {port: reference(c) for port, c in incoming.get(node.id, {}).items()}
            return inputs | ({GATE: gate} if gate else {})

        def inline(node: RivetNode) -> dict:
            if node.id in inlined:
                outputs = inlined[node.id]
                if outputs is None:
                    raise RivetImportError(f"subGraph {node.title!r} is connected in a cycle")
                return outputs
            inlined[node.id] = None
            engine_id = prefix + node.id
            inputs = inputs_of(node)
            self.add({"id": engine_id, "type": SUBGRAPH.node_type, "settings": settings_of(node), "inputs": inputs})
            # The called graph's inputs are fed by what feeds this node (or its inputData), directly.
            given = node.data.get("inputData")
            given = given if isinstance(given, dict) else {}
            values = {
                str_or_empty(key): value.get("value") if isinstance(value, dict) else value
                for key, value in given.items()
            }
            fed = {port: ref for port, ref in inputs.items() if port != GATE}
            outputs = self.graph(
                node.text("graphId"), f"{engine_id}/", f"{engine_id}.ran", {"inputs": fed, "values": values}
            )
            inlined[node.id] = outputs
            return outputs

        outputs: dict[str, list[str]] = {}
        for node in graph.nodes.values():
            if node.type == SUBGRAPH.rivet_type:
                inline(node)
                continue
            settings, inputs = settings_of(node), inputs_of(node)
            if node.type == GRAPH_INPUT.rivet_type and caller is not None:
                settings["inlined"] = True
                if settings["id"] in caller["inputs"]:
                    inputs["value"] = caller["inputs"][settings["id"]]
                elif caller["values"].get(settings["id"]) is not None:
                    settings["callerValue"] = caller["values"][settings["id"]]
            if node.type == GRAPH_OUTPUT.rivet_type:
                outputs.setdefault(settings["id"], []).append(f"{prefix}{node.id}.valueOutput")
            self.add(
                {"id": prefix + node.id, "type": SPECS[node.type].node_type, "settings": settings, "inputs": inputs}
            )

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
                    "type": COALESCE.node_type,
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
    problems: list[str] = []
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
    """Parse (in this process), convert and validate an uploaded project, and save it as the
    owner's Workflow. The web view reads the YAML in a child process and calls `import_document`."""
    return _save(owner, parse_project(uploaded_text), name)


def import_document(owner, document: Any, name: str | None = None):
    """`import_project` for a file whose YAML was already read (by `aload_yaml`)."""
    return _save(owner, project_from_document(document), name)


def _save(owner, project: Project, name: str | None):
    from . import engine
    from .models import Workflow

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
