"""Reference speech for the benchmarks: benchmarks/reference.txt spoken by espeak-ng in three
voices (a paragraph each, in turn), as one 16 kHz mono WAV. Cached under var/bench by text hash."""

import hashlib
import subprocess
import wave
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_TEXT = ROOT / "benchmarks" / "reference.txt"
VOICES = ("en-us", "en", "en-gb-x-rp")
SPEED = 150
PAUSE_SECONDS = 0.8


def _speak(text: str, voice: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(SPEED), "-w", str(path), text], check=True)
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        chunks = [
            out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks)


def reference(paragraphs: int | None = None) -> tuple[Path, str]:
    """(path to the WAV, the text it says); `paragraphs` keeps only the first n paragraphs."""
    lines = [line.strip() for line in REFERENCE_TEXT.read_text().splitlines() if line.strip()]
    lines = lines[:paragraphs] if paragraphs else lines
    text = "\n".join(lines)
    digest = hashlib.sha1(f"{text}{VOICES}{SPEED}".encode()).hexdigest()[:10]
    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"reference-{digest}.wav"
    if not path.exists():
        pause = np.zeros(int(16_000 * PAUSE_SECONDS), dtype=np.int16)
        parts = []
        for i, line in enumerate(lines):
            parts += [_speak(line, VOICES[i % len(VOICES)], out_dir / "part.wav"), pause]
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16_000)
            wav.writeframes(np.concatenate(parts).tobytes())
    return path, text


def word_error_rate(reference_text: str, hypothesis: str) -> float:
    """WER after Whisper's English normaliser (case, punctuation, numbers, spellings)."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    return jiwer.wer(normalise(reference_text), normalise(hypothesis))
