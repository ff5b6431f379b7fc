"""A small cast of users and real audio made on the spot."""

import subprocess
from pathlib import Path

import av
from django.contrib.auth import get_user_model

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str):
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def speech_wav(text: str, path: Path, voice: str = "en", speed: int = 130) -> Path:
    """Speak text to a WAV file with espeak-ng (22.05 kHz mono)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


CODECS = {".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}


def convert(source: Path, target: Path) -> Path:
    """Re-encode audio with PyAV; the codec follows the target's suffix."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        in_stream = inp.streams.audio[0]
        out_stream = out.add_stream(CODECS[target.suffix], rate=in_stream.rate)
        for frame in inp.decode(in_stream):
            frame.pts = None
            out.mux(out_stream.encode(frame))
        out.mux(out_stream.encode())
    return target


def synthesized(path: Path, source: str, seconds: float, *, layout: str = "mono", rate: int = 16_000) -> Path:
    """A FLAC file from one of FFmpeg's audio sources, made in FFmpeg without a numpy copy: `source`
    is "silence" (anullsrc: hours of it take seconds) or an aevalsrc expression per channel."""
    graph = av.filter.Graph()
    if source == "silence":
        src = graph.add("anullsrc", f"channel_layout={layout}:sample_rate={rate}:nb_samples=16384")
    else:
        src = graph.add("aevalsrc", f"{source}:c={layout}:s={rate}:d={seconds}:n=16384")
    graph.link_nodes(src, graph.add("aformat", "sample_fmts=s16"), graph.add("abuffersink")).configure()
    total = int(seconds * rate)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        done = 0
        while done < total:
            try:
                frame = graph.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            frame.pts = done
            out.mux(stream.encode(frame))
            done += frame.samples
        out.mux(stream.encode(None))
    return path


def without_stated_length(flac: Path) -> Path:
    """The same FLAC with its header's sample count zeroed ("unknown", as a stream writes it): only
    decoding can tell how long it is."""
    data = bytearray(flac.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit total sample count starts at the low nibble of byte 21
    data[22:26] = bytes(4)
    flac.write_bytes(bytes(data))
    return flac


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:").lower() for w in text.split() if w.strip(".,!?;:")}


def make_transcribed(owner, title: str, texts: list[str], speakers: list[str] | None = None):
    """A recording as the worker leaves it (done, transcript, timed segments), without inference."""
    from django.utils import timezone

    from transcription.models import Recording, Segment, Transcript

    recording = Recording.objects.create(
        owner=owner,
        title=title,
        audio=f"{title}.wav",
        status=Recording.Status.DONE,
        progress=1.0,
        duration=2.0 * len(texts),
        finished_at=timezone.now(),
    )
    transcript = Transcript.objects.create(
        recording=recording,
        text=" ".join(texts),
        language="en",
        model_name="tiny.en",
        compute_type="int8",
        processing_seconds=0.1,
    )
    Segment.objects.bulk_create(
        Segment(
            transcript=transcript,
            index=i,
            start=2.0 * i,
            end=2.0 * i + 2,
            text=text,
            speaker=(speakers[i] if speakers else ""),
        )
        for i, text in enumerate(texts)
    )
    return recording
