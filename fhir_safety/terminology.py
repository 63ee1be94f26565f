"""The terminology engine: the project's ValueSets and CodeSystems, loaded once.

Rules ask two questions of a coded element: "is this code in value set X?"
(O(1), a frozenset of ``(system, code)`` per value set) and, for medicines
recorded only as text, "does this text name a medicine of set X?". Both are
answered from the files in ``terminology/`` (precomputed expansions), so the
answers are the same on every machine and need no terminology server; the
optional remote client in ``fhir_safety.services.remote_terminology`` is for
looking further, never for the rules.

Name matching follows ``terminology/medicine-names.json``: sets in one
``group`` compete and the lowest ``priority`` wins, so that "estradiol
vaginal tablets" is a vaginal product and not systemic HRT. Codes decide
first: a code in any set of the group, or in a system the group holds in full
(``_groups`` in that file: SNOMED CT/dm+d, and ATC for valproate), is a
"yes" or a "no", never a guess. Systems held only in part (RxNorm: a verified
subset) leave an unlisted code to the names, and the match says "by name".
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fhir_safety.config import REPO_ROOT
from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.errors import TerminologyError
from fhir_safety.fhir.resources import CodeableConcept

__all__ = [
    "ATC",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "CodeMatch",
    "Terminology",
    "canonical_system",
    "load_default_terminology",
    "normalise_text",
]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

MEDICINE_NAMES_FILE = "medicine-names.json"

# Other spellings of the same code systems seen in the wild. dm+d concepts are SNOMED CT
# UK Drug Extension ids, so a dm+d system URI means SNOMED.
_SYSTEM_ALIASES = {
    # NHS England's own RA examples (NHSDigital/ra-sandbox@cf0e0af) write SNOMED with https.
    "https://snomed.info/sct": SNOMED,
    "https://dmd.nhs.uk": SNOMED,
    "http://dmd.nhs.uk": SNOMED,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://www.whocc.no/atc/": ATC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
}

GROUPS_KEY = "_groups"  # medicine-names.json: per group, the systems held in full

_FILE_RE = re.compile(r"^(ValueSet|CodeSystem)-(?P<id>[A-Za-z0-9\-.]{1,64})\.json$")
_UNIT_GAP_RE = re.compile(r"(\d)\s+(?=[a-zµ%])")
_SPACE_RE = re.compile(r"\s+")

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CodeMatch:
    """Why a concept was found to belong to a value set."""

    value_set: str  # ValueSet id
    by: Literal["code", "name"]
    system: str | None
    code: str | None
    display: str | None
    matched_text: str | None  # the text/name that matched, for by == "name"


@dataclass(frozen=True, slots=True)
class _NameRule:
    """One medicine set's entry in medicine-names.json, compiled."""

    value_set: str
    group: str
    priority: int
    names: re.Pattern[str] | None
    qualified_names: re.Pattern[str] | None
    requires_any: re.Pattern[str] | None
    excludes_any: re.Pattern[str] | None

    def find(self, text: str) -> str | None:
        """The name that makes ``text`` (normalised) a member, or None."""
        if self.excludes_any is not None and self.excludes_any.search(text):
            return None
        if self.names is not None and (found := self.names.search(text)):
            return found.group(0)
        if self.qualified_names is None or self.requires_any is None:
            return None
        name = self.qualified_names.search(text)
        if name is not None and self.requires_any.search(text):
            return name.group(0)
        return None


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no space between a number and its unit ("13.5 mg" -> "13.5mg")."""
    lowered = _SPACE_RE.sub(" ", text.lower()).strip()
    return _UNIT_GAP_RE.sub(r"\1", lowered)


def canonical_system(system: str | None) -> str | None:
    """The system URI we store codes under (aliases such as the dm+d URI become SNOMED)."""
    if system is None:
        return None
    return _SYSTEM_ALIASES.get(system, system)


class Terminology:
    """Loaded ValueSets, CodeSystems and medicine names. Immutable after ``load``."""

    def __init__(
        self,
        members: Mapping[str, frozenset[Key]],
        expansions: Mapping[str, tuple[tuple[str, str, str], ...]],
        displays: Mapping[Key, str],
        name_rules: Iterable[_NameRule],
        held_in_full: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self._members = dict(members)
        self._expansions = dict(expansions)
        self._displays = dict(displays)
        self._all_codes = frozenset(self._displays)
        # Per name group: systems whose codes are trusted over any name (held in full).
        self._held_in_full = dict(held_in_full or {})
        rules = sorted(name_rules, key=lambda r: (r.group, r.priority))
        self._rules = {rule.value_set: rule for rule in rules}
        self._groups: dict[str, tuple[_NameRule, ...]] = {}
        for rule in rules:
            self._groups[rule.group] = (*self._groups.get(rule.group, ()), rule)
        # Every code of every set of a group: such a code places a concept in the group.
        self._group_codes = {
            group: frozenset().union(*(self._members[r.value_set] for r in group_rules))
            for group, group_rules in self._groups.items()
        }

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Terminology:
        """Read every ``ValueSet-*.json``/``CodeSystem-*.json`` and medicine-names.json once.

        Inconsistent files (id != filename, a url other than canonical/<Type>/<id> - which also
        rules out duplicate urls -, empty or miscounted expansion, names for an unknown set)
        raise TerminologyError: a half-loaded
        terminology would make rules silently answer "not a member".
        """
        if not directory.is_dir():
            raise TerminologyError(f"terminology directory not found: {directory}")
        members: dict[str, frozenset[Key]] = {}
        expansions: dict[str, tuple[tuple[str, str, str], ...]] = {}
        displays: dict[Key, str] = {}
        for path in sorted(directory.glob("*.json")):
            if path.name == MEDICINE_NAMES_FILE:
                continue
            resource_type, resource_id, resource = _read_resource(path)
            # url == canonical/<Type>/<id> and id == file name, so urls are unique by construction.
            url = _check_identity(path, resource_type, resource_id, resource)
            if resource_type == "CodeSystem":
                for code, display in _code_system_concepts(path, resource):
                    displays.setdefault((url, code), display)
                continue
            rows = _expansion_rows(path, resource)
            expansions[resource_id] = rows
            members[resource_id] = frozenset((system, code) for system, code, _ in rows)
            for system, code, display in rows:
                displays.setdefault((system, code), display)
        if not members:
            raise TerminologyError(f"no ValueSet files in {directory}")
        names_file = directory / MEDICINE_NAMES_FILE
        names = _read_medicine_names(names_file)
        rules = _name_rules(names_file, names, frozenset(members))
        held = _held_in_full(names_file, names, {rule.group for rule in rules})
        return cls(members, expansions, displays, rules, held)

    # -- questions ---------------------------------------------------------------------------

    def value_set_ids(self) -> frozenset[str]:
        return frozenset(self._members)

    def contains(self, value_set: str, system: str | None, code: str | None) -> bool:
        """Is ``system|code`` in the value set? An unknown value set id is a programming error."""
        members = self._require(value_set)
        system = canonical_system(system)
        if system is None or code is None:
            return False
        return (system, code) in members

    def match(self, value_set: str, concept: CodeableConcept | None) -> CodeMatch | None:
        """Code match over every coding first; names only when no code decides.

        A code decides when it is in any set of the value set's name group (it belongs there,
        not here) or in a system the group holds in full. An RxNorm code we do not list is
        left to the names: RxNorm is held only in part.
        """
        members = self._require(value_set)
        if concept is None:
            return None
        for coding in concept.coding:
            system = canonical_system(coding.system)
            if system is not None and coding.code and (system, coding.code) in members:
                display = self._displays.get((system, coding.code), coding.display)
                return CodeMatch(value_set, "code", system, coding.code, display, None)
        rule = self._rules.get(value_set)
        if rule is None or self._code_decides(rule.group, concept):
            return None
        return self._match_name(rule, concept)

    def held_in_full(self, value_set: str) -> frozenset[str]:
        """Systems whose codes decide membership of this medicine set on their own."""
        self._require(value_set)
        rule = self._rules.get(value_set)
        return self._held_in_full.get(rule.group, frozenset()) if rule else frozenset()

    def _code_decides(self, group: str, concept: CodeableConcept) -> bool:
        held = self._held_in_full.get(group, frozenset())
        codes = self._group_codes[group]
        for coding in concept.coding:
            system = canonical_system(coding.system)
            if (
                coding.code
                and system is not None
                and (system in held or (system, coding.code) in codes)
            ):
                return True
        return False

    def is_known_code(self, system: str | None, code: str | None) -> bool:
        """Is the code in any loaded set or code system? Tells "unknown code" from "not a member"."""
        system = canonical_system(system)
        if system is None or code is None:
            return False
        return (system, code) in self._all_codes

    def display(self, system: str, code: str) -> str | None:
        return self._displays.get((canonical_system(system) or system, code))

    def expansion(self, value_set: str) -> tuple[tuple[str, str, str], ...]:
        self._require(value_set)
        return self._expansions[value_set]

    def name_rule_ids(self) -> frozenset[str]:
        """Value sets that can also be matched by medicine name."""
        return frozenset(self._rules)

    # -- helpers -----------------------------------------------------------------------------

    def _require(self, value_set: str) -> frozenset[Key]:
        try:
            return self._members[value_set]
        except KeyError:
            raise TerminologyError(f"unknown value set id: {value_set!r}") from None

    def _match_name(self, rule: _NameRule, concept: CodeableConcept) -> CodeMatch | None:
        texts = [concept.text, *(coding.display for coding in concept.coding)]
        winner = self._classify(rule.group, [t for t in texts if t])
        if winner is None or winner[0] is not rule:
            return None
        _, name, source = winner
        return CodeMatch(rule.value_set, "name", None, None, source, name)

    def _classify(self, group: str, texts: list[str]) -> tuple[_NameRule, str, str] | None:
        """The highest-precedence set of ``group`` that any of ``texts`` names."""
        normalised = [(normalise_text(text), text) for text in texts]
        for rule in self._groups[group]:  # sorted by priority
            for text, source in normalised:
                if (name := rule.find(text)) is not None:
                    return rule, name, source
        return None


# -- file parsing (module level: pure, small, testable) -------------------------------------


def _read_resource(path: Path) -> tuple[str, str, dict[str, Any]]:
    match = _FILE_RE.match(path.name)
    if match is None:
        raise TerminologyError(f"{path.name}: expected ValueSet-<id>.json or CodeSystem-<id>.json")
    try:
        resource = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TerminologyError(f"{path.name}: cannot read JSON: {exc}") from exc
    if not isinstance(resource, dict):
        raise TerminologyError(f"{path.name}: not a JSON object")
    return match.group(1), match.group("id"), resource


def _check_identity(
    path: Path, resource_type: str, resource_id: str, resource: dict[str, Any]
) -> str:
    if resource.get("resourceType") != resource_type:
        raise TerminologyError(f"{path.name}: resourceType is {resource.get('resourceType')!r}")
    if resource.get("id") != resource_id:
        raise TerminologyError(f"{path.name}: id {resource.get('id')!r} does not match file name")
    url = f"{PROJECT_CANONICAL}/{resource_type}/{resource_id}"
    if resource.get("url") != url:
        raise TerminologyError(f"{path.name}: url must be {url}, is {resource.get('url')!r}")
    return url


def _code_system_concepts(path: Path, resource: dict[str, Any]) -> list[tuple[str, str]]:
    concepts = resource.get("concept")
    if not isinstance(concepts, list) or not concepts:
        raise TerminologyError(f"{path.name}: CodeSystem has no concepts")
    rows = []
    for concept in concepts:
        code, display = concept.get("code"), concept.get("display")
        if not isinstance(code, str) or not isinstance(display, str):
            raise TerminologyError(f"{path.name}: concept without code or display: {concept!r}")
        rows.append((code, display))
    return rows


def _expansion_rows(path: Path, resource: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    expansion = resource.get("expansion")
    contains = expansion.get("contains") if isinstance(expansion, dict) else None
    if not isinstance(expansion, dict) or not isinstance(contains, list) or not contains:
        raise TerminologyError(f"{path.name}: ValueSet has no precomputed expansion")
    rows = []
    for entry in contains:
        system, code, display = entry.get("system"), entry.get("code"), entry.get("display")
        if not (isinstance(system, str) and isinstance(code, str) and isinstance(display, str)):
            raise TerminologyError(f"{path.name}: expansion entry incomplete: {entry!r}")
        rows.append((system, code, display))
    if len({(s, c) for s, c, _ in rows}) != len(rows):
        raise TerminologyError(f"{path.name}: expansion lists a code twice")
    if expansion.get("total") != len(rows):
        raise TerminologyError(f"{path.name}: expansion.total does not match contains")
    return tuple(rows)


def _read_medicine_names(path: Path) -> dict[str, Any]:
    """medicine-names.json, parsed once (empty when the folder has none)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TerminologyError(f"{path.name}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TerminologyError(f"{path.name}: not a JSON object")
    return data


def _name_rules(path: Path, data: Mapping[str, Any], value_sets: frozenset[str]) -> list[_NameRule]:
    rules = [
        _name_rule(path, vs_id, entry, value_sets)
        for vs_id, entry in data.items()
        if not vs_id.startswith("_")  # documentation keys
    ]
    seen: set[tuple[str, int]] = set()
    for rule in rules:
        if (rule.group, rule.priority) in seen:
            raise TerminologyError(f"{path.name}: two sets share priority {rule.priority}")
        seen.add((rule.group, rule.priority))
    return rules


def _held_in_full(
    path: Path, data: Mapping[str, Any], groups: set[str]
) -> dict[str, frozenset[str]]:
    """``_groups``: every name group must say which systems it holds in full (maybe none)."""
    declared = data.get(GROUPS_KEY, {})
    if not isinstance(declared, dict):
        raise TerminologyError(f"{path.name}: {GROUPS_KEY} must be an object")
    held: dict[str, frozenset[str]] = {}
    for group in groups:
        entry = declared.get(group)
        systems = entry.get("held_in_full") if isinstance(entry, dict) else None
        if not isinstance(systems, list) or not all(isinstance(s, str) for s in systems):
            raise TerminologyError(
                f"{path.name}: {GROUPS_KEY}.{group}.held_in_full must list code systems"
            )
        held[group] = frozenset(systems)
    return held


def _name_rule(path: Path, vs_id: str, entry: Any, value_sets: frozenset[str]) -> _NameRule:
    if vs_id not in value_sets:
        raise TerminologyError(f"{path.name}: names for unknown value set {vs_id!r}")
    if not isinstance(entry, dict):
        raise TerminologyError(f"{path.name}: {vs_id}: entry must be an object")
    group, priority = entry.get("group"), entry.get("priority")
    if not isinstance(group, str) or not isinstance(priority, int):
        raise TerminologyError(f"{path.name}: {vs_id}: needs a string group and an int priority")
    names = _word_pattern(path, vs_id, entry, "names")
    qualified = _word_pattern(path, vs_id, entry, "qualified_names")
    requires = _word_pattern(path, vs_id, entry, "requires_any")
    if names is None and (qualified is None or requires is None):
        raise TerminologyError(f"{path.name}: {vs_id}: no names to match")
    excludes = _word_pattern(path, vs_id, entry, "excludes_any")
    return _NameRule(vs_id, group, priority, names, qualified, requires, excludes)


def _word_pattern(
    path: Path, vs_id: str, entry: dict[str, Any], key: str
) -> re.Pattern[str] | None:
    """One regex matching any of the words, on word boundaries, longest first."""
    words = entry.get(key)
    if words is None:
        return None
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise TerminologyError(f"{path.name}: {vs_id}.{key} must be a non-empty list of strings")
    ordered = sorted({normalise_text(w) for w in words}, key=len, reverse=True)
    alternatives = "|".join(re.escape(word) for word in ordered)
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


@functools.cache
def load_default_terminology() -> Terminology:
    """The repository's own terminology/ folder, loaded once per process."""
    return Terminology.load(REPO_ROOT / "terminology")
