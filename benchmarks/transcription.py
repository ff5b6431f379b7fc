"""File transcription benchmark: every allowed configuration, then the whole app path.

    .venv/bin/python benchmarks/transcription.py              # everything (about 10 minutes)
    .venv/bin/python benchmarks/transcription.py --quick      # default configuration + app path
    .venv/bin/python benchmarks/transcription.py --threads 1  # as if each job had one core

1. Each configuration (compute type x beam x pipeline) in a fresh process on the reference speech
   (benchmarks/reference.txt, espeak-ng, three voices): speed (audio seconds per wall second), WER
   (after Whisper's English normaliser) and peak RSS.
2. Sequential vs batched pipeline by audio length: where WHISPER_BATCHED_MIN_SECONDS should be.
3. Worker layouts (processes x threads) with every process busy: one file's speed, and all together.
4. The app path (upload through the view -> Celery worker -> transcript stored) against calling
   faster-whisper directly with the same arguments and threads: direct/app, target >= 0.95.
Services for part 4 (Redis 6391, Neo4j 7691, a worker) are started under var/bench/app.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.speech import reference, word_error_rate  # noqa: E402

BENCH_VAR = ROOT / "var" / "bench" / "app"
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings",
    "VAR_DIR": str(BENCH_VAR),
    "REDIS_URL": "redis://127.0.0.1:6391/0",
    # The cache in another database of the same Redis: the benchmarks never fill it.
    "REDIS_CACHE_URL": "redis://127.0.0.1:6391/1",
    "NEO4J_BOLT_URL": "bolt://neo4j:neo4j@127.0.0.1:7691",
    "DATABASE_URL": f"sqlite:///{BENCH_VAR / 'db.sqlite3'}",
    "PROGRESS_INTERVAL_SECONDS": os.environ.get("PROGRESS_INTERVAL_SECONDS", "0.5"),
    "PYTHONUNBUFFERED": "1",
}


def child_env(threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ, **BENCH_ENV, WHISPER_CPU_THREADS=str(threads), CELERY_WORKER_CONCURRENCY="1")
    env.update(extra or {})
    return env


# --- Part 1 and the direct side of part 2: one configuration in a fresh process -------------


def run_child(config: dict) -> None:
    """In a child process: load the model, then time `repeat` transcriptions of the audio."""
    import django

    django.setup()
    from faster_whisper import BatchedInferencePipeline

    from transcription import engine

    options = engine.Options(
        compute_type=config["compute_type"], beam_size=config["beam"], pipeline=config["pipeline"]
    ).resolved()
    model = engine.get_model(options.model, options.compute_type)
    times, text = [], ""
    for run in range(config["repeat"] + config.get("warmup", 0)):
        started = time.perf_counter()
        audio = engine.decode_audio(config["audio"])
        if config["raw"]:
            # faster-whisper itself, with exactly the arguments the engine passes.
            kwargs = engine.faster_whisper_kwargs(options, options.pipeline)
            runner = BatchedInferencePipeline(model) if options.pipeline == "batched" else model
            segments, _ = runner.transcribe(audio, **kwargs)
            text = " ".join(s.text.strip() for s in segments)
        else:
            text = engine.transcribe(audio, options).text
        if run >= config.get("warmup", 0):
            times.append(time.perf_counter() - started)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "text": text, "rss_mib": rss_mib}))


def measure(audio: Path, compute_type: str, beam: int, pipeline: str, threads: int, repeat: int, raw=False, warmup=0):
    config = dict(
        audio=str(audio), compute_type=compute_type, beam=beam, pipeline=pipeline, repeat=repeat, raw=raw, warmup=warmup
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        env=child_env(threads),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def part1(audio: Path, text: str, duration: float, args) -> None:
    from django.conf import settings

    print(
        f"\n## Configurations: {duration:.1f} s of reference speech, cpu_threads={args.threads}, "
        f"median of {args.repeat}"
    )
    print("| compute | pipeline | beam | speed (x real time) | WER | peak RSS |")
    print("|---|---|---|---|---|---|")
    configs = (
        [
            (settings.WHISPER_COMPUTE_TYPE, settings.WHISPER_BEAM_SIZE, "batched"),
            (settings.WHISPER_COMPUTE_TYPE, settings.WHISPER_BEAM_SIZE, "sequential"),
        ]
        if args.quick
        else list(
            product(
                settings.WHISPER_COMPUTE_TYPES, sorted({1, 2, 5, settings.WHISPER_BEAM_SIZE}), ("sequential", "batched")
            )
        )
    )
    for compute_type, beam, pipeline in configs:
        result = measure(audio, compute_type, beam, pipeline, args.threads, args.repeat)
        speed = duration / statistics.median(result["times"])
        wer = word_error_rate(text, result["text"])
        print(
            f"| {compute_type} | {pipeline} | {beam} | {speed:.1f}x | {wer:.1%} | {result['rss_mib']:.0f} MiB |",
            flush=True,
        )


# --- Part 1b: where batched starts to pay -----------------------------------------------------


def crossover(args) -> None:
    from django.conf import settings

    print(f"\n## Sequential vs batched by length (default compute/beam, cpu_threads={args.threads})")
    print("| audio | sequential | batched | batched/sequential |")
    print("|---|---|---|---|")
    for paragraphs in (1, 2, 4, 8):
        audio, _ = reference(paragraphs)
        duration = wav_seconds(audio)
        speeds = {}
        for pipeline in ("sequential", "batched"):
            result = measure(
                audio, settings.WHISPER_COMPUTE_TYPE, settings.WHISPER_BEAM_SIZE, pipeline, args.threads, args.repeat
            )
            speeds[pipeline] = duration / statistics.median(result["times"])
        print(
            f"| {duration:.0f} s | {speeds['sequential']:.1f}x | {speeds['batched']:.1f}x | "
            f"{speeds['batched'] / speeds['sequential']:.2f} |",
            flush=True,
        )


# --- Part 1c: worker layouts (processes x threads) under load ----------------------------------


def layouts(audio: Path, duration: float, args) -> None:
    """Files transcribed at once by `procs` worker processes with `threads` threads each."""
    from django.conf import settings

    cores = os.cpu_count() or 1
    print(
        f"\n## Worker layouts: {cores} cores, default compute/beam, each process transcribes "
        f"{args.repeat} files back to back"
    )
    print("| processes x threads | one file (median) | all processes together |")
    print("|---|---|---|")
    pipeline = "batched" if duration >= settings.WHISPER_BATCHED_MIN_SECONDS else "sequential"
    config = dict(
        audio=str(audio),
        compute_type=settings.WHISPER_COMPUTE_TYPE,
        beam=settings.WHISPER_BEAM_SIZE,
        pipeline=pipeline,
        repeat=args.repeat,
        raw=False,
    )
    for procs, threads in sorted({(1, cores), (cores, 1), (cores, cores)}):
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(config)],
                env=child_env(threads),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=ROOT,
            )
            for _ in range(procs)
        ]
        results = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
        # Model loading is excluded: the busiest child's transcribing time is the wall time.
        busiest = max(sum(r["times"]) for r in results)
        one = statistics.median(t for r in results for t in r["times"])
        total_audio = duration * args.repeat * procs
        print(f"| {procs} x {threads} | {duration / one:.1f}x | {total_audio / busiest:.1f}x |", flush=True)


# --- Part 2: the whole app path ----------------------------------------------------------------


def part2(audio: Path, duration: float, args) -> None:
    from django.conf import settings

    from tests import services

    pipeline = "batched" if duration >= settings.WHISPER_BATCHED_MIN_SECONDS else "sequential"
    rounds = max(args.repeat, 7)

    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    for key, value in child_env(args.threads).items():
        os.environ[key] = value
    redis = services.start_redis(BENCH_ENV["REDIS_URL"], BENCH_VAR / "redis")
    neo4j = services.start_neo4j(BENCH_ENV["NEO4J_BOLT_URL"], BENCH_VAR / "neo4j")
    worker = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=os.environ, check=True
        )
        subprocess.run(
            [sys.executable, "manage.py", "graph_schema"],
            cwd=ROOT,
            env=os.environ,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        worker = start_worker("bench", {}, BENCH_VAR / "worker.log")
        app_path_once(audio)  # warm-up, like the direct side's: first connections, first inference
        # Alternating, so a slow spell of this shared machine hits both sides alike.
        app_times, direct_times = [], []
        for _ in range(rounds):
            app_times.append(app_path_once(audio))
            direct_times += measure(
                audio,
                settings.WHISPER_COMPUTE_TYPE,
                settings.WHISPER_BEAM_SIZE,
                pipeline,
                args.threads,
                1,
                raw=True,
                warmup=1,
            )["times"]
    finally:
        services.stop(worker)
        services.stop(neo4j)
        services.stop(redis)
    app, raw = statistics.median(t["wall"] for t in app_times), statistics.median(direct_times)
    part = {k: statistics.median(t[k] for t in app_times) for k in ("upload", "job", "transcribe")}
    print(
        f"\n## App path vs faster-whisper directly ({settings.WHISPER_COMPUTE_TYPE}, {pipeline}, "
        f"beam {settings.WHISPER_BEAM_SIZE}, cpu_threads={args.threads}, median of {rounds}, alternating)"
    )
    print("| path | wall | speed |")
    print("|---|---|---|")
    print(f"| faster-whisper directly (decode + transcribe) | {raw:.2f} s | {duration / raw:.1f}x |")
    print(f"| app: upload -> Celery -> transcript stored | {app:.2f} s | {duration / app:.1f}x |")
    print(
        f"\napp wall time, median parts: upload request {part['upload'] * 1000:.0f} ms; "
        f"queue + pickup {max(0.0, app - part['upload'] - part['job']) * 1000:.0f} ms; "
        f"job {part['job'] * 1000:.0f} ms, of which faster-whisper {part['transcribe'] * 1000:.0f} ms "
        f"(the rest: decode, progress, storing)"
    )
    # Each round's pair ran back to back, so its ratio is the least disturbed by the machine.
    paired = sorted(d / a["wall"] for d, a in zip(direct_times, app_times, strict=True))
    print(
        f"ratio direct/app = {raw / app:.3f} from the medians; per round: median {statistics.median(paired):.3f}, "
        f"range {paired[0]:.3f}-{paired[-1]:.3f} (target >= 0.95)"
    )


def start_worker(name: str, env: dict, log: Path) -> subprocess.Popen:
    """A Celery worker of one process (`name@host`) with `env` added, once it is ready."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "assistant_site", "worker", "--concurrency=1", "--loglevel=INFO"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"{name}@%h"],
        cwd=ROOT,
        env=dict(os.environ, **env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while "ready." not in log.read_text():
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return worker


def app_path_once(audio: Path) -> dict:
    """POST the file to the upload view, wait until the worker has stored the transcript.
    Returns the wall time and its parts: the upload request, the wait in the queue, the job."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from transcription.models import Recording

    user, _ = get_user_model().objects.get_or_create(username="bench")
    client = Client(SERVER_NAME="127.0.0.1")  # a host in ALLOWED_HOSTS
    client.force_login(user)
    with audio.open("rb") as fh:
        started = time.perf_counter()
        response = client.post("/recordings/upload", {"audio": fh, "title": "bench"})
    uploaded = time.perf_counter()
    assert response.status_code == 302, response.status_code
    recording = Recording.objects.owned_by(user).newest_first().first()
    while recording.status not in (Recording.Status.DONE, Recording.Status.FAILED):
        time.sleep(0.02)
        recording.refresh_from_db(fields=["status"])
    elapsed = time.perf_counter() - started
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DONE, recording.error
    # The same task then writes the graph; the next upload should find the worker idle.
    while not recording.graph_synced_at:
        time.sleep(0.05)
        recording.refresh_from_db(fields=["graph_synced_at"])
    job = (recording.finished_at - recording.started_at).total_seconds()
    return {
        "wall": elapsed,
        "upload": uploaded - started,
        "job": job,
        "transcribe": recording.transcript.processing_seconds,
    }


def wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the default configuration only")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WHISPER_CPU_THREADS", 0)) or None,
        help="cpu_threads per transcription (default: the app's setting)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["configs", "crossover", "layouts", "app"])
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    os.environ.update(BENCH_ENV)
    import django

    django.setup()
    from django.conf import settings

    args.threads = args.threads or settings.WHISPER_CPU_THREADS
    audio, text = reference()
    duration = wav_seconds(audio)
    if "configs" not in args.skip:
        part1(audio, text, duration, args)
    if "crossover" not in args.skip and not args.quick:
        crossover(args)
    if "layouts" not in args.skip and not args.quick:
        layouts(audio, duration, args)
    if "app" not in args.skip:
        part2(audio, duration, args)


if __name__ == "__main__":
    main()
