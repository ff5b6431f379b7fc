"""Counting tokens and fitting text into the model's context.

With the bundled model the count is exact: llama.cpp loads only the GGUF's vocabulary (no
weights, ~0.1 s once per process). For any other server it is estimated at 4 characters a token,
the usual figure for English with BPE vocabularies, and the budget keeps a margin for that.
"""

import atexit
import re
from functools import lru_cache

from django.conf import settings

from .llm import local_model_path

CHARS_PER_TOKEN = 4
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def _vocabulary():
    path = local_model_path()
    if path is None or settings.LLM_TOKENIZER != "local":
        return None
    from llama_cpp import Llama

    vocabulary = Llama(model_path=str(path), vocab_only=True, verbose=False)
    atexit.register(vocabulary.close)  # before interpreter teardown, or llama.cpp's __del__ complains
    return vocabulary


def count(text: str) -> int:
    vocabulary = _vocabulary()
    if vocabulary is None:
        return max(1, len(text) // CHARS_PER_TOKEN)
    return len(vocabulary.tokenize(text.encode(), add_bos=False, special=False))


def prompt_budget(max_output_tokens: int, overhead_tokens: int = 64) -> int:
    """Tokens of text that fit beside the instructions and the reply in the model's context."""
    return max(64, settings.LLM_CONTEXT_TOKENS - max_output_tokens - overhead_tokens)


def chunks(text: str, budget: int) -> list[str]:
    """The text in pieces of at most `budget` tokens, cut at sentence ends (words if a sentence is
    longer than the budget)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for sentence in SENTENCE_END.split(text.strip()):
        size = count(sentence)
        if size > budget:  # one overlong sentence: by words
            for word in sentence.split():
                word_size = count(word + " ")
                if used + word_size > budget and current:
                    pieces.append(" ".join(current))
                    current, used = [], 0
                current.append(word)
                used += word_size
            continue
        if used + size > budget and current:
            pieces.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += size
    if current:
        pieces.append(" ".join(current))
    return [p for p in pieces if p.strip()]


def truncate(text: str, budget: int) -> str:
    """The start of the text that fits in `budget` tokens."""
    if count(text) <= budget:
        return text
    return chunks(text, budget)[0]
