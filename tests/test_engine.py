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


def test_it_decodes_from_an_open_file_without_a_path(speech):
    path, _ = speech
    import io

    in_memory = engine.decode_audio(io.BytesIO(path.read_bytes()))
    assert np.array_equal(in_memory, engine.decode_audio(path))


def test_the_batched_pipeline_and_word_timestamps(speech, settings):
    path, text = speech
    settings.WHISPER_BATCHED_MIN_SECONDS = 0  # this short clip goes through the batched pipeline
    audio = engine.decode_audio(path)
    result = engine.transcribe(audio, engine.Options(word_timestamps=True))
    assert result.pipeline == "batched"
    assert {"fox", "dog"} <= words(result.text)
    timed = [w for s in result.segments for w in s.words]
    assert {"fox", "dog"} <= {w.word.strip(" .,").lower() for w in timed}
    assert all(0 <= w.start <= w.end <= result.duration + 0.5 for w in timed)
    assert [w.start for w in timed] == sorted(w.start for w in timed)


def test_short_audio_goes_sequentially_by_default(speech, settings):
    path, _ = speech
    settings.WHISPER_BATCHED_MIN_SECONDS = 120
    result = engine.transcribe(engine.decode_audio(path))
    assert result.pipeline == "sequential" and result.segments[0].words is None


@pytest.mark.parametrize(
    "options, param",
    [
        (engine.Options(model="large-v9"), "model"),
        (engine.Options(compute_type="int4"), "compute_type"),
        (engine.Options(beam_size=50), "beam_size"),
        (engine.Options(temperature=1.5), "temperature"),
        (engine.Options(language="english"), "language"),
        (engine.Options(pipeline="turbo"), "pipeline"),
    ],
)
def test_options_outside_the_allowed_lists_are_refused(options, param):
    with pytest.raises(engine.OptionError) as error:
        options.resolved()
    assert error.value.param == param


def test_options_resolve_to_the_defaults_and_accept_openais_model_name(settings):
    resolved = engine.Options(model="whisper-1").resolved()
    assert resolved.model == settings.WHISPER_MODEL
    assert resolved.compute_type == settings.WHISPER_COMPUTE_TYPE
    assert resolved.beam_size == settings.WHISPER_BEAM_SIZE
    assert engine.Options.from_dict(resolved.to_dict() | {"stale": 1}) == resolved


def test_a_model_from_a_path_setting_is_loaded_from_that_path(settings):
    settings.WHISPER_MODELS = {"meeting-tiny": engine.default_model_path()}
    settings.WHISPER_MODEL = "meeting-tiny"
    model = engine.get_model("meeting-tiny", "int8")
    assert model is not engine.get_model("tiny.en", "int8") and model.model.is_multilingual is False


def test_a_hallucinated_loop_is_cut():
    def seg(i, text):
        return engine.SegmentResult(index=i, start=i, end=i + 1, text=text, avg_logprob=-0.1, no_speech_prob=0.0)

    loop = [seg(0, "Thanks for watching!")] * 1 + [seg(i, "Thank you.") for i in range(1, 6)] + [seg(6, "Bye.")]
    kept = engine.drop_repeats(loop)
    assert [s.text for s in kept] == ["Thanks for watching!", "Thank you.", "Thank you.", "Bye."]
    assert [s.index for s in kept] == [0, 1, 2, 3]


def test_the_temperature_fallback_starts_where_asked():
    assert engine.temperatures(0.0) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert engine.temperatures(0.5) == (0.5, 0.7, 0.9)
    assert engine.temperatures(1.0) == (1.0,)


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_decoding_matches_faster_whispers_own_decoder(speech, tmp_path, suffix):
    from faster_whisper.audio import decode_audio as reference_decode

    path, _ = speech
    source = path if suffix == ".wav" else convert(path, tmp_path / f"speech{suffix}")
    ours, theirs = engine.decode_audio(source), reference_decode(str(source))
    assert len(ours) == len(theirs)
    # Theirs goes through int16 (clipped, quantised); ours stays float.
    assert np.allclose(np.clip(ours, -1, 1), theirs, atol=1e-3)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_no_text_is_invented_over_silence_or_noise(kind):
    # Without VAD, tiny.en "hears" a "you" in 20 s of digital silence: the default skips it.
    samples = 20 * engine.SAMPLE_RATE
    audio = np.zeros(samples) if kind == "silence" else np.random.default_rng(0).normal(0, 0.02, samples)
    result = engine.transcribe(audio.astype(np.float32))
    assert result.text == "" and result.segments == []
