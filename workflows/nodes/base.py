"""What a node type is, and the registry the engine looks types up in.

A node type is an async function `run(ctx, inputs, settings) -> outputs` plus its declared ports;
`ctx` is the NodeContext the engine made for that node.
One module per family (text.py, ai.py, graph.py, rivet.py) registers its types with `@node_type`.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any


class NotRan:
    """The value on a port whose node did not run because a branch was not taken (if/match):
    nodes that need it are skipped in turn; coalesce and output pass over it."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "NOT_RAN"


NOT_RAN = NotRan()


class NodeError(Exception):
    """A node failed for a reason the user should read (bad settings, unusable input, LLM down)."""


# set_knowledge(owner_id, recording_id, entities) -> how many were kept; LookupError if the recording
# is not the owner's. The actions layer's, handed in by whoever runs the workflow.
SetKnowledge = Callable[[int, int, list[dict]], int]


@dataclass
class Context:
    """What a run gives its nodes besides their inputs: whose run it is, the values it was started
    with, the model, and where progress goes. The caller's: the engine reads it, never changes it,
    so one Context may serve several runs."""

    owner_id: int | None = None
    recording_id: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # the run's inputs by name (input nodes)
    # emit(node_id, message): streamed tokens and other progress, sent to the run's page.
    emit: Callable[[str, dict], Awaitable[None]] | None = None
    # The LLM to talk to (workflows.llm.LLM); created per run because it is bound to the event loop.
    llm: Any = None
    # How graph_write keeps typed entities as the recording's knowledge (a state change that
    # crosses apps, so it lives in the actions layer and is handed in, never imported).
    set_knowledge: SetKnowledge | None = None


@dataclass
class NodeContext(Context):
    """The run's Context as one node sees it: the engine makes one for each node it runs, so what
    belongs to the execution (its caps, the node's own counters) never lands on the caller's."""

    node_id: str = ""
    # The run's concurrency caps per resource ("llm"), shared by its nodes; held per request.
    limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    attempts: int = 1  # requests the node's answer took (retries included), for its NodeRun

    @classmethod
    def for_node(cls, ctx: Context, node_id: str, limits: dict[str, asyncio.Semaphore]) -> "NodeContext":
        return cls(**{f.name: getattr(ctx, f.name) for f in fields(Context)}, node_id=node_id, limits=limits)

    async def send(self, message: dict) -> None:
        """Report from inside the node (e.g. a streamed token) to whoever watches the run."""
        if self.emit is not None:
            await self.emit(self.node_id, message)

    def limit(self, resource: str) -> asyncio.Semaphore:
        """The run's semaphore for `resource`; one slot if the run set no cap for it."""
        return self.limits.setdefault(resource, asyncio.Semaphore(1))


Run = Callable[[NodeContext, dict, dict], Awaitable[dict]]


@dataclass(frozen=True)
class NodeType:
    name: str
    run: Run
    inputs: tuple[str, ...] = ()  # must be connected
    optional: tuple[str, ...] = ()  # may be connected
    outputs: tuple[str, ...] = ()
    any_inputs: bool = False  # accepts ports of any name (template, output, coalesce)
    any_outputs: bool = False  # ports depend on settings (match cases, regex groups)
    takes_not_ran: bool = False  # runs even when an input did not run (coalesce, output)
    cached: bool = False  # results cached in Redis under type + settings + model + inputs
    description: str = ""

    def allows_input(self, port: str) -> bool:
        return self.any_inputs or port in self.inputs or port in self.optional

    def allows_output(self, port: str, settings: dict) -> bool:
        return self.any_outputs or port in self.outputs


REGISTRY: dict[str, NodeType] = {}


def node_type(name: str, **spec):
    """Register the decorated `async def run(ctx, inputs, settings) -> dict` as node type `name`."""

    def register(run: Run) -> Run:
        if name in REGISTRY:
            raise ValueError(f"node type {name!r} registered twice")
        REGISTRY[name] = NodeType(name=name, run=run, description=(run.__doc__ or "").strip(), **spec)
        return run

    return register


def load_all() -> dict[str, NodeType]:
    """Import every node family (they register themselves) and return the registry."""
    from . import ai, graph, rivet, text  # noqa: F401

    return REGISTRY
