"""Stories in (Care Opinion API v2 JSON), FHIR and a per-service summary out; the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_safety.cli import main
from fhir_safety.config import StorySettings
from fhir_safety.errors import RequestError
from fhir_safety.rules.story_lexicon import LEXICON
from fhir_safety.services import stories

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LABELLED = Path(__file__).resolve().parents[2] / "data" / "stories" / "labelled.json"
WARD = {"nacs": "ZZ102", "name": "Ward 7", "type": "service"}


def opinion(oid: int, body: str, **extra: Any) -> dict[str, Any]:
    return {"id": oid, "title": f"Story {oid}", "body": body, "healthServices": [WARD], **extra}


INCIDENT = opinion(
    1,
    "Mum was given another patient's tablets and fell on the ward, fracturing her wrist. "
    "Nobody answered the call bell.",
    dateOfSubmission="2026-11-01T10:00:00Z",
    dateOfPublication="2026-11-03T10:00:00Z",
    authorRole="relative",
    criticality="strongly critical",
)
PRAISE = opinion(2, "Mum fell at home and broke her hip. The ward were wonderful.")


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "shape",
    [
        [INCIDENT, PRAISE],
        {"opinions": [INCIDENT, PRAISE]},
        {"stories": [{"opinion": INCIDENT}, {"opinion": PRAISE}]},
    ],
)
def test_read_opinions_accepts_api_and_labelled_shapes(tmp_path: Path, shape: Any) -> None:
    opinions = stories.read_opinions(write(tmp_path, "in.json", shape))
    assert [o.id for o in opinions] == ["1", "2"]
    assert opinions[0].services == (stories.HealthService("ZZ102", "Ward 7", "service"),)


def test_read_opinions_from_a_folder_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.json", PRAISE)
    write(tmp_path, "a.json", INCIDENT)
    assert [o.id for o in stories.read_opinions(tmp_path)] == ["1", "2"]


def test_services_from_links_when_not_joined_in() -> None:
    raw = {
        "id": 5,
        "body": "text",
        "links": [
            {"rel": "healthservice", "id": "ZZ101", "href": "https://x.test/ZZ101"},
            {"rel": "responses", "id": "9", "href": "https://x.test/9"},
        ],
    }
    assert stories.parse_opinion(raw).services == (stories.HealthService("ZZ101", "ZZ101"),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        (json.dumps({"title": "no id", "body": "x"}), "needs an id"),
        (json.dumps({"id": 1, "body": " "}), "no body text"),
        (json.dumps(["a string"]), "must be a JSON object"),
    ],
)
def test_read_opinions_rejects_bad_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RequestError, match=message):
        stories.read_opinions(path)


def test_read_opinions_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="no JSON files"):
        stories.read_opinions(tmp_path)


def test_classify_outputs_valid_fhir() -> None:
    opinions = [stories.parse_opinion(INCIDENT), stories.parse_opinion(PRAISE)]
    result = stories.classify(opinions, threshold=2.0, lexicon=LEXICON, now=NOW)
    resources = [e["resource"] for e in result.bundle["entry"]]
    assert [r["resourceType"] for r in resources] == [
        "Communication",
        "DetectedIssue",
        "Communication",
    ]
    for entry in result.bundle["entry"]:
        resource_ref = f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        assert entry["request"] == {"method": "PUT", "url": resource_ref}
        assert entry["fullUrl"].startswith("urn:uuid:")
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    communication, issue, _ = resources
    assert communication["id"] == "careopinion-1"
    assert communication["identifier"] == [{"system": stories.CARE_OPINION_OPINIONS, "value": "1"}]
    assert communication["recipient"][0]["identifier"]["value"] == "ZZ102"
    assert communication["sent"] == "2026-11-01T10:00:00Z"
    assert communication["sender"] == {"display": "relative (Care Opinion author)"}
    # Bundle entries refer to each other by their urn:uuid fullUrl (the server rewrites them).
    communication_url = result.bundle["entry"][0]["fullUrl"]
    assert communication_url.startswith("urn:uuid:")
    assert issue["implicated"] == [{"reference": communication_url}]
    assert issue["severity"] == "high"  # score >= twice the threshold
    evidence = [e["code"][0]["text"] for e in issue["evidence"]]
    assert 'wrong patient: "another patient\'s"' in evidence
    assert len(evidence) == len(set(evidence))
    assert issue["identifiedDateTime"] == "2026-11-26T09:00:00Z"


def test_summary_by_health_service() -> None:
    other = opinion(3, "The car park was expensive.")
    other["healthServices"] = []
    opinions = [stories.parse_opinion(o) for o in (INCIDENT, PRAISE, other)]
    summary = stories.classify(opinions, threshold=2.0, lexicon=LEXICON, now=NOW).summary
    assert (summary["stories"], summary["flagged"]) == (3, 1)
    ward, unknown = summary["services"]
    assert (ward["id"], ward["stories"], ward["flagged"], ward["flaggedShare"]) == (
        "ZZ102",
        2,
        1,
        0.5,
    )
    assert ward["flaggedStories"] == ["1"]
    assert ("wrong patient", 1) in [tuple(c) for c in ward["categories"]]
    assert unknown["id"] == "unknown"
    assert summary["flaggedStories"][0]["id"] == "1"


def test_higher_threshold_flags_fewer() -> None:
    opinions = [stories.parse_opinion(INCIDENT)]
    assert (
        stories.classify(opinions, threshold=50, lexicon=LEXICON, now=NOW).summary["flagged"] == 0
    )


def test_load_lexicon_from_file(tmp_path: Path) -> None:
    assert stories.load_lexicon(StorySettings()) is LEXICON
    path = write(
        tmp_path,
        "lexicon.json",
        {
            "version": "local",
            "phrases": [{"pattern": "car park", "weight": 2, "category": "parking"}],
            "negations": [],
            "praise": [],
            "outsideCare": [],
            "food": [],
        },
    )
    lexicon = stories.load_lexicon(StorySettings(lexicon_file=path))
    assert lexicon.version == "local"
    with pytest.raises(RequestError, match="cannot use lexicon"):
        stories.load_lexicon(StorySettings(lexicon_file=tmp_path / "missing.json"))


def test_cli_classify_writes_bundle_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path, "stories.json", [INCIDENT, PRAISE])
    out = tmp_path / "out"
    code = main(
        [
            "stories",
            "classify",
            str(source),
            "--out",
            str(out),
            "--json",
            "--now",
            "2026-11-26T09:00:00Z",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flagged"] == 1
    assert json.loads((out / "summary.json").read_text())["threshold"] == 2.0
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["type"] == "transaction"


def test_cli_classify_threshold_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path, "stories.json", [INCIDENT, PRAISE])
    assert main(["stories", "classify", str(source), "--threshold", "0.1"]) == 0
    assert "2 of 2 stories flagged (threshold 0.1)" in capsys.readouterr().out


def test_cli_classify_missing_file_exits_2(tmp_path: Path) -> None:
    assert main(["stories", "classify", str(tmp_path / "nope.json")]) == 2


def test_cli_evaluate_prints_the_documented_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stories", "evaluate", str(LABELLED)]) == 0
    out = capsys.readouterr().out
    assert "| held-out | 2.0 (default) |" in out
