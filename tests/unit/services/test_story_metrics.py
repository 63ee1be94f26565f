"""The labelled story set is what docs/stories.md says, and the documented figures are current.

The figures in docs/stories.md (between the story-metrics markers) are recomputed here from
tests/data/stories/labelled.json with the shipped lexicon and default threshold; if the
lexicon, the threshold or the stories change, this test fails until the doc is regenerated
with ``fhir-safety stories evaluate tests/data/stories/labelled.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from fhir_safety.config import Settings
from fhir_safety.rules.story_lexicon import LEXICON
from fhir_safety.services.stories import load_labelled, metrics_markdown

REPO = Path(__file__).resolve().parents[3]
LABELLED = REPO / "tests" / "data" / "stories" / "labelled.json"
DOC = REPO / "docs" / "stories.md"
START, END = "<!-- story-metrics:start -->", "<!-- story-metrics:end -->"


def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LABELLED.read_text(encoding="utf-8"))
    return data


def test_labelled_set_has_200_or_more_stories_of_both_classes_and_all_kinds() -> None:
    stories = load_labelled(LABELLED)
    assert len(stories) >= 200
    kinds = Counter((s.kind, s.incident) for s in stories)
    assert set(kinds) == {
        ("positive", True),
        ("hard-positive", True),
        ("negative", False),
        ("hard-negative", False),
    }
    assert min(kinds.values()) >= 25
    assert len({s.opinion.id for s in stories}) == len(stories)


def test_split_is_alternate_stories_within_each_kind() -> None:
    seen: Counter[str] = Counter()
    for item in raw()["stories"]:
        expected = "dev" if seen[item["kind"]] % 2 == 0 else "held-out"
        assert item["split"] == expected, item["opinion"]["id"]
        seen[item["kind"]] += 1
    splits = Counter((s.split, s.incident) for s in load_labelled(LABELLED))
    assert all(
        splits[(split, label)] >= 45 for split in ("dev", "held-out") for label in (True, False)
    )


def test_hard_negatives_include_the_cases_the_issue_names() -> None:
    bodies = [
        s["opinion"]["body"].lower() for s in raw()["stories"] if s["kind"] == "hard-negative"
    ]
    assert any("fell" in b and "wonderful" in b for b in bodies)  # praise that mentions a fall
    assert any("no mistakes were made" in b for b in bodies)
    assert any("custard" in b or "pudding" in b for b in bodies)  # jokes about food


def test_documented_figures_are_the_measured_ones() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert START in doc, "docs/stories.md lost its story-metrics start marker"
    assert END in doc, "docs/stories.md lost its story-metrics end marker"
    documented = doc.split(START, 1)[1].split(END, 1)[0].strip()
    measured = metrics_markdown(LABELLED, LEXICON, Settings().stories.threshold)
    assert documented == measured.strip(), (
        "docs/stories.md is out of date: run "
        "`fhir-safety stories evaluate tests/data/stories/labelled.json` and paste the table"
    )
