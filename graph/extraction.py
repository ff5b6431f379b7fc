"""Knowledge from a transcript without a language model: named things and topics.

Whisper writes proper nouns with capitals, so a run of capitalised words that is not merely the
first word of a sentence is taken as a named entity. Topics are YAKE's key phrases (statistical,
no model, ~10 ms per transcript). The AI workflows can add typed entities on top; these are the
fallback that always works.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import yake

# A capitalised word (letters, inner apostrophes/hyphens/periods as in "O'Brien", "U.S.").
WORD = re.compile(r"[A-Za-z][A-Za-z'’.\-]*")
# Capitalised words that are not names when they open a span.
COMMON = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "let",
        "me",
        "my",
        "no",
        "not",
        "now",
        "of",
        "off",
        "ok",
        "okay",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "up",
        "us",
        "was",
        "we",
        "well",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "yes",
        "yeah",
        "you",
        "your",
        "mr",
        "mrs",
        "ms",
        "dr",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "please",
        "thanks",
        "thank",
        "hello",
        "hi",
        "oh",
        "today",
        "yesterday",
        "tomorrow",
        "tonight",
        "also",
        "after",
        "before",
        "maybe",
        "perhaps",
        "however",
        "actually",
        "anyway",
        "first",
        "next",
        "finally",
        "last",
        "here",
        "just",
        "really",
        "sure",
        "right",
        "good",
        "great",
        "all",
        "some",
        "many",
        "most",
        "every",
        "each",
        "other",
        "another",
        "one",
        "two",
        "three",
    ]
)
JOINERS = frozenset({"of", "de", "van", "von", "la", "da", "del", "the"})


@dataclass
class Found:
    name: str
    key: str
    type: str = "name"
    segments: list[int] = field(default_factory=list)
    count: int = 0


def normalise(name: str) -> str:
    return " ".join(name.lower().replace("’", "'").split())


SENTENCES = re.compile(r"(?<=[.!?])\s+")
CLAUSES = re.compile(r"[,;:()\"“”]|\s[-–—]\s")


def _spans(text: str) -> Iterable[tuple[str, bool]]:
    """Runs of capitalised words in `text`, each with whether it opens a sentence."""
    for sentence in SENTENCES.split(text.strip()):
        first = True
        for clause in CLAUSES.split(sentence):
            run: list[str] = []
            run_opens = False
            for match in WORD.finditer(clause):
                word = re.sub(r"['’]s$", "", match.group()).rstrip("'’-")  # "Stella's" is Stella
                if word.endswith(".") and "." not in word[:-1]:  # a full stop, not "U.S."
                    word = word[:-1]
                if word[0].isupper() and word.lower() not in COMMON:
                    if not run:
                        run_opens = first
                    run.append(word)
                elif run and word in JOINERS:
                    run.append(word)
                else:
                    if run:
                        yield " ".join(run), run_opens
                    run = []
                first = False
            if run:
                yield " ".join(run), run_opens


def entities(segment_texts: list[str], limit: int = 50) -> list[Found]:
    """Named things in the segments, with the segment indexes that mention each (first seen order)."""
    found: dict[str, Found] = {}
    sentence_openers: dict[str, Found] = {}
    for index, text in enumerate(segment_texts):
        for span, at_sentence_start in _spans(text):
            while span.split()[-1].lower() in JOINERS:  # "Bank of" → "Bank"
                span = span.rsplit(" ", 1)[0]
            key = normalise(span)
            if len(key) < 2:
                continue
            # A lone capitalised word opening a sentence may be any word: it counts only if it is
            # also seen capitalised mid-sentence, or is more than one word.
            target = sentence_openers if at_sentence_start and " " not in span else found
            entry = target.setdefault(key, Found(name=span, key=key))
            entry.count += 1
            if index not in entry.segments:
                entry.segments.append(index)
    for key, entry in sentence_openers.items():
        if key in found:
            found[key].count += entry.count
            found[key].segments = sorted(set(found[key].segments) | set(entry.segments))
    ranked = sorted(found.values(), key=lambda f: -f.count)[:limit]
    return sorted(ranked, key=lambda f: f.segments[0])


def with_typed(found: list[Found], typed: list[dict], segment_texts: list[str]) -> list[Found]:
    """The names found here, with the types an AI workflow gave them (`typed`: [{name, type}]);
    its names not found here are added where the segments really say them."""
    by_key = {f.key: f for f in found}
    lowered = [t.lower() for t in segment_texts]
    for item in typed:
        key = normalise(item.get("name", ""))
        if len(key) < 2:
            continue
        if key in by_key:
            by_key[key].type = item.get("type") or by_key[key].type
            continue
        pattern = re.compile(r"\b" + re.escape(key) + r"\b")
        hits = {i: len(pattern.findall(t)) for i, t in enumerate(lowered)}
        segments = [i for i, n in hits.items() if n]
        if segments:
            entry = Found(
                name=item["name"].strip(),
                key=key,
                type=item.get("type") or "name",
                segments=segments,
                count=sum(hits.values()),
            )
            by_key[key] = entry
            found.append(entry)
    return sorted(found, key=lambda f: f.segments[0])


@lru_cache(maxsize=1)
def _keyword_extractor() -> yake.KeywordExtractor:
    return yake.KeywordExtractor(lan="en", n=2, top=16, dedupLim=0.7)


def topics(text: str, limit: int = 8) -> list[tuple[str, float]]:
    """Key phrases of the text, best first, with a relevance in (0, 1]."""
    if len(text.split()) < 4:
        return []
    phrases = [(p.lower(), float(s)) for p, s in _keyword_extractor().extract_keywords(text)]
    # A word already inside a kept phrase ("smith" beside "john smith") says nothing new.
    words_in_phrases = {w for p, _ in phrases if " " in p for w in p.split()}
    kept = [(p, s) for p, s in phrases if " " in p or p not in words_in_phrases][:limit]
    # YAKE scores lower-is-better; turn them into a weight where higher is better.
    return [(phrase, round(1.0 / (1.0 + 10 * score), 4)) for phrase, score in kept]
