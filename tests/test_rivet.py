"""Rivet projects: parsing the YAML, refusing what cannot run, running imported graphs on the
engine (with and without the real local LLM), and saving them as workflows."""

import random
import re
from pathlib import Path

import pytest

from workflows import engine, rivet_import, rivet_project, rivet_yaml
from workflows.llm import LLM
from workflows.models import Workflow
from workflows.nodes.base import Context
from workflows.rivet_project import RivetImportError

EXAMPLE = Path(rivet_import.__file__).parent / "examples" / "meeting-mood.rivet-project"

# Every supported type but prompt and chat, so it runs without a model. Written the way Rivet
# writes files: YES / NO unquoted (strings in YAML 1.2, booleans to PyYAML), a connection folded
# over two lines, a title with quotes in it.
ROUTER = """\
version: 4
data:
  graphs:
    mAin:
      metadata:
        description: Routes an answer.
        id: mAin
        name: Answer Router
      nodes:
        '[in]:graphInput "Answer"':
          data:
            dataType: string
            defaultValue: maybe
            id: answer
            useDefaultValueInput: false
          outgoingConnections:
            - data->"Find "the" word" find/input
            - data->"Found?" found/value
          visualData: 0/0/300/1//
        '[find]:extractRegex "Find "the" word"':
          data:
            errorOnFailed: false
            multilineMode: false
            regex: \\b(YES|NO|maybe)\\b
            useRegexInput: false
          outgoingConnections:
            - output1->"Route" route/value
            - output1->"Word" word/value
            - succeeded->"Found?"
              found/if
          visualData: 1/0/300/2//
        '[found]:if "Found?"':
          data:
            unconnectedControlFlowExcluded: true
          outgoingConnections:
            - falseOutput->"Unknown Reply" unknown/raw
            - output->"Route" route/input
          visualData: 2/0/300/3//
        '[route]:match "Route"':
          data:
            cases:
              - YES
              - NO
            exclusive: true
          outgoingConnections:
            - case1->"Yes Reply" yes/word
            - case2->"Negate" negate/word
            - unmatched->"Maybe Reply" maybe/word
          visualData: 3/0/300/4//
        '[yes]:text "Yes Reply"':
          data:
            text: You said {{word}}.
          outgoingConnections:
            - output->"Pick" pick/input1
          visualData: 4/0/300/5//
        '[negate]:subGraph "Negate"':
          data:
            graphId: sUb
            useErrorOutput: false
          outgoingConnections:
            - note->"Note" noteOut/value
            - sentence->"Pick" pick/input2
          visualData: 4/1/300/6//
        '[maybe]:text "Maybe Reply"':
          data:
            text: Maybe {{ word }}? {{{literal}}}
          outgoingConnections:
            - output->"Pick" pick/input3
          visualData: 4/2/300/7//
        '[unknown]:text "Unknown Reply"':
          data:
            text: "Unknown: {{raw}}{{unconnected}}"
          outgoingConnections:
            - output->"Pick" pick/input4
          visualData: 4/3/300/8//
        '[pick]:coalesce "Pick"':
          outgoingConnections:
            - output->"Reply" reply/value
          visualData: 5/0/300/9//
        '[reply]:graphOutput "Reply"':
          data:
            dataType: string
            id: reply
          visualData: 6/0/300/10//
        '[word]:graphOutput "Word"':
          data:
            dataType: string
            id: word
          visualData: 6/1/300/11//
        '[noteOut]:graphOutput "Note"':
          data:
            dataType: string
            id: note
          visualData: 6/2/300/12//
    sUb:
      metadata:
        description: ""
        id: sUb
        name: Negate
      nodes:
        '[sIn]:graphInput "Word"':
          data:
            dataType: string
            id: word
          outgoingConnections:
            - data->"Sentence" sText/word
          visualData: 0/0/300/1//
        '[sText]:text "Sentence"':
          data:
            text: Not {{word}}, then.
          outgoingConnections:
            - output->"Sentence" sOut/value
          visualData: 1/0/300/2//
        '[sConst]:text "Constant"':
          data:
            text: NO
          outgoingConnections:
            - output->"Note" sNote/value
          visualData: 1/1/300/3//
        '[sOut]:graphOutput "Sentence"':
          data:
            dataType: string
            id: sentence
          visualData: 2/0/300/4//
        '[sNote]:graphOutput "Note"':
          data:
            dataType: string
            id: note
          visualData: 2/1/300/5//
  metadata:
    description: ""
    id: pRoj
    mainGraphId: mAin
    title: Router
  plugins: []
"""


def project_with(nodes: str, extra_graphs: str = "") -> str:
    """A one-graph project (plus extra graphs) around the given node entries (indented 8)."""
    return f"""\
version: 4
data:
  graphs:
    g1:
      metadata:
        id: g1
        name: Main
      nodes:
{nodes}{extra_graphs}
  metadata:
    id: p
    mainGraphId: g1
    title: Test
"""


def test_the_example_parses_into_its_nodes_and_connections():
    project = rivet_project.parse_project(EXAMPLE.read_text())
    assert project.title == "Meeting Mood" and project.main_graph_id == "mAinGrAphTrAnscr1pt01"
    main, sub = project.graphs["mAinGrAphTrAnscr1pt01"], project.graphs["sUbGrAphFoLLowUp00001"]
    assert (main.name, sub.name) == ("Meeting Mood", "Follow Up")
    assert len(main.nodes) == 15 and len(sub.nodes) == 3
    chat = main.nodes["E5chatClassifyMood001"]
    assert (chat.type, chat.title, chat.data["maxTokens"]) == ("chat", "Classify Mood", 8)
    assert main.nodes["H8matchRouteMood00001"].data["cases"] == ["[Hh]appy", "[Aa]ngry"]
    assert main.nodes["M3coalescePickReply01"].data == {}  # Rivet leaves out an empty `data`
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in main.connections}
    assert len(edges) == 19
    assert ("E5chatClassifyMood001", "response", "F6extractRegexMood001", "input") in edges
    assert ("H8matchRouteMood00001", "case2", "J0subGraphFollowUp001", "complaint") in edges
    assert ("J0subGraphFollowUp001", "ticket", "M3coalescePickReply01", "input2") in edges

    definition = rivet_import.to_definition(project)
    nodes = {node["id"]: node for node in definition["nodes"]}
    assert nodes["E5chatClassifyMood001"]["type"] == "rivet_chat"
    assert nodes["E5chatClassifyMood001"]["settings"]["title"] == "Classify Mood"
    assert nodes["E5chatClassifyMood001"]["inputs"] == {
        "prompt": "C3promptUserMessage01.output",
        "systemPrompt": "D4textSystemPrompt001.output",
    }
    # The subGraph's nodes are inlined, fed by what feeds the subGraph node, and wait for it.
    inner = nodes["J0subGraphFollowUp001/S1graphInputComplaint"]
    assert inner["inputs"] == {"value": "H8matchRouteMood00001.case2", "_gate": "J0subGraphFollowUp001.ran"}
    ticket = "J0subGraphFollowUp001/S3graphOutputTicket01.valueOutput"
    assert nodes["M3coalescePickReply01"]["inputs"]["input2"] == ticket
    assert nodes["graph-outputs"] == {
        "id": "graph-outputs",
        "type": "output",
        "settings": {"title": "Graph outputs"},
        "inputs": {"reply": "N4graphOutputReply001.valueOutput", "raw_response": "O5graphOutputRawResp1.valueOutput"},
    }
    engine.validate(definition)


@pytest.mark.parametrize(
    "scalar, value",
    [
        ("YES", "YES"),
        ("on", "on"),
        ("12:30", "12:30"),
        ("2023-01-01", "2023-01-01"),
        ("017", 17),
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1e3", 1000.0),
        ("-.inf", float("-inf")),
        ("~", None),
        ("", None),
        ("TRUE", True),
        ("tRUE", "tRUE"),
        ("'1'", "1"),
        ("!!str 12", "12"),
    ],
)
def test_plain_scalars_mean_what_yaml_1_2_says(scalar, value):
    assert rivet_yaml.load(f"k: {scalar}\n") == {"k": value}


def test_yaml_is_read_as_yaml_1_2_and_folded_connections_are_joined():
    project = rivet_project.parse_project(ROUTER)
    main, sub = project.graphs["mAin"], project.graphs["sUb"]
    assert main.nodes["route"].data["cases"] == ["YES", "NO"]  # not [True, False]
    assert sub.nodes["sConst"].data["text"] == "NO"
    assert main.nodes["find"].title == 'Find "the" word'
    assert rivet_project.Connection("find", "succeeded", "found", "if") in main.connections


@pytest.mark.parametrize(
    "answer, reply, word, note",
    [
        ("YES please", "You said YES.", "YES", None),
        ("NO way", "Not NO, then.", "NO", "NO"),  # through the subgraph
        ("maybe later", "Maybe maybe? {{literal}}", "maybe", None),
        ("hmm", "Unknown: hmm", None, None),  # no match: `if` takes its false branch, the group is None
        (None, "Maybe maybe? {{literal}}", "maybe", None),  # no input: the graphInput's default
    ],
)
async def test_a_project_without_llm_nodes_runs_end_to_end(answer, reply, word, note):
    definition = rivet_import.to_definition(rivet_project.parse_project(ROUTER))
    inputs = {} if answer is None else {"answer": answer}
    result = await engine.execute(definition, Context(inputs=inputs))
    assert result.status == "done", result.error
    assert result.outputs["reply"] == reply
    assert result.outputs["word"] == word
    # The subgraph's constant node runs only when the subgraph does: Rivet runs all of it or nothing.
    assert result.outputs.get("note") == note
    assert (result.nodes["negate/sConst"].status == "done") == (note is not None)
    ran = [n for n in ("yes", "negate/sText", "maybe", "unknown") if result.nodes[n].status == "done"]
    assert len(ran) == 1


def test_every_unsupported_node_is_refused_with_its_type_and_title():
    text = project_with(
        """\
        '[a]:loop "Repeat"':
          visualData: 0/0/300/1//
        '[b]:code "Run JS"':
          data:
            code: return {}
          visualData: 0/0/300/2//
        '[c]:text "Fine"':
          data:
            text: hello
          visualData: 0/0/300/3//
        '[d]:subGraph "Call"':
          data:
            graphId: g2
          visualData: 0/0/300/4//
""",
        """
    g2:
      metadata:
        id: g2
        name: Helper
      nodes:
        '[e]:readFile "Read It"':
          visualData: 0/0/300/1//""",
    )
    with pytest.raises(RivetImportError) as caught:
        rivet_import.to_definition(rivet_project.parse_project(text))
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("node 'Repeat' has type 'loop', which this app cannot run (supported: text, prompt")
    assert "node 'Run JS' has type 'code'" in problems[1]
    assert "graph 'Helper': node 'Read It' has type 'readFile'" in problems[2]
    assert "'Fine'" not in str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 4\ndata: [\n", "not valid YAML"),
        ("version: 4\ndata:\n  graphs: {a: 1\n", "not valid YAML"),
        ("just some text", "not a Rivet project"),
        ("- a\n- list\n", "not a Rivet project"),
        ("", "not a Rivet project"),
        ("version: 3\ndata: {graphs: {}}\n", "unsupported Rivet file version 3"),
        ("version: 4\ndata:\n  graphs: {}\n", "`data.graphs` is missing or empty"),
        ("version: 4\nversion: 4\n", "the key 'version' appears twice in one mapping (line 2)"),
        ("version: 4\n---\nversion: 4\n", "more than one YAML document"),
        ("version: !!python/name:os.system 4\n", "the tag 'tag:yaml.org,2002:python/name:os.system' is not allowed"),
        ("version: 4\ndata: &d {graphs: {}}\n", "anchors and aliases (&, *) are not allowed (line 2)"),
        ("version: 4\ndata: " + "[" * 300 + "]" * 300 + "\n", "nested more than 200 deep"),
        (
            project_with("""\
        'no key format':
          visualData: 0/0/300/1//
"""),
            "is not a Rivet node key",
        ),
        (
            project_with("""\
        '[a]:text "A"':
          data:
            text: hi
          outgoingConnections:
            - output->"Gone" nowhere/x
"""),
            "node 'A': output 'output' is connected to node 'nowhere', which is not in the graph",
        ),
    ],
)
def test_files_that_are_not_version_4_rivet_projects_are_refused(text, message):
    with pytest.raises(RivetImportError, match=re.escape(message)):
        rivet_project.parse_project(text)


@pytest.mark.parametrize(
    "nodes, extra, message",
    [
        (
            """\
        '[s]:subGraph "Call"':
          data:
            graphId: missing
""",
            "",
            "subGraph 'Call' calls graph 'missing', which is not in the project",
        ),
        (
            """\
        '[s]:subGraph "Call"':
          data:
            graphId: g2
""",
            """
    g2:
      metadata:
        id: g2
        name: Loop Back
      nodes:
        '[t]:subGraph "Back"':
          data:
            graphId: g1
""",
            "graph 'Loop Back': subGraph 'Back' calls graph 'Main' recursively (Main → Loop Back → Main)",
        ),
        (
            """\
        '[r]:extractRegex "Bad Regex"':
          data:
            regex: "(unclosed"
""",
            "",
            "node 'Bad Regex' (extractRegex): '(unclosed' is not a valid regular expression",
        ),
        (
            """\
        '[p]:text "Prompt"':
          data:
            text: hi
          outgoingConnections:
            - output->"Chat" c/prompt
        '[c]:chat "Chat"':
          data:
            enableFunctionUse: true
            model: gpt-4o
""",
            "",
            "node 'Chat' (chat) asks for function calling, which this app cannot do",
        ),
        (
            """\
        '[t]:text "Shout"':
          data:
            text: "{{name | uppercase}}"
""",
            "",
            "node 'Shout' (text) uses {{name | uppercase}}, which this app cannot fill",
        ),
        (
            """\
        '[t]:text "Off"':
          data:
            text: hi
          disabled: true
""",
            "",
            "node 'Off' (text) is disabled",
        ),
        (
            """\
        '[p]:text "Prompt"':
          data:
            text: hi
          outgoingConnections:
            - output->"Chat" c/prompt
        '[c]:chat "Chat"':
          data:
            model: gpt-4o
          outgoingConnections:
            - cost->"Out" o/value
        '[o]:graphOutput "Out"':
          data:
            id: out
""",
            "",
            "node 'Chat' (chat) has no output 'cost' that this app can produce, but it is connected to 'Out'",
        ),
        (
            """\
        '[m]:match "Route"':
          data:
            cases: [a]
""",
            "",
            "node 'Route' (match): input 'input' is not connected",
        ),
    ],
)
def test_graphs_that_cannot_run_are_refused_by_title(nodes, extra, message):
    with pytest.raises(RivetImportError, match=re.escape(message)):
        rivet_import.to_definition(rivet_project.parse_project(project_with(nodes, extra)))


def test_files_over_the_size_limit_are_refused(settings):
    settings.MAX_RIVET_PROJECT_BYTES = 1024
    with pytest.raises(RivetImportError, match="the limit is 1024"):
        rivet_project.parse_project(ROUTER)


async def test_the_example_runs_on_the_local_llm(llm_server):
    definition = rivet_import.to_definition(rivet_project.parse_project(EXAMPLE.read_text()))
    transcript = "Ana: We shipped the release today. Ben: I am so happy, great work everyone!"
    llm = LLM()
    try:
        result = await engine.execute(definition, Context(llm=llm, inputs={"transcript": transcript}))
    finally:
        await llm.close()
    assert result.status == "done", result.error
    chat = result.nodes["E5chatClassifyMood001"]
    response = chat.outputs["response"]
    assert isinstance(response, str) and response.strip()
    assert chat.outputs["all-messages"][-1] == {"type": "assistant", "message": response}
    assert transcript in chat.outputs["in-messages"][1]["message"]
    assert result.outputs["raw_response"] == response
    branches = [
        "I9textHappyReply00001",
        "J0subGraphFollowUp001/S2textTicket000000001",
        "K1textNeutralReply001",
        "L2textFallbackReply01",
    ]
    assert [result.nodes[b].status for b in branches].count("done") == 1
    # What the small model says cannot be predicted; which reply follows from it can.
    mood = re.search(r"[Hh]appy|[Aa]ngry|[Nn]eutral", response)
    if mood is None:
        expected = f"No mood found. The model said: {response}"
    elif re.search(r"[Hh]appy", response):
        expected = f"A {mood.group()} meeting. Keep it up!"
    elif re.search(r"[Aa]ngry", response):
        expected = f"FOLLOW UP: the meeting was {mood.group()}. Talk to the team."
    else:
        expected = f"Noted: the mood was {mood.group()}."
    assert result.outputs["reply"] == expected


def test_import_project_saves_a_rivet_workflow_for_its_owner(alice, bob):
    workflow = rivet_import.import_project(alice, EXAMPLE.read_bytes())
    workflow.refresh_from_db()
    assert workflow.owner == alice and workflow.source == Workflow.Source.RIVET
    assert workflow.name == "Meeting Mood" and workflow.description.startswith("Rates the mood")
    assert engine.validate(workflow.definition).nodes["E5chatClassifyMood001"].type.name == "rivet_chat"
    assert list(Workflow.objects.visible_to(bob).filter(source=Workflow.Source.RIVET)) == []

    named = rivet_import.import_project(alice, ROUTER, name="My router")
    assert named.name == "My router"
    with pytest.raises(RivetImportError):
        rivet_import.import_project(alice, "version: 3\ndata: {}\n")
    assert Workflow.objects.filter(owner=alice).count() == 2


def test_a_cycle_is_refused_at_import(alice):
    text = project_with("""\
        '[a]:text "A"':
          data:
            text: "{{x}}"
          outgoingConnections:
            - output->"B" b/y
        '[b]:text "B"':
          data:
            text: "{{y}}"
          outgoingConnections:
            - output->"A" a/x
""")
    with pytest.raises(RivetImportError, match="form a cycle"):
        rivet_import.import_project(alice, text)
    assert not Workflow.objects.filter(owner=alice).exists()


def test_connections_are_split_as_rivets_pattern_splits_them():
    """split_connection finds what Rivet's backtracking pattern finds, on random strings of its delimiters."""
    pattern = re.compile(r"(.+)->\"(.+)\" (.+)/(.+)")
    pieces = ["-", ">", '"', " ", "/", "a", "\n", '->"', '" ']
    rng = random.Random(13)
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        found = pattern.fullmatch(text)
        assert rivet_project.split_connection(text) == (found.groups() if found else None), text
