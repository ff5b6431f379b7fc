"""Live transcription benchmark: N concurrent WebSocket clients play reference speech in real time.

    .venv/bin/python benchmarks/live.py                 # N = 1, 2, 4; LocalAgreement vs naive window
    .venv/bin/python benchmarks/live.py --clients 1 2   # other N
    .venv/bin/python benchmarks/live.py --url ws://host:8000/ws/live/ --cookie SESSIONID   # a running server

Starts Redis (6391) and Daphne on the benchmark settings (var/bench/app) unless --url is given.
Each client streams benchmarks/reference.txt (first --paragraphs paragraphs, espeak-ng) as PCM16
frames of 160 ms on the audio clock and records every message. For each word of the final text:
latency from the moment its audio had been sent (its end time in the stream) to its first
appearance in a partial or final message, and to its final message. Also WER of the final text
(and of the offline transcription of the same file), whether the stream kept real time, and the
bytes sent per second of audio. "Kept real time": nothing skipped and the stream finished within 3 s
of its last audio. The same run with the naive baseline (re-transcribe the last
10 s window on every step; words become final as they leave the window) gives the ratios.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.speech import reference, word_error_rate  # noqa: E402
from benchmarks.transcription import BENCH_ENV, BENCH_VAR  # noqa: E402

FRAME_SECONDS = 0.16


def key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


async def client(url: str, cookie: str, pcm: bytes, policy: str) -> dict:
    import websockets

    headers = {"Cookie": f"sessionid={cookie}", "Origin": "http://127.0.0.1:8000"}
    messages = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "policy": policy}))
        assert json.loads(await ws.recv())["type"] == "ready"
        step = int(FRAME_SECONDS * 16000) * 2
        frames = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        t0 = time.monotonic()

        async def listen():
            async for raw in ws:
                message = json.loads(raw)
                messages.append((time.monotonic() - t0, message))
                if message["type"] == "saved":
                    return

        listener = asyncio.create_task(listen())
        sent = 0
        for i, frame in enumerate(frames):
            # On the audio clock: frame i goes out when its audio has been "spoken".
            await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_SECONDS - time.monotonic()))
            await ws.send(frame)
            sent += len(frame)
        audio_end = time.monotonic() - t0
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(listener, 120)
    return {"messages": messages, "bytes": sent, "audio_seconds": len(pcm) / 32000, "audio_end": audio_end}


def latencies(run: dict) -> dict:
    finals = [(t, w) for t, m in run["messages"] if m["type"] == "final" for w in m["words"]]
    seen = [(t, w) for t, m in run["messages"] if m["type"] in ("partial", "final") for w in m.get("words") or []]
    first, final = [], []
    for t_final, word in finals:
        if t_final > run["audio_end"] + 0.05:
            continue  # made final by the stop message, not by listening
        k = key(word["word"])
        t_first = min(
            (t for t, w in seen if key(w["word"]) == k and abs(w["start"] - word["start"]) < 0.6 and t <= t_final),
            default=t_final,
        )
        first.append(t_first - word["end"])
        final.append(t_final - word["end"])
    text = " ".join(m["text"] for _, m in run["messages"] if m["type"] == "final")
    lagging = [m for _, m in run["messages"] if m["type"] == "lagging"]
    # How long after the last audio the stream was done: it stays short only if inference kept up.
    tail = max(t for t, m in run["messages"] if m["type"] == "saved") - run["audio_end"]
    return {"first": first, "final": final, "text": text, "lagging": lagging, "tail": tail}


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


async def run_clients(url, cookies, pcm, policy):
    return await asyncio.gather(*(client(url, c, pcm, policy) for c in cookies))


def start_server(clients: int):
    """Redis and Daphne on the benchmark settings; returns (url, cookies, processes)."""
    from tests import services

    os.environ.update(BENCH_ENV)
    os.environ["LIVE_MAX_STREAMS_PER_USER"] = "2"
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    redis = services.start_redis(BENCH_ENV["REDIS_URL"], BENCH_VAR / "redis")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    cookies = []
    for i in range(clients):
        user, _ = get_user_model().objects.get_or_create(username=f"live-bench-{i}")
        browser = Client(SERVER_NAME="127.0.0.1")
        browser.force_login(user)
        cookies.append(browser.cookies["sessionid"].value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = BENCH_VAR / "daphne.log"
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "assistant_site.asgi:application"],
        cwd=ROOT,
        env=os.environ,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    services.wait_until_listening("127.0.0.1", port, daphne, 60, log)
    return f"ws://127.0.0.1:{port}/ws/live/", cookies, (daphne, redis)


def offline_wer(path: Path, text: str) -> float:
    from transcription import engine

    return word_error_rate(text, engine.transcribe(engine.decode_audio(path)).text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--paragraphs", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["local-agreement", "naive"])
    parser.add_argument("--url", help="a running server's live socket URL (else one is started)")
    parser.add_argument("--cookie", nargs="*", help="session cookies for --url, one per client")
    args = parser.parse_args()

    path, text = reference(args.paragraphs)
    processes = ()
    if args.url:
        url, cookies = args.url, args.cookie
    else:
        url, cookies, processes = start_server(max(args.clients))
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
        import django

        django.setup()
        from transcription import engine

        audio = engine.decode_audio(path)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        seconds = len(audio) / 16000
        print(
            f"## Live: {seconds:.1f} s of reference speech per client, {FRAME_SECONDS * 1000:.0f} ms PCM16 frames, "
            f"{os.cpu_count()} cores"
        )
        print(f"offline WER of the same file (default settings): {offline_wer(path, text):.1%}\n")
        print("| policy | N | first seen p50 | p95 | final p50 | p95 | WER | kept real time | bytes / audio s |")
        print("|---|---|---|---|---|---|---|---|---|")
        summary = {}
        for policy in args.policies:
            for n in args.clients:
                runs = asyncio.run(run_clients(url, cookies[:n], pcm, policy))
                stats = [latencies(r) for r in runs]
                first = [x for s in stats for x in s["first"]]
                final = [x for s in stats for x in s["final"]]
                wer = float(np.mean([word_error_rate(text, s["text"]) for s in stats]))
                skipped = sum(m["skipped"] for s in stats for m in s["lagging"])
                tail = max(s["tail"] for s in stats)
                kept = (
                    f"yes ({tail:.1f} s to finish)"
                    if skipped == 0 and tail < 3
                    else f"no ({skipped:.1f} s skipped, {tail:.1f} s to finish)"
                )
                rate = np.mean([r["bytes"] / r["audio_seconds"] for r in runs])
                summary[(policy, n)] = (pct(first, 95), pct(final, 95), wer)
                print(
                    f"| {policy} | {n} | {pct(first, 50):.2f} s | {pct(first, 95):.2f} s | {pct(final, 50):.2f} s | "
                    f"{pct(final, 95):.2f} s | {wer:.1%} | {kept} | {rate / 1000:.1f} kB |",
                    flush=True,
                )
        if {"local-agreement", "naive"} <= set(args.policies):
            print("\nnaive / LocalAgreement (higher = LocalAgreement better):")
            for n in args.clients:
                la, naive = summary[("local-agreement", n)], summary[("naive", n)]
                print(
                    f"  N={n}: first-seen p95 {naive[0] / la[0]:.2f}x, final p95 {naive[1] / la[1]:.2f}x, "
                    f"WER {naive[2] / la[2]:.2f}x"
                    if la[2]
                    else f"  N={n}: WER of LocalAgreement is 0"
                )
    finally:
        from tests import services

        for process in processes:
            services.stop(process)


if __name__ == "__main__":
    main()
