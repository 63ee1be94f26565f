"""The story classifier: normalising, negation, praise and food context, scoring, metrics."""

from __future__ import annotations

import dataclasses
import re

import pytest

from fhir_safety.rules.story_lexicon import LEXICON
from fhir_safety.rules.story_signals import (
    Lexicon,
    Phrase,
    lexicon_from_json,
    metrics,
    normalise,
    score_text,
    sentences,
    sweep,
)

THRESHOLD = 2.0


def small_lexicon(*phrases: Phrase) -> Lexicon:
    return dataclasses.replace(LEXICON, phrases=phrases)


def test_normalise_strips_markdown_and_typography() -> None:
    text = "# Title\n> quoted **bold** _it_ [a link](https://x.test) \u2018Mum\u2019s\u2019 \u2014 done"
    assert normalise(text) == "title\nquoted bold it a link 'mum's' - done"


def test_sentences_split_on_stops_and_lines() -> None:
    assert sentences("One. Two!\nThree? four") == ["one.", "two!", "three?", "four"]


@pytest.mark.parametrize(
    ("text", "category", "negated"),
    [
        ("No mistakes were made.", "error", True),
        ("He didn't have a single fall.", "fall", True),
        ("I never fell.", "fall", True),
        ("She came home without a single pressure sore.", "pressure ulcer", True),
        ("There were no falls on the ward.", "fall", True),
        ("Dad is at risk of falls.", "fall", True),
        ("Mum had a fall on the ward.", "fall", False),
        # A clause boundary ends the negation window.
        ("Nothing was said, but she fell.", "fall", False),
        # Omissions carry their own negation and count.
        ("His insulin was never given.", "medication", False),
        ("Nobody answered the buzzer.", "monitoring", False),
    ],
)
def test_negation_window(text: str, category: str, negated: bool) -> None:
    matches = [m for m in score_text(text, LEXICON).matches if m.category == category]
    assert matches, f"no {category} match in {text!r}"
    assert all(m.negated is negated for m in matches)


def test_negated_match_counts_nothing() -> None:
    signal = score_text("No mistakes were made and there were no falls.", LEXICON)
    assert signal.score == 0
    assert signal.evidence == ()


def test_praise_sentence_damps_incident_words() -> None:
    signal = score_text("The nurse spotted the sepsis straight away.", LEXICON)
    [sepsis] = [m for m in signal.matches if m.text == "sepsis"]
    assert (sepsis.context, sepsis.counted) == ("praise", 0.25)


def test_outside_care_damps_a_fall_at_home() -> None:
    signal = score_text("Mum fell at home and broke her hip.", LEXICON)
    assert signal.score == 0.5
    assert {m.context for m in signal.matches} == {"outside care"}


def test_food_sentence_silences_hyperbole_only() -> None:
    joke = score_text("The custard is lethal.", LEXICON)
    assert joke.score == 0
    assert [m.context for m in joke.matches] == ["food"]
    assert score_text("The dose could have been lethal.", LEXICON).score > 0
    # Choking in a sentence about food is not hyperbole: it still counts in full.
    assert score_text("She was given a sandwich and choked.", LEXICON).score >= THRESHOLD


def test_score_is_sum_of_category_maxima() -> None:
    lexicon = small_lexicon(
        Phrase("fell", 1.0, "fall"),
        Phrase("found on the floor", 2.0, "fall"),
        Phrase("fractured", 1.0, "harm"),
    )
    signal = score_text("She fell. She fell again and was found on the floor. Fractured.", lexicon)
    assert signal.score == 3.0  # fall: max(1, 1, 2) + harm: 1
    assert [m.text for m in signal.evidence] == ["found on the floor", "fell", "fractured"]
    assert signal.categories == ("fall", "harm")


@pytest.mark.parametrize(("score", "flagged"), [(1.99, False), (2.0, True), (2.01, True)])
def test_threshold_edge_is_inclusive(score: float, flagged: bool) -> None:
    lexicon = small_lexicon(Phrase("x", score, "c"))
    assert score_text("x", lexicon).flagged(THRESHOLD) is flagged


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("I was given another patient's tablets.", True),
        ("Mum fell on the ward and fractured her wrist.", True),
        ("The ward was noisy and the food was cold.", False),
        ("I fell off my bike. The A&E team were brilliant.", False),
        ("Nothing major, but she gave me the antibiotics meant for another patient.", True),
        ("If the sponge pudding doesn't kill me nothing will!", False),
    ],
)
def test_shipped_lexicon_examples(text: str, flagged: bool) -> None:
    assert score_text(text, LEXICON).flagged(THRESHOLD) is flagged


def test_shipped_lexicon_patterns_compile_and_are_documented() -> None:
    categories = {p.category for p in LEXICON.phrases}
    assert {"fall", "medication", "wrong patient", "harm", "hyperbole"} <= categories
    for phrase in LEXICON.phrases:
        re.compile(phrase.pattern)
        assert phrase.weight in {0.5, 1.0, 2.0}, phrase.pattern
    assert LEXICON.version == "0.2.0"


def test_lexicon_json_round_trip() -> None:
    data = {
        "version": "local-1",
        "phrases": [{"pattern": "fell", "weight": 2, "category": "fall", "note": "n"}],
        "negations": ["no"],
        "praise": ["thanks"],
        "outsideCare": ["at home"],
        "food": ["food"],
        "negationWindow": 3,
        "contextFactor": 0.5,
    }
    lexicon = lexicon_from_json(data)
    assert lexicon.phrases == (Phrase("fell", 2.0, "fall", "n"),)
    assert (lexicon.negation_window, lexicon.context_factor) == (3, 0.5)
    assert score_text("She fell at home", lexicon).score == 1.0


def test_lexicon_json_invalid_is_value_error() -> None:
    with pytest.raises(ValueError, match="not a story lexicon"):
        lexicon_from_json({"version": "x"})


def test_empty_cue_lists_match_nothing() -> None:
    lexicon = Lexicon("t", (Phrase("fell", 1.0, "fall"),), (), (), (), ())
    assert score_text("No, she never fell at home, thanks.", lexicon).score == 1.0


def test_metrics_counts_and_ratios() -> None:
    pairs = [(3.0, True), (2.0, False), (1.0, True), (0.0, False)]
    m = metrics(pairs, 2.0)
    assert (m.true_positives, m.false_positives, m.false_negatives, m.true_negatives) == (
        1,
        1,
        1,
        1,
    )
    assert (m.precision, m.recall, m.f1) == (0.5, 0.5, 0.5)


def test_metrics_with_nothing_flagged_is_zero_not_error() -> None:
    m = metrics([(0.0, True)], 2.0)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert metrics([], 2.0).recall == 0.0


def test_sweep_is_one_metrics_per_threshold() -> None:
    pairs = [(3.0, True), (1.0, False)]
    assert [m.threshold for m in sweep(pairs, [1.0, 2.0])] == [1.0, 2.0]
    assert [m.precision for m in sweep(pairs, [1.0, 2.0])] == [0.5, 1.0]
