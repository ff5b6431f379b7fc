"""Workflow engine benchmark: parallel branches, the AI cache, streaming, engine overhead.

    .venv/bin/python benchmarks/workflows.py [--branches 4] [--repeats 3]

Starts its own Redis (port 6393) and the bundled llama.cpp server (port 8092, SmolLM2-135M) under
var/bench/workflows unless something already listens there, and prints in one run:
  1. k independent LLM branches run one after another vs by the engine (cap 1 and cap k), and the
     same with k branches of a fixed 0.5 s latency (what a remote API looks like), against the
     longest branch;
  2. the built-in summary workflow on a transcript: first run vs cached re-run (target >= 50x);
  3. streamed chat: time to first token vs full completion;
  4. engine overhead per node with no-op nodes, in a chain and in a fan (target < 1 ms).
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_VAR = ROOT / "var" / "bench" / "workflows"
BENCH_ENV = {
    "VAR_DIR": str(BENCH_VAR),
    "REDIS_URL": "redis://127.0.0.1:6393/0",
    # The cache in another database of the same Redis: the benchmarks never fill it.
    "REDIS_CACHE_URL": "redis://127.0.0.1:6393/1",
    "LLM_PORT": "8092",
    "DATABASE_URL": f"sqlite:///{BENCH_VAR / 'db.sqlite3'}",
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings_test",
}

TRANSCRIPT = (
    "Good morning everyone, this is the weekly planning meeting for the Boston office. "
    "Stella Jones reported that the new website will launch on Friday, after two weeks of testing. "
    "John Smith said the budget for the marketing campaign is still not approved by finance. "
    "The team agreed that Stella will call the printing company in Chicago tomorrow about the brochures. "
    "Maria asked whether the conference in Denver is still planned for March; John will confirm it. "
    "Finally, everyone should send their holiday plans to John by the end of the month. "
) * 3

QUESTIONS = [
    "Name a fruit.",
    "Name a colour.",
    "Name an animal.",
    "Name a city.",
    "Name a planet.",
    "Name a metal.",
    "Name a tree.",
    "Name a river.",
]


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


def branches(k: int, kind: str, salt: str) -> dict:
    if kind == "llm":
        nodes = [
            {"id": f"b{i}", "type": "llm_chat", "settings": {"max_tokens": 24}, "inputs": {"prompt": f"q{i}.value"}}
            for i in range(k)
        ]
        nodes += [
            {"id": f"q{i}", "type": "passthrough", "settings": {"value": f"{QUESTIONS[i % len(QUESTIONS)]} ({salt})"}}
            for i in range(k)
        ]
        port = "response"
    else:
        nodes = [{"id": f"b{i}", "type": "bench_wait", "settings": {"seconds": 0.5}} for i in range(k)]
        port = "value"
    nodes.append({"id": "out", "type": "output", "inputs": {f"b{i}": f"b{i}.{port}" for i in range(k)}})
    return {"nodes": nodes}


async def part_parallel(k: int, repeats: int) -> None:
    from workflows import engine
    from workflows.llm import LLM
    from workflows.nodes.base import Context

    print(f"\n1. {k} independent branches")
    print(
        f"{'branches':<22}{'one after another':>19}{'engine, cap 1':>16}{'engine, cap 2':>16}"
        f"{'engine, cap k':>16}{'longest branch':>17}"
    )
    llm = LLM()
    try:
        for kind in ("llm", "wait"):
            sequential, capped, two, free, longest = [], [], [], [], []
            for r in range(repeats):
                salt = f"{time.time()}-{r}"  # new prompts: no cache hits
                # One after another: each branch on its own, end to end.
                durations = []
                began = time.perf_counter()
                for i in range(k):
                    single = branches(k, kind, salt)
                    single["nodes"] = [n for n in single["nodes"] if n["id"] in (f"b{i}", f"q{i}")]
                    single["nodes"][0]["settings"] = single["nodes"][0]["settings"] | {"salt": "seq"}
                    t0 = time.perf_counter()
                    await engine.execute(single, Context(llm=llm))
                    durations.append(time.perf_counter() - t0)
                sequential.append(time.perf_counter() - began)
                longest.append(max(durations))
                for cap, sink in ((1, capped), (2, two), (k, free)):
                    definition = branches(k, kind, f"{salt}-{cap}")
                    began = time.perf_counter()
                    result = await engine.execute(definition, Context(llm=llm), limits={"llm": cap})
                    assert result.status == "done", result.error
                    sink.append(time.perf_counter() - began)
            label = "LLM chat (local)" if kind == "llm" else "0.5 s latency (API)"
            print(
                f"{label:<22}{median_ms(sequential):>19}{median_ms(capped):>16}{median_ms(two):>16}"
                f"{median_ms(free):>16}{median_ms(longest):>17}"
            )
            speedups = "".join(
                f"{statistics.median(sequential) / statistics.median(t):>15.2f}x" for t in (capped, two, free)
            )
            print(f"{'':<22}{'':>19}{speedups}   (speed-up vs one after another)")
    finally:
        await llm.close()


async def part_cache(repeats: int) -> None:
    from workflows import engine
    from workflows.builtin import BUILTIN, SUMMARY
    from workflows.llm import LLM
    from workflows.nodes.base import Context

    print("\n2. Built-in summary workflow (summarise + keywords + entities), first run vs cached re-run")
    definition = BUILTIN[SUMMARY]["definition"]
    # The transcript as an input (no recording), without the graph write: the AI part alone.
    nodes = [n for n in definition["nodes"] if n["id"] not in ("transcript", "graph", "output")]
    firsts, cached = [], []
    llm = LLM()
    try:
        for r in range(repeats):
            text = f"Meeting {r} of {time.time()}. " + TRANSCRIPT
            run_def = {
                "nodes": [{"id": "transcript", "type": "passthrough", "settings": {"value": text}}]
                + [n | {"inputs": {"text": "transcript.value"}} for n in nodes]
            }
            for sink in (firsts, cached):
                began = time.perf_counter()
                result = await engine.execute(run_def, Context(llm=llm))
                sink.append(time.perf_counter() - began)
                assert result.status == "done", result.error
            assert all(result.nodes[n].cache_hit for n in ("summary", "entities"))
    finally:
        await llm.close()
    ratio = statistics.median(firsts) / statistics.median(cached)
    print(
        f"first run {median_ms(firsts)}   cached re-run {median_ms(cached)}   ratio {ratio:,.0f}x "
        f"({'meets' if ratio >= 50 else 'misses'} the 50x target)"
    )


async def part_streaming(repeats: int) -> None:
    from workflows.llm import LLM

    print("\n3. Streamed chat: time to first token vs full completion (max 120 tokens)")
    first, full, counts = [], [], []
    llm = LLM()
    try:
        for r in range(repeats * 2):
            began = time.perf_counter()
            seen = []

            async def on_token(token, seen=seen, began=began):
                if not seen:
                    first.append(time.perf_counter() - began)
                seen.append(token)

            await llm.chat(
                [{"role": "user", "content": f"Describe a busy harbour in three sentences. ({r} {time.time()})"}],
                max_tokens=120,
                on_token=on_token,
            )
            full.append(time.perf_counter() - began)
            counts.append(len(seen))
    finally:
        await llm.close()
    print(
        f"first token {median_ms(first)}   full reply {median_ms(full)} ({statistics.median(counts):.0f} tokens)   "
        f"the page shows text {statistics.median(full) / statistics.median(first):.0f}x sooner than without streaming"
    )


async def part_overhead() -> None:
    from workflows import engine
    from workflows.nodes.base import Context

    print("\n4. Engine overhead with no-op nodes (validation excluded; median of 5)")
    for shape, n in (("chain", 200), ("chain", 1000), ("fan", 1000)):
        if shape == "chain":
            nodes = [{"id": "n0", "type": "passthrough", "settings": {"value": 1}}]
            nodes += [
                {"id": f"n{i}", "type": "passthrough", "inputs": {"value": f"n{i - 1}.value"}} for i in range(1, n)
            ]
        else:
            nodes = [{"id": f"n{i}", "type": "passthrough", "settings": {"value": i}} for i in range(n)]
        graph = engine.validate({"nodes": nodes})
        times = []
        for _ in range(5):
            began = time.perf_counter()
            result = await engine.execute(graph, Context())
            times.append(time.perf_counter() - began)
            assert result.status == "done"
        per_node_ms = statistics.median(times) / n * 1000
        print(
            f"{shape:<6} of {n:>5} nodes: {statistics.median(times) * 1000:8.1f} ms, "
            f"{per_node_ms * 1000:6.1f} µs per node ({'meets' if per_node_ms < 1 else 'misses'} the < 1 ms target)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(BENCH_ENV)
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    import logging

    for name in ("httpx", "httpx2"):  # one line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    from django.conf import settings

    from tests import services
    from workflows.nodes.base import node_type

    @node_type("bench_wait", outputs=("value",))
    async def bench_wait(ctx, inputs, settings):
        """Waits like a remote API call would (no CPU)."""
        await asyncio.sleep(settings["seconds"])
        return {"value": settings["seconds"]}

    redis = services.start_redis(settings.REDIS_URL, BENCH_VAR / "redis")
    llm = services.start_llm(settings.LLM_BASE_URL, BENCH_VAR / "llm.log")
    try:
        from django_redis import get_redis_connection

        get_redis_connection("default").flushdb()
        print(
            f"LLM: {settings.LLM_BASE_URL} ({settings.LLM_MODEL}), {os.cpu_count()} cores, "
            f"LLM_MAX_CONCURRENCY={settings.LLM_MAX_CONCURRENCY}"
        )
        asyncio.run(part_parallel(args.branches, args.repeats))
        asyncio.run(part_cache(args.repeats))
        asyncio.run(part_streaming(args.repeats))
        asyncio.run(part_overhead())
    finally:
        services.stop(llm)
        services.stop(redis)


if __name__ == "__main__":
    main()
