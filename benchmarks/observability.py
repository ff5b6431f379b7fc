"""What observability costs: metrics and tracing on against both off, in one run (target: <= 3 % each).

    .venv/bin/python benchmarks/observability.py                       # web, then transcription
    .venv/bin/python benchmarks/observability.py --skip transcription --rounds 5 --seconds 5
    .venv/bin/python benchmarks/observability.py --sample-ratio 0.1    # the traced side samples 10 %

"on" = METRICS_ENABLED=true and TRACING_EXPORTER=zipkin to a real Zipkin (started here), every trace
kept (TRACING_SAMPLE_RATIO=1: the worst case) unless --sample-ratio says otherwise; "off" = neither.
1. Web (the web benchmark's stack: PostgreSQL, Redis, Neo4j; benchmarks/web.py): two apps side by
   side on the same database, each one Daphne process behind its own nginx, one "on", one "off";
   hey at --concurrency against the cached API search and the API list (bearer token). The two sides
   take turns for --rounds rounds, so a slow spell of this shared machine hits both; the figure is
   on/off of the median requests per second, and of the median p95.
2. Transcription (the transcription benchmark's stack; benchmarks/transcription.py): two Celery
   workers (one process each, the model loaded), one "on", one "off", take turns as the only consumer
   of the queue; each round uploads the reference speech and reads the job's time (claim to stored)
   off the recording. The figure is on/off of the median job time.
"""

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ON = {"METRICS_ENABLED": "true", "TRACING_EXPORTER": "zipkin"}
OFF = {"METRICS_ENABLED": "false", "TRACING_EXPORTER": "none"}
# --parts: also each on its own, to see which costs what.
METRICS_ONLY = {"METRICS_ENABLED": "true", "TRACING_EXPORTER": "none"}
TRACING_ONLY = {"METRICS_ENABLED": "false", "TRACING_EXPORTER": "zipkin"}


def zipkin(var: Path) -> tuple[subprocess.Popen | None, int]:
    from benchmarks.web import free_port
    from tests import services

    port = free_port()
    var.mkdir(parents=True, exist_ok=True)
    return services.start_zipkin(port, var / "zipkin.log"), port


def tracing_env(port: int, ratio: float) -> dict:
    return {"TRACING_ENDPOINT": f"http://127.0.0.1:{port}/api/v2/spans", "TRACING_SAMPLE_RATIO": str(ratio)}


def web(args) -> None:
    from benchmarks import web as bench
    from tests import services

    started = bench.start_services()
    tracer, port = zipkin(bench.BENCH_VAR)
    apps = []
    try:
        data = bench.prepare(audio_mb=1)
        traced = tracing_env(port, args.sample_ratio)
        envs = {"off": OFF, "on": ON | traced}
        if args.parts:
            envs |= {"metrics": METRICS_ONLY, "tracing": TRACING_ONLY | traced}
        sides = {side: bench.App(1, data, label=f"obs-{side}", env=env) for side, env in envs.items()}
        apps = list(sides.values())
        print(
            f"\n## Web: one Daphne behind nginx, c = {args.concurrency}, {args.seconds} s a cell, {args.rounds} rounds"
        )
        print("| request | side | req/s (median) | p95 ms (median) | /off req/s | /off p95 |")
        print("|---|---|---|---|---|---|")
        for key in ("search", "api"):
            label, make = bench.REQUESTS[key]
            path, headers = make(data)
            results: dict[str, list[dict]] = {side: [] for side in sides}
            for app in apps:
                bench.hey(app.site.http_url + path, 2, 2, headers, False)  # warm-up: the cached answer, imports
            for round_ in range(args.rounds):
                order = list(sides)[round_ % len(sides) :] + list(sides)[: round_ % len(sides)]
                for side in order:
                    result = bench.hey(sides[side].site.http_url + path, args.concurrency, args.seconds, headers, False)
                    bad = sum(n for code, n in result["statuses"].items() if not code.startswith("2"))
                    if bad:
                        raise RuntimeError(f"{side}: {bad} answers were not 2xx: {result['statuses']}")
                    results[side].append(result)
            rate = {side: statistics.median(r["rate"] for r in rs) for side, rs in results.items()}
            p95 = {side: statistics.median(r["p95"] for r in rs) for side, rs in results.items()}
            for side in sides:
                ratios = f"{rate[side] / rate['off']:.3f} | {p95[side] / p95['off']:.3f}" if side != "off" else " | "
                print(f"| {label} | {side} | {rate[side]:.0f} | {p95[side]:.1f} | {ratios} |", flush=True)
        if args.hold:
            pids = {side: app.daphne_pids for side, app in sides.items()}
            print(f"holding: { ({s: a.site.http_url for s, a in sides.items()}) } pids {pids}; token {data['token']}")
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # so `kill` cleans up too
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(args.hold)
    finally:
        for app in apps:
            app.stop()
        services.stop(tracer)
        for process in started:
            services.stop(process)


def transcription(args) -> None:
    from benchmarks import transcription as bench
    from benchmarks.speech import reference
    from benchmarks.web import free_port
    from tests import services

    os.environ.update(bench.BENCH_ENV, CELERY_WORKER_CONCURRENCY="1")
    bench.BENCH_VAR.mkdir(parents=True, exist_ok=True)
    redis = services.start_redis(bench.BENCH_ENV["REDIS_URL"], bench.BENCH_VAR / "redis")
    neo4j = services.start_neo4j(bench.BENCH_ENV["NEO4J_BOLT_URL"], bench.BENCH_VAR / "neo4j")
    tracer, port = zipkin(bench.BENCH_VAR)
    workers: dict[str, subprocess.Popen] = {}
    try:
        for command in (["migrate", "--noinput", "-v", "0"], ["graph_schema"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        import django

        django.setup()
        from assistant_site.celery import app

        hostname = os.uname().nodename
        sides = {
            "on": ON | tracing_env(port, args.sample_ratio) | {"CELERY_METRICS_PORT": str(free_port())},
            "off": OFF,
        }
        for side, env in sides.items():
            workers[side] = bench.start_worker(f"obs-{side}", env, bench.BENCH_VAR / f"worker-{side}.log")

        def only(side: str) -> None:
            """`side`'s worker alone consumes the transcription queue."""
            other = "off" if side == "on" else "on"
            app.control.cancel_consumer("celery", destination=[f"obs-{other}@{hostname}"], reply=True)
            app.control.add_consumer("celery", destination=[f"obs-{side}@{hostname}"], reply=True)

        audio, _ = reference()
        duration = bench.wav_seconds(audio)
        jobs: dict[str, list[float]] = {"on": [], "off": []}
        for side in ("on", "off"):  # warm-up: the first inference, the first connections
            only(side)
            bench.app_path_once(audio)
        for round_ in range(args.rounds):
            for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                only(side)
                jobs[side].append(bench.app_path_once(audio)["job"])
        job = {side: statistics.median(times) for side, times in jobs.items()}
        print(
            f"\n## Transcription: {duration:.0f} s of reference speech, one worker process a side, {args.rounds} rounds"
        )
        print("| side | job time (median) | speed | on/off job time |")
        print("|---|---|---|---|")
        print(f"| off | {job['off']:.2f} s | {duration / job['off']:.1f}x | |")
        print(f"| on | {job['on']:.2f} s | {duration / job['on']:.1f}x | {job['on'] / job['off']:.3f} |")
        spread = {side: f"{min(t):.2f}-{max(t):.2f} s" for side, t in jobs.items()}
        print(f"range: on {spread['on']}, off {spread['off']}")
    finally:
        for worker in workers.values():
            services.stop(worker)
        services.stop(tracer)
        services.stop(neo4j)
        services.stop(redis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5, help="hey's duration per cell")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--sample-ratio", type=float, default=1.0, help="TRACING_SAMPLE_RATIO of the traced side")
    parser.add_argument("--parts", action="store_true", help="web: also metrics alone and tracing alone")
    parser.add_argument("--hold", type=int, default=0, help="web: keep the apps up this many seconds after")
    parser.add_argument("--skip", nargs="*", default=[], choices=["web", "transcription"])
    args = parser.parse_args()
    # Two Django setups (different settings) cannot share one process: each part runs in its own.
    parts = [part for part in ("web", "transcription") if part not in args.skip]
    if len(parts) > 1:
        for part in parts:
            others = [p for p in ("web", "transcription") if p != part]
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--skip", *others], check=True)
        return
    if parts == ["web"]:
        web(args)
    elif parts == ["transcription"]:
        transcription(args)


if __name__ == "__main__":
    main()
