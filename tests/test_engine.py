"""The real Whisper model on real (synthesised) speech, and audio decoding errors."""

import numpy as np
import pytest

from tests.factories import convert, words
from transcription import engine


def test_it_transcribes_spoken_words(speech):
    path, text = speech
    audio = engine.decode_audio(path)
    progress = []
    result = engine.transcribe(audio, on_progress=progress.append)

    heard = words(result.text)
    spoken = words(text)
    # Allow a few recognition errors, but most of what was said must come back.
    assert len(heard & spoken) >= 0.7 * len(spoken), result.text
    assert {"fox", "dog"} <= heard
    assert result.language == "en"
    assert result.duration == pytest.approx(len(audio) / engine.SAMPLE_RATE)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.end > s.start for s in result.segments)
    assert result.segments[-1].end <= result.duration + 0.5
    assert progress and progress == sorted(progress) and 0 < progress[-1] <= 1


def test_it_loads_the_model_once_per_process():
    assert engine.get_model() is engine.get_model()


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".m4a"])
def test_it_decodes_other_formats_to_16khz_mono(speech, tmp_path, suffix):
    path, _ = speech
    reference = engine.decode_audio(path)
    other = convert(path, tmp_path / f"speech{suffix}")
    audio = engine.decode_audio(other)
    assert audio.dtype == np.float32
    # Same clip, so about the same length at 16 kHz (codecs pad by a few ms).
    assert abs(len(audio) - len(reference)) < 0.1 * engine.SAMPLE_RATE


def test_it_refuses_a_text_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not audio at all\n" * 50)
    with pytest.raises(engine.AudioDecodeError, match="not an audio or video file|could not be read"):
        engine.decode_audio(notes)


def test_it_refuses_a_truncated_wav(speech, tmp_path):
    path, _ = speech
    broken = tmp_path / "broken.wav"
    broken.write_bytes(path.read_bytes()[:40])  # a header and nothing else
    with pytest.raises(engine.AudioDecodeError):
        engine.decode_audio(broken)


def test_it_refuses_a_video_without_sound(tmp_path):
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height = 64, 64
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(engine.AudioDecodeError, match="no audio track"):
        engine.decode_audio(path)
