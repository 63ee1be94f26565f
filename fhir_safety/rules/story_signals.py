"""Safety signals in patient stories: a transparent, weighted phrase lexicon.

Pure: text in, a score and the phrases that made it out; no I/O, no clock.

How a story is scored (docs/stories.md has the worked rules and the measured figures):

1. **Normalise**: Markdown links, emphasis and headings are stripped; lower case; typographic
   apostrophes and dashes made plain; white space collapsed.
2. **Sentences** are split on ``. ! ?`` and line breaks; each phrase is matched (regular
   expression, word-bounded) inside one sentence.
3. **Negation**: a match preceded, within ``negation_window`` words of the same clause (a
   clause ends at ``, ; :`` or "but"), by a negation or hedge ("no", "not", "never",
   "without", "didn't", "at risk of", ...) does not count: "no mistakes were made", "he didn't
   have a single fall". Phrases that carry their own negation ("was never given", "nobody
   checked") are omissions and count; only words *before* them are looked at.
4. **Context**: in a sentence with praise words ("brilliant", "thank", "straight away") or
   about something outside care ("fell at home", "off my bike"), a phrase marked
   ``dampable`` counts ``context_factor`` of its weight: praise that mentions a fall, a good
   catch. Hyperbole ("could kill a horse", "lethal") counts nothing in a sentence about food.
5. **Score** = the sum, over categories (fall, medication, wrong patient, ...), of the highest
   weight that category reached. One strong phrase (weight 2) or two independent weaker
   signals (a fall and a fracture) reach the default threshold of 2.0.

The lexicon is data (``fhir_safety.rules.story_lexicon``), tuned on the development half of
the labelled stories only; the classifier is a triage aid that points a human reviewer at
stories to read, never a judgement that an incident happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

__all__ = [
    "Lexicon",
    "Match",
    "Metrics",
    "Phrase",
    "Signal",
    "lexicon_from_json",
    "metrics",
    "normalise",
    "score_text",
    "sentences",
    "sweep",
]

_LINK_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKUP_RE = re.compile(r"(^|\s)[#>]+\s*|[*_`~]+", re.MULTILINE)
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_RE = re.compile(r"[,;:()]|\s(?:but|although|though|however)\s")
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True, slots=True)
class Phrase:
    """One lexicon entry: a regular expression over normalised text, its weight and category.

    ``dampable``: counts only ``context_factor`` of its weight in a sentence of praise or about
    events outside care. ``hyperbole``: counts nothing in a sentence about food.
    """

    pattern: str
    weight: float
    category: str
    note: str = ""
    dampable: bool = True
    hyperbole: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.pattern)


@dataclass(frozen=True, slots=True)
class Lexicon:
    version: str
    phrases: tuple[Phrase, ...]
    negations: tuple[str, ...]  # regular expressions: negation and hedge cues
    praise: tuple[str, ...]  # regular expressions: praise and good-catch cues
    outside_care: tuple[str, ...]  # regular expressions: events before or outside care
    food: tuple[str, ...]  # regular expressions: food words (for hyperbole)
    negation_window: int = 4
    context_factor: float = 0.25

    @property
    def negation_regex(self) -> re.Pattern[str]:
        return _alternatives(self.negations)

    @property
    def praise_regex(self) -> re.Pattern[str]:
        return _alternatives(self.praise)

    @property
    def outside_care_regex(self) -> re.Pattern[str]:
        return _alternatives(self.outside_care)

    @property
    def food_regex(self) -> re.Pattern[str]:
        return _alternatives(self.food)


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    """A phrase pattern bounded by non-alphanumerics on both sides."""
    return re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])")


@cache
def _alternatives(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!x)x")  # matches nothing
    return _compile("(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")


@dataclass(frozen=True, slots=True)
class Match:
    """A phrase found in a story, and what it counted for."""

    category: str
    text: str  # the words matched, as normalised
    pattern: str
    weight: float  # the lexicon weight
    counted: float  # after negation and context
    sentence: int  # index of the sentence
    negated: bool = False
    context: str | None = None  # "praise", "outside care" or "food"


@dataclass(frozen=True, slots=True)
class Signal:
    """A story's score and the matches behind it."""

    score: float
    matches: tuple[Match, ...] = field(default_factory=tuple)

    def flagged(self, threshold: float) -> bool:
        return self.score >= threshold

    @property
    def evidence(self) -> tuple[Match, ...]:
        """The matches that counted, strongest first (one per category and text)."""
        counted = sorted(
            (m for m in self.matches if m.counted > 0),
            key=lambda m: (-m.counted, m.sentence, m.text),
        )
        unique = {(m.category, m.text): m for m in reversed(counted)}  # keeps the first
        return tuple(sorted(unique.values(), key=lambda m: (-m.counted, m.sentence, m.text)))

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.category for m in self.evidence))


def normalise(text: str) -> str:
    """Plain lower-case text: Markdown stripped, quotes and dashes made plain."""
    text = _LINK_RE.sub(r"\1", text)
    text = _MARKUP_RE.sub(r"\1", text)
    text = (
        text.replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
        .replace("\u2013", "-")
        .replace("\u2014", "-")
    )
    return _SPACE_RE.sub(" ", text.lower()).strip()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(normalise(text)) if s.strip()]


def score_text(text: str, lexicon: Lexicon) -> Signal:
    """Score one story (title and body joined by the caller)."""
    matches: list[Match] = []
    for index, sentence in enumerate(sentences(text)):
        praise = lexicon.praise_regex.search(sentence) is not None
        outside = lexicon.outside_care_regex.search(sentence) is not None
        food = lexicon.food_regex.search(sentence) is not None
        for phrase in lexicon.phrases:
            for found in phrase.regex.finditer(sentence):
                matches.append(
                    _match(phrase, found, sentence, index, lexicon, praise, outside, food)
                )
    best: dict[str, float] = {}
    for match in matches:
        best[match.category] = max(best.get(match.category, 0.0), match.counted)
    return Signal(round(sum(best.values()), 3), tuple(matches))


def _match(
    phrase: Phrase,
    found: re.Match[str],
    sentence: str,
    index: int,
    lexicon: Lexicon,
    praise: bool,
    outside: bool,
    food: bool,
) -> Match:
    before = _CLAUSE_RE.split(sentence[: found.start()])[-1]
    window = " ".join(_WORD_RE.findall(before)[-lexicon.negation_window :])
    negated = bool(window) and lexicon.negation_regex.search(window) is not None
    context: str | None = None
    counted = phrase.weight
    if negated:
        counted = 0.0
    elif phrase.hyperbole and food:
        counted, context = 0.0, "food"
    elif phrase.dampable and (praise or outside):
        counted = phrase.weight * lexicon.context_factor
        context = "praise" if praise else "outside care"
    return Match(
        category=phrase.category,
        text=found.group(0),
        pattern=phrase.pattern,
        weight=phrase.weight,
        counted=round(counted, 3),
        sentence=index,
        negated=negated,
        context=context,
    )


def lexicon_from_json(data: Mapping[str, Any]) -> Lexicon:
    """A lexicon from its JSON form (the shape ``fhir-safety`` writes and docs describe)."""
    try:
        return Lexicon(
            version=str(data["version"]),
            phrases=tuple(
                Phrase(
                    pattern=str(p["pattern"]),
                    weight=float(p["weight"]),
                    category=str(p["category"]),
                    note=str(p.get("note", "")),
                    dampable=bool(p.get("dampable", True)),
                    hyperbole=bool(p.get("hyperbole", False)),
                )
                for p in data["phrases"]
            ),
            negations=tuple(data["negations"]),
            praise=tuple(data["praise"]),
            outside_care=tuple(data["outsideCare"]),
            food=tuple(data["food"]),
            negation_window=int(data.get("negationWindow", 4)),
            context_factor=float(data.get("contextFactor", 0.25)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a story lexicon: {exc}") from exc


# -- measurement ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metrics:
    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def metrics(scored: Iterable[tuple[float, bool]], threshold: float) -> Metrics:
    """Confusion counts for (score, is an incident) pairs flagged at ``score >= threshold``."""
    tp = fp = fn = tn = 0
    for score, incident in scored:
        flagged = score >= threshold
        if flagged and incident:
            tp += 1
        elif flagged:
            fp += 1
        elif incident:
            fn += 1
        else:
            tn += 1
    return Metrics(threshold, tp, fp, fn, tn)


def sweep(scored: Sequence[tuple[float, bool]], thresholds: Iterable[float]) -> list[Metrics]:
    return [metrics(scored, t) for t in thresholds]
