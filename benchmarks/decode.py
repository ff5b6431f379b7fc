"""Audio decoding: engine.decode_audio vs faster-whisper's decode_audio, in a process that holds
the app's heap (as a worker does), on the reference speech as WAV, MP3 and M4A.

    .venv/bin/python benchmarks/decode.py
"""

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.urls import get_resolver  # noqa: E402
from faster_whisper.audio import decode_audio as faster_whisper_decode  # noqa: E402

from benchmarks.speech import reference  # noqa: E402
from tests.factories import convert  # noqa: E402
from transcription import engine  # noqa: E402

_ = get_resolver().url_patterns  # import every view module, as a running app has


def timed(decode, path, runs=7) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decode(path)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    wav, _ = reference()
    files = {"wav": wav}
    for suffix in ("mp3", "m4a"):
        target = wav.with_suffix(f".{suffix}")
        if not target.exists():
            convert(wav, target)
        files[suffix] = target
    seconds = len(engine.decode_audio(wav)) / engine.SAMPLE_RATE
    print(f"## Decoding {seconds:.0f} s of speech to 16 kHz mono float32 (median of 7)")
    print("| format | faster-whisper decode_audio | engine.decode_audio | speed-up |")
    print("|---|---|---|---|")
    for name, path in files.items():
        ours, theirs = timed(engine.decode_audio, path), timed(faster_whisper_decode, str(path))
        # Theirs goes through int16, which clips codec overshoot past full scale; ours keeps it.
        same = np.allclose(np.clip(engine.decode_audio(path), -1, 1), faster_whisper_decode(str(path)), atol=1e-3)
        print(
            f"| {name} | {theirs * 1000:.0f} ms | {ours * 1000:.0f} ms | {theirs / ours:.1f}x "
            f"{'' if same else '(samples differ!)'}|"
        )


if __name__ == "__main__":
    main()
