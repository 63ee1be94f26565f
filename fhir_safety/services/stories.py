"""Patient stories in, FHIR and a per-service summary out (the classifier is rules/story_signals).

Input: Care Opinion API v2 opinions as JSON files (the API itself needs a paid subscription
key). A file may hold one opinion, a list of them (the ``/api/v2/opinions`` answer), an object
with ``opinions``, or a labelled set (``stories[].opinion``, as in tests/data/stories/). The
health services an opinion is about come from its ``healthServices`` (the
``/opinions/{id}/healthservices`` subcollection joined in by whoever harvested it) or, failing
that, its ``links`` whose ``rel`` names a health service.

Output: a transaction Bundle of ``PUT`` entries (loading twice is loading once): one
``Communication`` per story and one ``DetectedIssue`` per flagged story with the matched
phrases as evidence; and a summary by health service.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fhir_safety.config import StorySettings
from fhir_safety.errors import RequestError
from fhir_safety.rules.story_lexicon import LEXICON
from fhir_safety.rules.story_signals import Lexicon, Signal, lexicon_from_json, metrics, score_text

__all__ = [
    "CARE_OPINION_OPINIONS",
    "CARE_OPINION_SERVICES",
    "DEFAULT_SWEEP",
    "ClassifiedStory",
    "HealthService",
    "LabelledStory",
    "Opinion",
    "StoryResult",
    "classify",
    "classify_source",
    "communication",
    "detected_issue",
    "load_labelled",
    "load_lexicon",
    "metrics_markdown",
    "parse_opinion",
    "read_opinions",
    "service_summary",
    "write_outputs",
]

CARE_OPINION_OPINIONS = "https://www.careopinion.org.uk/opinions"
CARE_OPINION_SERVICES = "https://www.careopinion.org.uk/healthservices"
DEFAULT_SWEEP = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
_ID_RE = re.compile(r"[^A-Za-z0-9\-.]")


@dataclass(frozen=True, slots=True)
class HealthService:
    id: str  # Care Opinion healthservice id (NACS/ODS code)
    name: str
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Opinion:
    id: str
    title: str
    body: str
    submitted: str | None
    published: str | None
    author_role: str | None
    criticality: str | None
    services: tuple[HealthService, ...]

    @property
    def text(self) -> str:
        """Title and body, as the classifier reads them (the title is often the gist)."""
        return f"{self.title}.\n{self.body}" if self.title else self.body

    @property
    def resource_id(self) -> str:
        return f"careopinion-{_ID_RE.sub('-', self.id)}"[:64]


@dataclass(frozen=True, slots=True)
class ClassifiedStory:
    opinion: Opinion
    signal: Signal
    flagged: bool


@dataclass(frozen=True, slots=True)
class StoryResult:
    stories: tuple[ClassifiedStory, ...]
    bundle: dict[str, Any]
    summary: dict[str, Any]


# -- input --------------------------------------------------------------------------------


def read_opinions(source: Path) -> list[Opinion]:
    """Opinions from a JSON file, or from every ``*.json`` file in a folder (sorted by name)."""
    files = sorted(source.glob("*.json")) if source.is_dir() else [source]
    if not files:
        raise RequestError(f"no JSON files in {source}")
    opinions: list[Opinion] = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"cannot read {path}: {exc}") from exc
        for index, raw in enumerate(_raw_opinions(data)):
            try:
                opinions.append(parse_opinion(raw))
            except ValueError as exc:
                raise RequestError(f"{path}: opinion {index}: {exc}") from exc
    return opinions


def _raw_opinions(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("stories"), list):
        return [s.get("opinion") if isinstance(s, dict) else s for s in data["stories"]]
    if isinstance(data, dict) and isinstance(data.get("opinions"), list):
        return list(data["opinions"])
    return [data]


def parse_opinion(raw: Any) -> Opinion:
    """One Care Opinion API v2 opinion (camelCase JSON)."""
    if not isinstance(raw, dict):
        raise ValueError("an opinion must be a JSON object")
    if raw.get("id") in (None, ""):
        raise ValueError("an opinion needs an id")
    body = raw.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ValueError(f"opinion {raw['id']} has no body text")
    return Opinion(
        id=str(raw["id"]),
        title=str(raw.get("title") or ""),
        body=body,
        submitted=_optional_str(raw.get("dateOfSubmission")),
        published=_optional_str(raw.get("dateOfPublication")),
        author_role=_optional_str(raw.get("authorRole")),
        criticality=_optional_str(raw.get("criticality")),
        services=_services(raw),
    )


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _services(raw: Mapping[str, Any]) -> tuple[HealthService, ...]:
    services: list[HealthService] = []
    for item in raw.get("healthServices") or []:
        if isinstance(item, dict) and (item.get("nacs") or item.get("id")):
            ident = str(item.get("nacs") or item.get("id"))
            services.append(HealthService(ident, str(item.get("name") or ident), item.get("type")))
    if not services:
        for link in raw.get("links") or []:
            rel = str(link.get("rel", "")).lower() if isinstance(link, dict) else ""
            if "healthservice" in rel.replace(" ", "") and link.get("id"):
                services.append(HealthService(str(link["id"]), str(link["id"])))
    return tuple(dict.fromkeys(services))


def load_lexicon(settings: StorySettings) -> Lexicon:
    if settings.lexicon_file is None:
        return LEXICON
    try:
        return lexicon_from_json(json.loads(settings.lexicon_file.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise RequestError(f"cannot use lexicon {settings.lexicon_file}: {exc}") from exc


# -- classification and FHIR -------------------------------------------------------------


def classify_source(
    source: Path, *, threshold: float, lexicon: Lexicon, now: datetime
) -> StoryResult:
    return classify(read_opinions(source), threshold=threshold, lexicon=lexicon, now=now)


def classify(
    opinions: Sequence[Opinion], *, threshold: float, lexicon: Lexicon, now: datetime
) -> StoryResult:
    stories = []
    for opinion in opinions:
        signal = score_text(opinion.text, lexicon)
        stories.append(ClassifiedStory(opinion, signal, signal.flagged(threshold)))
    entries = []
    for story in stories:
        entries.append(_put(communication(story.opinion)))
        if story.flagged:
            entries.append(_put(detected_issue(story, threshold, lexicon.version, now)))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return StoryResult(tuple(stories), bundle, service_summary(stories, threshold, lexicon))


def communication(opinion: Opinion) -> dict[str, Any]:
    """The story as a Communication from its (anonymous) author to the services it is about."""
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": opinion.resource_id,
        "identifier": [{"system": CARE_OPINION_OPINIONS, "value": opinion.id}],
        "status": "completed",
        "category": [{"text": "Patient story (Care Opinion)"}],
        "topic": {"text": opinion.title or "Patient story"},
        "payload": [{"contentString": opinion.title}] if opinion.title else [],
    }
    resource["payload"].append({"contentString": opinion.body})
    if opinion.submitted:
        resource["sent"] = opinion.submitted
    if opinion.published:
        resource["received"] = opinion.published
    if opinion.author_role:
        resource["sender"] = {"display": f"{opinion.author_role} (Care Opinion author)"}
    if opinion.services:
        resource["recipient"] = [
            {"identifier": {"system": CARE_OPINION_SERVICES, "value": s.id}, "display": s.name}
            for s in opinion.services
        ]
    if opinion.criticality:
        resource["note"] = [{"text": f"Care Opinion criticality: {opinion.criticality}"}]
    return resource


def detected_issue(
    story: ClassifiedStory, threshold: float, lexicon_version: str, now: datetime
) -> dict[str, Any]:
    """A possible safety incident in a story, with the phrases that scored as evidence."""
    story_ref = {"reference": _full_url(f"Communication/{story.opinion.resource_id}")}
    evidence = story.signal.evidence
    phrases = "; ".join(f'{m.category}: "{m.text}" ({m.counted:g})' for m in evidence)
    return {
        "resourceType": "DetectedIssue",
        "id": f"{story.opinion.resource_id}-signal",
        "status": "preliminary",
        "code": {"text": "Possible patient safety incident described in a patient story"},
        # Triage order for reviewers, not clinical severity: twice the threshold or more = high.
        "severity": "high" if story.signal.score >= 2 * threshold else "moderate",
        "identifiedDateTime": now.isoformat().replace("+00:00", "Z"),
        "author": {"display": f"fhir-safety story-signals lexicon {lexicon_version}"},
        "implicated": [story_ref],
        "evidence": [
            {"code": [{"text": f'{m.category}: "{m.text}"'}], "detail": [story_ref]}
            for m in evidence
        ],
        "detail": (
            f"Score {story.signal.score:g} (flagged at {threshold:g} or more) from: {phrases}. "
            "A prompt for a patient-safety reviewer to read the story, not a finding that an "
            "incident happened (docs/stories.md)."
        ),
    }


def service_summary(
    stories: Sequence[ClassifiedStory], threshold: float, lexicon: Lexicon
) -> dict[str, Any]:
    """Stories, flagged stories and the main signal categories per health service."""
    unknown = HealthService("unknown", "(no health service given)")
    by_service: dict[HealthService, list[ClassifiedStory]] = {}
    for story in stories:
        for service in story.opinion.services or (unknown,):
            by_service.setdefault(service, []).append(story)
    rows: list[dict[str, Any]] = []
    for service, items in by_service.items():
        flagged = [s for s in items if s.flagged]
        categories = Counter(c for s in flagged for c in s.signal.categories)
        rows.append(
            {
                "id": service.id,
                "name": service.name,
                "type": service.type,
                "stories": len(items),
                "flagged": len(flagged),
                "flaggedShare": round(len(flagged) / len(items), 3),
                "categories": sorted(categories.items(), key=lambda kv: (-kv[1], kv[0])),
                "flaggedStories": [s.opinion.id for s in flagged],
            }
        )
    rows.sort(key=lambda r: (-r["flagged"], -r["flaggedShare"], r["name"]))
    return {
        "threshold": threshold,
        "lexicon": lexicon.version,
        "stories": len(stories),
        "flagged": sum(1 for s in stories if s.flagged),
        "services": rows,
        "flaggedStories": [
            {
                "id": s.opinion.id,
                "title": s.opinion.title,
                "score": s.signal.score,
                "services": [x.id for x in s.opinion.services],
                "phrases": [f"{m.category}: {m.text}" for m in s.signal.evidence],
            }
            for s in sorted(stories, key=lambda s: -s.signal.score)
            if s.flagged
        ],
    }


def write_outputs(result: StoryResult, out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, content in (("bundle.json", result.bundle), ("summary.json", result.summary)):
            (out_dir / name).write_text(
                json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    except OSError as exc:
        raise RequestError(f"cannot write to {out_dir}: {exc}") from exc


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": _full_url(url),
        "resource": resource,
        "request": {"method": "PUT", "url": url},
    }


def _full_url(reference: str) -> str:
    """A stable urn:uuid for a resource of the Bundle (other entries refer to it by this)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{CARE_OPINION_OPINIONS}/{reference}')}"


# -- measurement on a labelled set (docs/stories.md) ---------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledStory:
    opinion: Opinion
    incident: bool
    kind: str
    split: str


def load_labelled(path: Path) -> list[LabelledStory]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read {path}: {exc}") from exc
    try:
        return [
            LabelledStory(
                parse_opinion(item["opinion"]),
                item["label"] == "safety-incident",
                str(item["kind"]),
                str(item["split"]),
            )
            for item in data["stories"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise RequestError(f"{path} is not a labelled story set: {exc}") from exc


def metrics_markdown(
    path: Path,
    lexicon: Lexicon,
    threshold: float,
    thresholds: Iterable[float] = DEFAULT_SWEEP,
) -> str:
    """The measured figures, exactly as docs/stories.md shows them (a test compares the two)."""
    labelled = load_labelled(path)
    scores = [(score_text(s.opinion.text, lexicon).score, s) for s in labelled]
    splits = ("dev", "held-out")
    lines = [
        f"Lexicon {lexicon.version}, default threshold {threshold:.1f}, "
        f"{len(labelled)} labelled stories:",
        "",
        "| split | stories | incidents | no incident |",
        "|---|---|---|---|",
    ]
    for split in splits:
        items = [s for s in labelled if s.split == split]
        incidents = sum(1 for s in items if s.incident)
        lines.append(f"| {split} | {len(items)} | {incidents} | {len(items) - incidents} |")
    lines += [
        "",
        "| split | threshold | precision | recall | F1 | TP | FP | FN | TN |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split in splits:
        pairs = [(score, s.incident) for score, s in scores if s.split == split]
        for t in sorted({*thresholds, threshold}):
            m = metrics(pairs, t)
            mark = " (default)" if t == threshold else ""
            lines.append(
                f"| {split} | {t:.1f}{mark} | {m.precision:.2f} | {m.recall:.2f} | {m.f1:.2f} "
                f"| {m.true_positives} | {m.false_positives} | {m.false_negatives} "
                f"| {m.true_negatives} |"
            )
    lines += [
        "",
        "Flagged at the default threshold, by kind of story:",
        "",
        "| kind | dev flagged | held-out flagged |",
        "|---|---|---|",
    ]
    for kind in ("positive", "hard-positive", "negative", "hard-negative"):
        cells = []
        for split in splits:
            kind_scores = [score for score, s in scores if s.split == split and s.kind == kind]
            flagged = sum(1 for score in kind_scores if score >= threshold)
            cells.append(f"{flagged} of {len(kind_scores)}")
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
