"""The DAG executor: validate a workflow, then run every node as soon as its inputs are ready.

A definition is `{"nodes": [{"id", "type", "settings": {...}, "inputs": {port: "node.port"}}]}`.
Validation names the node at fault (unknown type, missing or dangling connection, cycle) before
anything runs, and so is a workflow of more than WORKFLOW_MAX_NODES nodes. Execution is asyncio: independent branches run at once, each resource ("llm") behind
its own semaphore (held per request, so a node's own parallel calls count too) so a 2-core
machine is not thrashed; AI results are cached in Redis; a failed node
fails the run with its reason, cancels what is still running, and finished nodes keep their results.
A node whose output is over WORKFLOW_MAX_VALUE_CHARS fails (text nodes check before they build it),
and so does the one that takes a run's outputs together over WORKFLOW_MAX_RUN_CHARS.
"""

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

import orjson
from django.conf import settings as django_settings
from django.core.cache import cache

from common import metrics

from .nodes.base import NOT_RAN, Context, NodeContext, NodeError, NodeType, load_all
from .nodes.limits import value_chars


class WorkflowInvalid(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Node:
    id: str
    type: NodeType
    settings: dict
    inputs: dict[str, tuple[str, str]]  # port -> (source node id, source port)


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]
    order: tuple[str, ...]  # a topological order, for display

    def dependencies(self) -> dict[str, set[str]]:
        return {n.id: {source for source, _ in n.inputs.values()} for n in self.nodes.values()}


@dataclass
class NodeResult:
    status: str  # done, failed, skipped, cancelled, not_run
    outputs: dict = field(default_factory=dict)
    started: float | None = None  # time.time()
    duration_ms: float | None = None
    cache_hit: bool = False
    attempts: int = 0
    error: str = ""


@dataclass
class RunResult:
    status: str  # done or failed
    nodes: dict[str, NodeResult]
    outputs: dict
    error: str = ""


def _reference(value) -> tuple[str, str] | None:
    if not isinstance(value, str) or "." not in value:
        return None
    source, port = value.rsplit(".", 1)
    return source, port


def validate(definition: dict) -> Graph:
    """The workflow as a Graph, or WorkflowInvalid listing every problem, each naming its node."""
    registry = load_all()
    problems = []
    raw_nodes = definition.get("nodes") if isinstance(definition, dict) else None
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise WorkflowInvalid(["the workflow has no nodes"])
    if len(raw_nodes) > django_settings.WORKFLOW_MAX_NODES:
        raise WorkflowInvalid(
            [f"the workflow has {len(raw_nodes)} nodes; the limit is {django_settings.WORKFLOW_MAX_NODES}"]
        )
    raw = {}
    for item in raw_nodes:
        node_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(node_id, str) or not node_id:
            problems.append(f"a node has no id: {item!r:.80}")
        elif node_id in raw:
            problems.append(f"node {node_id!r}: the id is used twice")
        else:
            raw[node_id] = item
    nodes = {}
    for node_id, item in raw.items():
        kind = registry.get(item.get("type"))
        if kind is None:
            problems.append(f"node {node_id!r}: unknown node type {item.get('type')!r}")
            continue
        inputs = {}
        for port, value in (item.get("inputs") or {}).items():
            ref = _reference(value)
            if ref is None:
                problems.append(f"node {node_id!r}: input {port!r} must be 'node.port', not {value!r}")
            elif not kind.allows_input(port):
                problems.append(f"node {node_id!r} ({kind.name}) has no input {port!r}")
            elif ref[0] not in raw:
                problems.append(f"node {node_id!r}: input {port!r} comes from unknown node {ref[0]!r}")
            else:
                inputs[port] = ref
        for port in kind.inputs:
            if port not in inputs and not any(p.startswith(f"node {node_id!r}: input {port!r}") for p in problems):
                problems.append(f"node {node_id!r} ({kind.name}): input {port!r} is not connected")
        nodes[node_id] = Node(node_id, kind, dict(item.get("settings") or {}), inputs)
    for node in nodes.values():
        for port, (source, source_port) in node.inputs.items():
            if source in nodes and not nodes[source].type.allows_output(source_port, nodes[source].settings):
                problems.append(
                    f"node {node.id!r}: input {port!r} wants {source}.{source_port}, "
                    f"but {nodes[source].type.name} has no output {source_port!r}"
                )
    if problems:
        raise WorkflowInvalid(problems)
    graph_deps = {n.id: {s for s, _ in n.inputs.values()} for n in nodes.values()}
    try:
        order = tuple(TopologicalSorter(graph_deps).static_order())
    except CycleError as exc:
        raise WorkflowInvalid([f"nodes {' → '.join(map(repr, exc.args[1]))} form a cycle"]) from None
    return Graph(nodes, order)


def cache_key(owner_id: int | None, node: Node, inputs: dict) -> str:
    """Owner + node type + settings + model + inputs: the same AI operation on the same text is reused,
    by the same user only. A cache shared across users would answer one user's run from another's,
    and the hit (seen in the run's record, and in its speed) would tell that someone ran that input."""
    material = orjson.dumps(
        [owner_id, node.type.name, node.settings, django_settings.LLM_MODEL, inputs],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        default=str,
    )
    return "wf:node:" + hashlib.sha256(material).hexdigest()


OnNode = Callable[[str, NodeResult], Awaitable[None]]


class Executor:
    """One run of a graph. `on_node(node_id, result)` is awaited as each node settles. The run's
    semaphores (`limits` over the settings' caps) are its own: each node reaches them through the
    NodeContext made for it, and the caller's Context is left as it was given."""

    def __init__(self, graph: Graph, ctx: Context, on_node: OnNode | None = None, limits: dict[str, int] | None = None):
        self.graph = graph
        self.ctx = ctx
        self.on_node = on_node
        caps = {"llm": django_settings.LLM_MAX_CONCURRENCY} | (limits or {})
        self.limits = {name: asyncio.Semaphore(cap) for name, cap in caps.items()}
        self.results: dict[str, NodeResult] = {}
        self.output_chars = 0  # the run's node outputs so far, against WORKFLOW_MAX_RUN_CHARS

    def _inputs_of(self, node: Node) -> dict:
        return {
            port: self.results[source].outputs.get(port_out, NOT_RAN)
            for port, (source, port_out) in node.inputs.items()
        }

    async def _run_node(self, node: Node) -> NodeResult:
        inputs = self._inputs_of(node)
        if not node.type.takes_not_ran and any(v is NOT_RAN for v in inputs.values()):
            return NodeResult("skipped", {port: NOT_RAN for port in node.type.outputs})
        result = NodeResult("done", started=time.time())
        began = time.perf_counter()
        key = cache_key(self.ctx.owner_id, node, inputs) if node.type.cached else None
        if key is not None:
            hit = await cache.aget(key)
            metrics.AI_CACHE.labels(node.type.name, "miss" if hit is None else "hit").inc()
            if hit is not None:
                result.outputs, result.cache_hit = hit, True
                result.duration_ms = (time.perf_counter() - began) * 1000
                self._check_size(result)
                return result
        node_ctx = NodeContext.for_node(self.ctx, node.id, self.limits)
        try:
            result.outputs = await node.type.run(node_ctx, inputs, node.settings)
        except asyncio.CancelledError:
            raise
        except NodeError as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # a bug or an unreachable service: the run reports it, the worker lives
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.duration_ms = (time.perf_counter() - began) * 1000
        result.attempts = node_ctx.attempts
        if result.status == "done":
            self._check_size(result)
        if result.status == "done" and key is not None:
            await cache.aset(key, result.outputs, timeout=django_settings.LLM_CACHE_SECONDS)
        return result

    def _check_size(self, result: NodeResult) -> None:
        """Fail the result (dropping its outputs) if it is over the value limit or takes the run over its own."""
        value_limit, run_limit = django_settings.WORKFLOW_MAX_VALUE_CHARS, django_settings.WORKFLOW_MAX_RUN_CHARS
        size = value_chars(result.outputs, value_limit)
        if size > value_limit:
            result.error = f"its output is over {value_limit} characters (WORKFLOW_MAX_VALUE_CHARS)"
        elif self.output_chars + size > run_limit:
            result.error = f"the run's outputs together are over {run_limit} characters (WORKFLOW_MAX_RUN_CHARS)"
        else:
            self.output_chars += size
            return
        result.status, result.outputs = "failed", {}

    async def _settle(self, node_id: str, result: NodeResult) -> None:
        self.results[node_id] = result
        if self.on_node is not None:
            await self.on_node(node_id, result)

    async def run(self) -> RunResult:
        sorter = TopologicalSorter(self.graph.dependencies())
        sorter.prepare()
        running: dict[asyncio.Task, str] = {}
        failure = ""
        while sorter.is_active() and not failure:
            for node_id in sorter.get_ready():
                task = asyncio.create_task(self._run_node(self.graph.nodes[node_id]), name=node_id)
                running[task] = node_id
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node_id = running.pop(task)
                result = task.result()
                await self._settle(node_id, result)
                if result.status == "failed":
                    failure = f"node {node_id!r} failed: {result.error}"
                sorter.done(node_id)
        for task in running:  # a node failed: stop the rest
            task.cancel()
        for task, node_id in running.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._settle(node_id, NodeResult("cancelled", error="another node failed"))
        for node_id in self.graph.order:
            if node_id not in self.results:
                await self._settle(node_id, NodeResult("not_run"))
        outputs = {}
        for node in self.graph.nodes.values():
            if node.type.name == "output" and self.results[node.id].status == "done":
                outputs.update(self.results[node.id].outputs)
        return RunResult("failed" if failure else "done", self.results, outputs, failure)


async def execute(
    definition_or_graph: dict | Graph,
    ctx: Context | None = None,
    on_node: OnNode | None = None,
    limits: dict[str, int] | None = None,
) -> RunResult:
    graph = definition_or_graph if isinstance(definition_or_graph, Graph) else validate(definition_or_graph)
    return await Executor(graph, ctx or Context(), on_node, limits).run()
