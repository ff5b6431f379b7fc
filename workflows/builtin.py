"""The workflows shipped with the app, installed (and kept up to date) after every migrate."""

from typing import Any

SUMMARY = "summary"
ASK = "ask"

BUILTIN: dict[str, dict[str, Any]] = {
    SUMMARY: {
        "name": "Summary, keywords and entities",
        "description": "Summarises the transcript (map-reduce, extractive fallback), lists its key phrases, "
        "and extracts typed entities into the knowledge graph. Runs after each transcription.",
        "definition": {
            "nodes": [
                {"id": "transcript", "type": "transcript"},
                {"id": "summary", "type": "summarise", "inputs": {"text": "transcript.text"}},
                {"id": "keywords", "type": "keywords", "inputs": {"text": "transcript.text"}},
                {"id": "entities", "type": "extract_entities", "inputs": {"text": "transcript.text"}},
                {"id": "graph", "type": "graph_write", "inputs": {"entities": "entities.entities"}},
                {
                    "id": "output",
                    "type": "output",
                    "inputs": {
                        "summary": "summary.summary",
                        "summary_method": "summary.method",
                        "keywords": "keywords.keywords",
                        "entities": "entities.entities",
                        "written": "graph.written",
                    },
                },
            ]
        },
    },
    ASK: {
        "name": "Ask about my recordings",
        "description": "Finds the segments that match a question (full-text over your transcripts, one "
        "recording or all) and has the model answer from them, streaming the answer.",
        "definition": {
            "nodes": [
                {"id": "question", "type": "input", "settings": {"name": "question"}},
                {
                    "id": "search",
                    "type": "semantic_search",
                    "inputs": {"query": "question.value"},
                    "settings": {"k": 5},
                },
                {
                    "id": "prompt",
                    "type": "template",
                    "inputs": {"question": "question.value", "context": "search.context"},
                    "settings": {
                        "template": "Answer the question using only these transcript excerpts.\n\n"
                        "Excerpts:\n{{context}}\n\nQuestion: {{question}}\nAnswer:"
                    },
                },
                {
                    "id": "answer",
                    "type": "llm_chat",
                    "inputs": {"prompt": "prompt.text"},
                    "settings": {"max_tokens": 160},
                },
                {
                    "id": "output",
                    "type": "output",
                    "inputs": {"answer": "answer.response", "segments": "search.segments"},
                },
            ]
        },
    },
}


def install(**kwargs) -> None:
    """Create or update the built-in workflows (a post_migrate handler)."""
    from .models import Workflow

    for key, spec in BUILTIN.items():
        Workflow.objects.update_or_create(
            owner=None,
            key=key,
            defaults={
                "name": spec["name"],
                "description": spec["description"],
                "definition": spec["definition"],
                "source": Workflow.Source.BUILTIN,
            },
        )
