"""Live transcription policy: LocalAgreement-2 over a rolling audio buffer (whisper_streaming's).

Plain, synchronous and free of Channels: the consumer feeds audio in and calls `process()` on a
worker thread. Each call transcribes the uncommitted buffer; words that two consecutive
hypotheses agree on are committed (final, never changed again); the rest is the partial.
The buffer is cut at the end of committed sentences so each call stays short, and silence
(Silero VAD) commits what is pending and costs no inference.
"""

import re
from dataclasses import dataclass, field

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from common import metrics

from . import engine

SAMPLE_RATE = engine.SAMPLE_RATE
# The last few committed words before the buffer prompt the model. A prompt costs decoder time
# (40 words nearly doubled a call: 420 -> 800 ms); none cost ~2 points of WER on the reference.
PROMPT_WORDS = 8
LIVE_BEAM = 1  # beam 2 measured no better in real time (benchmarks/live.py), and slower


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the stream
    end: float
    word: str
    probability: float

    @property
    def key(self) -> str:
        return re.sub(r"[^\w']+", "", self.word.lower())

    def as_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "word": self.word,
            "probability": round(self.probability, 3),
        }


@dataclass
class Update:
    committed: list[Word] = field(default_factory=list)
    partial: list[Word] = field(default_factory=list)
    inferred: bool = False  # False when VAD found nothing to transcribe


def text_of(words: list[Word]) -> str:
    return "".join(w.word for w in words).strip()


def agreed_prefix(previous: list[Word], current: list[Word]) -> int:
    """How many leading words two hypotheses share (by normalised text)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a.key != b.key:
            break
        n += 1
    return n


def repeats_itself(words: list[Word], ngram: int = 3, times: int = 3) -> bool:
    """A hypothesis in which some n-word phrase occurs `times` times in a row: a Whisper loop."""
    keys = [w.key for w in words]
    for size in range(1, ngram + 1):
        for i in range(len(keys) - size * times + 1):
            chunk = keys[i : i + size]
            if all(keys[i + k * size : i + (k + 1) * size] == chunk for k in range(1, times)):
                return True
    return False


def transcribe_words(audio: np.ndarray, offset: float, options: engine.Options, prompt: str = "") -> list[Word]:
    """Timed words of `audio`, which starts at stream time `offset`, from the shared live model."""
    model = engine.get_model(options.model, options.compute_type, live=True)
    with metrics.LIVE_INFERENCE.time():  # the words are decoded as the list below is built
        return _words(model, audio, offset, options, prompt)


def _words(model, audio: np.ndarray, offset: float, options: engine.Options, prompt: str) -> list[Word]:
    segments, _ = model.transcribe(
        audio,
        language=options.language or None,
        beam_size=LIVE_BEAM,
        word_timestamps=True,
        initial_prompt=prompt or None,
        condition_on_previous_text=False,
        # Greedy only: a fallback re-decode would double a call's time; loops are caught by
        # repeats_itself instead.
        temperature=0.0,
        compression_ratio_threshold=2.4,
        no_speech_threshold=0.6,
        vad_filter=False,  # the policy runs VAD itself; this keeps timestamps exact
    )
    return [
        Word(float(offset + w.start), float(offset + w.end), w.word, float(w.probability))
        for seg in segments
        for w in (seg.words or ())
    ]


class LocalAgreement:
    """One live stream's state. Not thread-safe: one `process()` at a time per stream."""

    # Keep at most this much uncommitted audio; past it, the buffer is cut at the last
    # committed word even mid-sentence, so inference time per call stays bounded.
    MAX_BUFFER_SECONDS = 6.0
    # Cut at a committed sentence end once the buffer is longer than this.
    TRIM_SECONDS = 4.0
    # This much trailing silence ends an utterance: what is pending is committed.
    END_OF_UTTERANCE_SECONDS = 0.6
    # A buffer never grows past this, whatever the audio (speech in which nothing is ever agreed
    # on, or a stream that is never far enough behind to skip): what is pending is committed and
    # the window cut, so memory and each call's time stay bounded however long a session runs.
    MAX_WINDOW_SECONDS = 20.0

    def __init__(self, options: engine.Options | None = None):
        self.options = (options or engine.Options()).resolved()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of buffer[0]
        self.committed: list[Word] = []
        self.hypothesis: list[Word] = []  # the last call's uncommitted words
        self.vad = VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)
        self.vad_checked_until = 0.0
        self.processed_until = 0.0  # stream time up to which audio was handed to a process()
        self.last_speech_end: float | None = None  # stream time speech was last heard

    @property
    def received_seconds(self) -> float:
        return self.buffer_start + len(self.buffer) / SAMPLE_RATE

    @property
    def committed_until(self) -> float:
        return self.committed[-1].end if self.committed else 0.0

    def insert_audio(self, audio: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, audio.astype(np.float32, copy=False)])

    def restore(self, committed: list[Word], audio: np.ndarray, start: float) -> None:
        """Carry on a stream another process served: its committed words, and its audio from
        stream time `start` (the end of what was committed) on."""
        self.committed = list(committed)
        self.buffer, self.buffer_start = np.zeros(0, dtype=np.float32), start
        self.insert_audio(audio)
        self.vad_checked_until = start
        self.processed_until = self.received_seconds  # what is pending now is not lag

    def process(self) -> Update:
        """Transcribe the buffer; commit what the last two hypotheses agree on."""
        self.processed_until = self.received_seconds
        self._listen()
        if self.last_speech_end is None or self.last_speech_end <= self.buffer_start:
            # Silence: commit the pending tail (the speaker stopped), keep only the last second.
            committed = self._commit(self.hypothesis)
            self._cut(max(self.buffer_start, self.received_seconds - 1.0))
            return Update(committed=committed)
        silent_tail = self.received_seconds - self.last_speech_end
        new = self._unseen(self._transcribe())
        if repeats_itself(new):
            new = []  # a hallucinated loop: drop this hypothesis, the next call tries again
        n = agreed_prefix(self.hypothesis, new)
        if silent_tail >= self.END_OF_UTTERANCE_SECONDS:
            n = len(new)  # nothing more is coming for this utterance: all of it is final
        committed = self._commit(new[:n])
        self.hypothesis = new[n:]
        self._trim(silent_tail)
        if len(self.buffer) > self.MAX_WINDOW_SECONDS * SAMPLE_RATE:
            committed += self._commit(self.hypothesis)
            self.hypothesis = []
            self._cut(self.received_seconds - self.MAX_BUFFER_SECONDS)
        return Update(committed=committed, partial=list(self.hypothesis), inferred=True)

    def finish(self) -> list[Word]:
        """The stream ended: whatever is pending becomes final."""
        committed = self._commit(self.hypothesis)
        self._cut(self.received_seconds)
        return committed

    def _listen(self) -> None:
        """VAD over the audio that arrived since the last call (plus half a second of context):
        running it over the whole buffer each time would cost as much as a third of inference."""
        since = max(self.buffer_start, self.vad_checked_until - 0.5)
        window = self.buffer[int((since - self.buffer_start) * SAMPLE_RATE) :]
        speech = get_speech_timestamps(window, self.vad)
        if speech:
            self.last_speech_end = since + speech[-1]["end"] / SAMPLE_RATE
        self.vad_checked_until = self.received_seconds

    def _transcribe(self) -> list[Word]:
        # Committed text from before the buffer as the prompt keeps context across cuts (text
        # that is also in the buffer's audio would make the model skip or repeat it).
        before = (
            [w for w in self.committed[-PROMPT_WORDS:] if w.end <= self.buffer_start + 0.01] if PROMPT_WORDS else []
        )
        return transcribe_words(self.buffer, self.buffer_start, self.options, text_of(before))

    def _unseen(self, words: list[Word]) -> list[Word]:
        """The hypothesis past what is committed. Timestamps jitter between calls, so words
        that start a little before the committed end are kept, and a repeat of the committed
        tail at their head (up to 5 words) is removed."""
        new = [w for w in words if w.start > self.committed_until - 0.1]
        if new and self.committed and abs(new[0].start - self.committed_until) < 1.0:
            for n in range(min(5, len(new), len(self.committed)), 0, -1):
                if [w.key for w in self.committed[-n:]] == [w.key for w in new[:n]]:
                    return new[n:]
        return new

    def _commit(self, words: list[Word]) -> list[Word]:
        self.committed += words
        if words:
            self.hypothesis = [w for w in self.hypothesis if w.end > self.committed_until]
        return words

    def _trim(self, silent_tail: float) -> None:
        length = len(self.buffer) / SAMPLE_RATE
        if not self.hypothesis and silent_tail >= self.END_OF_UTTERANCE_SECONDS:
            self._cut(self.received_seconds - min(silent_tail, 0.5))  # all said is final
        elif length > self.TRIM_SECONDS:
            ends = [w.end for w in self.committed if w.end > self.buffer_start and w.word.rstrip()[-1:] in ".?!"]
            if ends:
                self._cut(ends[-1])
            elif length > self.MAX_BUFFER_SECONDS and self.committed_until > self.buffer_start:
                self._cut(self.committed_until)

    def _cut(self, at: float) -> None:
        """Drop buffered audio before stream time `at`."""
        drop = int((at - self.buffer_start) * SAMPLE_RATE)
        if drop > 0:
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop / SAMPLE_RATE

    def skip_to_now(self, keep_seconds: float) -> float:
        """Falling behind: commit what is pending and drop all but the last `keep_seconds` of
        audio. Returns the seconds skipped."""
        self._commit(self.hypothesis)
        self.hypothesis = []
        before = self.buffer_start
        self._cut(max(self.buffer_start, self.received_seconds - keep_seconds))
        return self.buffer_start - before


class NaiveWindow:
    """The baseline the benchmark compares against: re-transcribe the last WINDOW seconds on
    every step; a word becomes final once it is half a window old (then it was heard with
    context on both sides), as last heard."""

    WINDOW_SECONDS = 10.0

    def __init__(self, options: engine.Options | None = None):
        self.options = (options or engine.Options()).resolved()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0
        self.committed: list[Word] = []
        self.hypothesis: list[Word] = []
        self.processed_until = 0.0

    @property
    def received_seconds(self) -> float:
        return self.buffer_start + len(self.buffer) / SAMPLE_RATE

    def insert_audio(self, audio: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, audio.astype(np.float32, copy=False)])
        drop = len(self.buffer) - int(self.WINDOW_SECONDS * SAMPLE_RATE)
        if drop > 0:
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop / SAMPLE_RATE

    def restore(self, committed: list[Word], audio: np.ndarray, start: float) -> None:
        self.committed = list(committed)
        self.buffer, self.buffer_start = np.zeros(0, dtype=np.float32), start
        self.insert_audio(audio)
        self.processed_until = self.received_seconds

    def process(self) -> Update:
        self.processed_until = self.received_seconds
        until = self.committed[-1].end if self.committed else 0.0
        words = [w for w in transcribe_words(self.buffer, self.buffer_start, self.options) if w.start >= until - 0.05]
        settled = self.received_seconds - self.WINDOW_SECONDS / 2
        final = [w for w in words if w.end <= settled]
        self.committed += final
        self.hypothesis = words[len(final) :]
        return Update(committed=final, partial=list(self.hypothesis), inferred=True)

    def finish(self) -> list[Word]:
        rest, self.hypothesis = self.hypothesis, []
        self.committed += rest
        return rest

    def skip_to_now(self, keep_seconds: float) -> float:
        return 0.0  # it only ever looks at the last window anyway
