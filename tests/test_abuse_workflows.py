"""Abuse of workflows as a hostile user would try it (issue 13): Rivet files built to exhaust the
server (an alias bomb, a large flat file, huge port numbers, too many nodes), regular expressions
that backtrack catastrophically, and text nodes that double their output. Each is refused or
fails with a clear reason, at once and with a bounded memory rise; the web process reads the
YAML in a child process and its event loop stays free meanwhile."""

import asyncio
import os
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from django.urls import reverse

from workflows import engine, rivet_project
from workflows.models import Workflow
from workflows.rivet_project import RivetImportError

DEADLINE = 30  # seconds: generous on a busy machine; the attacks took minutes to hours before


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


class PeakMemory:
    """This process's peak resident memory during the block, over what it held before (MB): the
    kernel's high-water mark (VmHWM) is reset on entry by writing 5 to /proc/self/clear_refs."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")
        self.before = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc):
        self.rise_mb = (_status_kb("VmHWM") - self.before) / 1024
        return False


def _children_running(fragment: str) -> list[int]:
    """Pids of this process's children whose command line contains `fragment`."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ppid == me and fragment in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
async def async_db():
    """For tests whose ORM calls run in asgiref's executor thread: its connection is closed after,
    so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


def project(nodes: str) -> str:
    return "version: 4\ndata:\n  graphs:\n    g:\n      nodes:\n" + nodes


def alias_bomb(levels: int = 9) -> str:
    """Nine lists of nine references to the list before: 9**9 (387 million) strings once expanded.
    The old importer used 2 GB and over 120 s on it before it was killed; the issue measured 17 s
    and 351 MB on a 551-byte one."""
    lines = [
        "        '[a]:text \"A\"':",
        "          data: {text: hi}",
        '          outgoingConnections: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for i in range(1, levels):
        lines.append(f"        '[a{i}]:text \"A{i}\"':")
        lines.append(f"          outgoingConnections: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]")
    return project("\n".join(lines) + "\n")


def large_flat_project(nodes: int = 1500, text_chars: int = 900) -> str:
    """A valid project of about 1.4 MB: a chain of text nodes with long texts."""
    filler = "lorem ipsum " * (text_chars // 12)
    out = []
    for i in range(nodes):
        out.append(f"        '[n{i}]:text \"T{i}\"':")
        out.append(f"          data:\n            text: '{filler}{{{{x}}}}'")
        if i + 1 < nodes:
            out.append(f'          outgoingConnections:\n            - output->"T{i + 1}" n{i + 1}/x')
    return project("\n".join(out) + "\n")


def test_an_alias_bomb_is_refused_at_once_with_bounded_memory():
    began = time.monotonic()
    with PeakMemory() as memory, pytest.raises(RivetImportError, match=r"anchors and aliases .* not allowed"):
        rivet_project.parse_project(alias_bomb())
    assert time.monotonic() - began < DEADLINE
    assert memory.rise_mb < 50


async def test_an_alias_bomb_is_refused_by_the_child_process_too():
    with pytest.raises(RivetImportError, match=r"anchors and aliases .* not allowed \(line 8\)"):
        await rivet_project.aload_yaml(alias_bomb())


@pytest.mark.django_db(transaction=True)
async def test_the_import_page_reads_a_large_file_in_a_child_while_its_event_loop_stays_free(alice, async_db):
    text = large_flat_project()
    assert 1_300_000 < len(text) < 1_600_000
    client = AsyncClient()
    await client.aforce_login(alice)
    seen_children: set[int] = set()
    ticks_beside_a_child = 0
    importing = True

    async def watch():
        """Runs on the same event loop as the view: it only gets turns if the parse does not block it."""
        nonlocal ticks_beside_a_child
        while importing:
            children = _children_running("workflows.rivet_yaml")
            if children:
                seen_children.update(children)
                ticks_beside_a_child += 1
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    with PeakMemory() as memory:
        response = await client.post(
            reverse("workflow-import"),
            {"project": _upload("big.rivet-project", text.encode())},
        )
    importing = False
    await watcher
    assert response.status_code == 302, response.content[:500]
    workflow = await Workflow.objects.aget(owner=alice)
    assert len(workflow.definition["nodes"]) == 1500
    assert seen_children and os.getpid() not in seen_children
    assert ticks_beside_a_child >= 1  # the loop kept turning while the child parsed
    assert memory.rise_mb < 200


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


@pytest.mark.django_db(transaction=True)
async def test_the_import_page_refuses_an_alias_bomb_with_a_clear_400(alice, async_db):
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post(
        reverse("workflow-import"), {"project": _upload("bomb.rivet-project", alias_bomb().encode())}
    )
    assert response.status_code == 400
    assert b"anchors and aliases" in response.content
    assert not await Workflow.objects.filter(owner=alice).aexists()


def test_a_huge_output_port_number_is_refused_without_sizing_anything():
    text = project(
        """\
        '[in]:graphInput "In"':
          data: {id: in, dataType: string}
          outgoingConnections:
            - data->"Find" find/input
        '[find]:extractRegex "Find"':
          data: {regex: (a), useRegexInput: false}
          outgoingConnections:
            - output300000000->"Out" out/value
        '[out]:graphOutput "Out"':
          data: {id: out, dataType: string}
"""
    )
    with PeakMemory() as memory, pytest.raises(RivetImportError, match="no output 'output300000000'"):
        from workflows import rivet_import

        rivet_import.to_definition(rivet_project.parse_project(text))
    assert memory.rise_mb < 50


def test_a_project_with_more_nodes_than_allowed_is_refused_before_it_is_built(settings):
    settings.WORKFLOW_MAX_NODES = 50
    nodes = "".join(f"        '[n{i}]:text \"T{i}\"':\n          data: {{text: x}}\n" for i in range(51))
    with pytest.raises(RivetImportError, match="the project has 51 nodes; the limit is 50"):
        rivet_project.parse_project(project(nodes))


def test_a_workflow_with_more_nodes_than_allowed_is_invalid(settings):
    settings.WORKFLOW_MAX_NODES = 10
    nodes = [{"id": f"p{i}", "type": "passthrough", "settings": {"value": i}} for i in range(11)]
    with pytest.raises(engine.WorkflowInvalid, match="the workflow has 11 nodes; the limit is 10"):
        engine.validate({"nodes": nodes})


def _regex_workflow(node_type: str, regex: str, text: str) -> dict:
    inputs = {"input": "src.value"} if node_type.startswith("rivet") else {"text": "src.value"}
    settings = {"regex": regex} if node_type != "rivet_match" else {"cases": [regex]}
    if node_type == "rivet_match":
        inputs = {"input": "src.value"}
    return {
        "nodes": [
            {"id": "src", "type": "passthrough", "settings": {"value": text}},
            {"id": "re", "type": node_type, "settings": settings, "inputs": inputs},
        ]
    }


@pytest.mark.parametrize("node_type", ["extract_regex", "rivet_extract_regex", "rivet_match"])
async def test_a_classic_redos_pattern_answers_at_once(node_type):
    """(a+)+$ on 34 a's and a '!' takes Python's `re` hours; the regex module sees through it."""
    began = time.monotonic()
    result = await engine.execute(_regex_workflow(node_type, r"(a+)+$", "a" * 34 + "!"))
    assert result.status == "done", result.error
    assert time.monotonic() - began < DEADLINE


@pytest.mark.parametrize("node_type", ["extract_regex", "rivet_extract_regex", "rivet_match"])
async def test_a_pattern_that_still_backtracks_fails_the_node_on_the_time_limit(node_type, settings):
    settings.WORKFLOW_REGEX_TIMEOUT_SECONDS = 0.2
    began = time.monotonic()
    result = await engine.execute(_regex_workflow(node_type, r"(a|aa)+$", "a" * 60 + "!"))
    assert result.status == "failed"
    assert "took longer than 0.2 s on this input" in result.nodes["re"].error
    assert time.monotonic() - began < DEADLINE


async def test_too_many_regex_matches_fail_the_node(settings):
    settings.WORKFLOW_MAX_LIST_ITEMS = 100
    result = await engine.execute(_regex_workflow("rivet_extract_regex", r"(a)", "a" * 101))
    assert result.status == "failed"
    assert "more than 100 items" in result.nodes["re"].error


def _doubling_chain(links: int, node_type: str = "rivet_text") -> dict:
    key = "text" if node_type == "rivet_text" else "template"
    nodes = [{"id": "n0", "type": "passthrough", "settings": {"value": "0123456789"}}]
    for i in range(1, links + 1):
        nodes.append(
            {
                "id": f"n{i}",
                "type": node_type,
                "settings": {key: "{{input}}{{input}}"},
                "inputs": {
                    "input": f"n{i - 1}." + ("value" if i == 1 else "output" if node_type == "rivet_text" else "text")
                },
            }
        )
    return {"nodes": nodes}


@pytest.mark.parametrize("node_type", ["rivet_text", "template"])
async def test_a_chain_of_text_nodes_doubling_their_input_fails_at_the_value_limit(node_type, settings):
    """60 doublings of 10 characters would be 10 * 2**60 characters; the limit stops it at 1 MB."""
    with PeakMemory() as memory:
        result = await engine.execute(_doubling_chain(60, node_type))
    assert result.status == "failed"
    # 10 * 2**17 = 1.3 M > 1 M: the 17th node is refused before it builds its text.
    failed = [node_id for node_id, node in result.nodes.items() if node.status == "failed"]
    assert failed == ["n17"]
    assert "would be 1310720 characters; the limit is 1000000" in result.nodes["n17"].error
    assert memory.rise_mb < 100


async def test_a_run_whose_outputs_together_are_over_the_limit_fails(settings):
    settings.WORKFLOW_MAX_RUN_CHARS = 5000
    nodes = [{"id": f"p{i}", "type": "passthrough", "settings": {"value": "x" * 1000}} for i in range(6)]
    result = await engine.execute({"nodes": nodes})
    assert result.status == "failed"
    assert "the run's outputs together are over 5000 characters" in result.error


async def test_a_node_output_over_the_value_limit_fails_that_node(settings):
    settings.WORKFLOW_MAX_VALUE_CHARS = 1000
    result = await engine.execute(
        {"nodes": [{"id": "big", "type": "passthrough", "settings": {"value": ["x" * 600] * 2}}]}
    )
    assert result.status == "failed"
    assert result.nodes["big"].outputs == {}
    assert "its output is over 1000 characters" in result.error


async def test_a_child_that_overruns_its_limits_gives_a_clear_error(settings):
    """The kernel enforces the memory limit the child set itself once started: with 16 MB (less than
    Python already holds) reading 1.8 MB of YAML fails in the child, and the import says why."""
    settings.RIVET_PARSE_MEMORY_BYTES = 16 * 1024 * 1024
    text = "version: 4\ndata: [" + ",".join(["lorem ipsum dolor"] * 100_000) + "]\n"
    with pytest.raises(RivetImportError, match=r"could not be read within the limits \(16 MB\)"):
        await rivet_project.aload_yaml(text)


def _rivet_children_of_daphne() -> list[int]:
    """Pids of workflows.rivet_yaml processes whose parent is a Daphne process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"workflows.rivet_yaml" not in (entry / "cmdline").read_bytes():
                continue
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if b"daphne" in Path(f"/proc/{ppid}/cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.django_db(transaction=True)
def test_under_daphne_the_import_reads_the_file_in_a_child_and_other_requests_are_answered(daphne_server, alice):
    import threading

    import requests

    from tests.test_progress_socket import session_cookie

    http = requests.Session()
    http.cookies.set("sessionid", session_cookie(alice))
    assert http.get(f"{daphne_server}/workflows/", timeout=60).status_code == 200  # sets the CSRF cookie
    token = http.cookies["csrftoken"]
    answers: dict = {}

    def upload():
        answers["import"] = http.post(
            f"{daphne_server}/workflows/import",
            files={"project": ("big.rivet-project", large_flat_project().encode())},
            headers={"X-CSRFToken": token, "Referer": f"{daphne_server}/workflows/"},
            allow_redirects=False,
            timeout=120,
        )

    uploading = threading.Thread(target=upload)
    uploading.start()
    children: set[int] = set()
    answered_beside_a_child = 0
    while uploading.is_alive():
        running = _rivet_children_of_daphne()
        if running:
            children.update(running)
            other = requests.get(f"{daphne_server}/accounts/login/", timeout=60)
            answered_beside_a_child += other.status_code == 200 and bool(set(_rivet_children_of_daphne()) & children)
    uploading.join()
    assert answers["import"].status_code == 302, answers["import"].text[:500]
    assert children, "the YAML was not read in a child of the Daphne process"
    assert Workflow.objects.filter(owner=alice, name__isnull=False).count() == 1
    # Another page was answered while the child was still reading (about 10 on this machine): the
    # parse holds neither the event loop nor the thread that sync views share.
    assert answered_beside_a_child >= 1
