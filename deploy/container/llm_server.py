"""The `llm` role: llama.cpp's server on the bundled model, reachable from other containers.

workflows.local_llm builds the command (model path, threads, context, alias) but listens on
loopback, where only the same machine can reach it; here it listens on LLM_HOST (every interface by
default: the container's network is the boundary).
"""

import os
import sys

sys.path.insert(0, "/app")  # run by path (entrypoint.sh), so the app's packages are not on sys.path yet

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
import django

django.setup()
from django.conf import settings  # noqa: E402

from workflows.local_llm import command  # noqa: E402

argv = command(settings.LLM_PORT, settings.LLM_THREADS, settings.LLM_CONTEXT_TOKENS, settings.LLM_MODEL)
argv[argv.index("--host") + 1] = os.environ.get("LLM_HOST", "0.0.0.0")
# llama.cpp's server reads PORT and HOST from the environment over its arguments (as local_llm says).
env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")}
os.execve(argv[0], argv, env)
