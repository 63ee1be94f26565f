"""The clinical safety hazard log (docs/clinical-safety/hazard-log.yaml) stays true.

- Every test a hazard names as verifying a control exists: the file, the function (or
  ``Class::function``), and for a ``[param]`` id a parametrized function.
- Every CDS service in the catalogue, every rule id and RULE_ID in fhir_safety/rules/
  (read from the code with ``ast``), and every rule id the documented examples actually
  produce is covered by a hazard. Cross-cutting entries ("*", "*.could-not-check") do not
  count for coverage: each rule family must be named.
- Every rules module is named by a hazard.
- Each risk rating is the matrix's rating for its severity and likelihood (README.md), the
  residual risk is no higher than the initial one, and a residual rating of 3 or more says
  why further reduction is impractical (``residual_note``).
- hazard-log.md is the rendering of the YAML: ``python -m tests.test_hazard_log --render``.
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.models import CdsRequest
from fhir_safety.config import Settings
from fhir_safety.observability import Metrics
from fhir_safety.services.evaluate import HookEvaluator
from fhir_safety.terminology import load_default_terminology

REPO = Path(__file__).resolve().parent.parent
SAFETY = REPO / "docs" / "clinical-safety"
LOG_YAML = SAFETY / "hazard-log.yaml"
LOG_MD = SAFETY / "hazard-log.md"
RULES = REPO / "fhir_safety" / "rules"
EXAMPLES = REPO / "examples"
NOW = datetime.fromisoformat("2026-11-26T09:00:00+00:00")

SEVERITIES = ("minor", "significant", "considerable", "major", "catastrophic")
LIKELIHOODS = ("very-low", "low", "medium", "high", "very-high")
# DCB0129-style 5x5 matrix (README.md): rows likelihood (very low .. very high), columns
# severity (minor .. catastrophic).
MATRIX = (
    (1, 1, 2, 2, 3),
    (1, 2, 2, 3, 4),
    (2, 2, 3, 3, 4),
    (2, 3, 3, 4, 5),
    (3, 4, 4, 5, 5),
)


@cache
def hazard_log() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(LOG_YAML.read_text(encoding="utf-8"))
    return data


def hazards() -> list[dict[str, Any]]:
    return list(hazard_log()["hazards"])


def rating(risk: dict[str, Any]) -> int:
    return MATRIX[LIKELIHOODS.index(risk["likelihood"])][SEVERITIES.index(risk["severity"])]


# --- tests named by the log exist ---------------------------------------------------------


def _test_names(path: Path) -> dict[str, bool]:
    """``name`` or ``Class::name`` -> whether it is parametrized."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, bool] = {}

    def visit(body: Iterable[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                found[prefix + node.name] = any(
                    "parametrize" in ast.unparse(d) for d in node.decorator_list
                )
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, f"{prefix}{node.name}::")

    visit(tree.body, "")
    return found


def missing_test(node_id: str) -> str | None:
    """Why ``node_id`` names no test, or None when it does."""
    file_part, sep, rest = node_id.partition("::")
    path = REPO / file_part
    if not sep or not path.is_file():
        return f"{node_id}: no test file {file_part}"
    name, bracket, _ = rest.partition("[")
    names = _test_names(path)
    if name not in names:
        return f"{node_id}: no test {name} in {file_part}"
    if bracket and not names[name]:
        return f"{node_id}: {name} is not parametrized"
    return None


def all_test_ids() -> list[str]:
    return sorted(
        {t for h in hazards() for control in h["controls"] for t in control["verified_by"]}
    )


@pytest.mark.parametrize("node_id", all_test_ids())
def test_hazard_log_names_only_existing_tests(node_id: str) -> None:
    assert missing_test(node_id) is None, missing_test(node_id)


def test_hazard_log_missing_test_is_detected() -> None:
    assert missing_test("tests/test_hazard_log.py::test_no_such_test")
    assert missing_test("tests/nowhere.py::test_x")
    assert missing_test("tests/test_hazard_log.py::test_hazard_log_is_rendered[x]")
    assert missing_test("tests/test_hazard_log.py::test_hazard_log_is_rendered") is None


# --- coverage of services and rules -------------------------------------------------------


def rule_ids_in(path: Path) -> set[str]:
    """Rule ids a rules module can emit, read from its code.

    Every ``rule_id=`` argument: string constants, the module's ``RULE_ID``-like constants,
    f-strings over them; a local variable or parameter inside an f-string
    is expanded to the string constants assigned or passed to it in the module, anything
    else becomes ``*``. A ``could_not_check(rule_id=X)`` call emits ``X.could-not-check``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.endswith("RULE_ID")
    }
    found: set[str] = set()
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    owner = {id(child): fn for fn in functions for child in ast.walk(fn)}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        for keyword in call.keywords:
            if keyword.arg != "rule_id":
                continue
            options = _expand(keyword.value, constants, owner.get(id(call)), tree)
            suffix = ".could-not-check" if _called(call) == "could_not_check" else ""
            found |= {option + suffix for option in options}
    return {rule for rule in found if not rule.startswith("*")}  # helpers pass rule_id through


def _called(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _expand(
    value: ast.expr,
    constants: dict[str, str],
    function: ast.FunctionDef | None,
    tree: ast.Module,
) -> list[str]:
    options = [""]
    parts = value.values if isinstance(value, ast.JoinedStr) else [value]
    for part in parts:
        node = part.value if isinstance(part, ast.FormattedValue) else part
        if isinstance(node, ast.Constant):
            choices = [str(node.value)]
        elif isinstance(node, ast.Name) and node.id in constants:
            choices = [constants[node.id]]
        elif isinstance(node, ast.Name) and function is not None:
            choices = sorted(_values_of(node.id, function, tree)) or ["*"]
        else:
            choices = ["*"]
        options = [o + c for o in options for c in choices]
    return options


def _values_of(name: str, function: ast.FunctionDef, tree: ast.Module) -> set[str]:
    """String constants assigned to ``name`` in ``function``, or passed for that parameter."""
    values: set[Any] = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == name:
                if isinstance(node.value, ast.Constant):
                    values.add(node.value.value)
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for element, assigned in zip(target.elts, node.value.elts, strict=False):
                    named = isinstance(element, ast.Name) and element.id == name
                    if named and isinstance(assigned, ast.Constant):
                        values.add(assigned.value)
    parameters = [a.arg for a in function.args.args]
    if name in parameters:
        index = parameters.index(name)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if _called(call) != function.name:
                continue
            if len(call.args) > index and isinstance(call.args[index], ast.Constant):
                values.add(call.args[index].value)  # type: ignore[attr-defined]
            values |= {
                k.value.value
                for k in call.keywords
                if k.arg == name and isinstance(k.value, ast.Constant)
            }
    return {v for v in values if isinstance(v, str)}


def code_rule_ids() -> set[str]:
    return {rule for path in sorted(RULES.glob("*.py")) for rule in rule_ids_in(path)}


def rule_families() -> set[str]:
    """The RULE_ID-like constants of the rules modules."""
    families = set()
    for path in sorted(RULES.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id.endswith("RULE_ID") for t in node.targets)
            ):
                families.add(str(node.value.value))
    return families


def named_rules() -> list[str]:
    """Hazard rule entries that name a family (cross-cutting "*..." entries do not count)."""
    return [r for h in hazards() for r in h["rules"] if not r.startswith("*")]


def covered(rule: str) -> bool:
    """A rule id (or a code pattern like ``news2.*``) is named by some hazard entry."""
    return any(
        fnmatch.fnmatchcase(rule, entry) or fnmatch.fnmatchcase(entry, rule)
        for entry in named_rules()
    )


def test_hazard_log_covers_every_catalogue_service() -> None:
    named = {s for h in hazards() for s in h["services"]}
    services = {service.id for service in CATALOGUE.services}
    assert services - named == set()
    assert named - services == set(), "a hazard names a service that does not exist"


def test_hazard_log_covers_every_rule_id_in_the_code() -> None:
    rules = code_rule_ids()
    assert len(rules) >= 35  # the enumeration itself works
    assert {"valproate.ppp-missing", "news2.*", "reasonable-adjustments.consent-withheld"} <= rules
    assert sorted(r for r in rules if not covered(r)) == []


def test_hazard_log_covers_every_rule_family() -> None:
    families = rule_families()
    assert {"news2", "valproate", "hrt-joint-items", "long-stay"} <= families
    named = named_rules()
    assert sorted(f for f in families if not any(e.startswith(f) for e in named)) == []


def test_hazard_log_names_every_rules_module() -> None:
    modules = {m for h in hazards() for m in h["modules"]}
    shipped = {f"fhir_safety/rules/{p.name}" for p in RULES.glob("*.py") if p.name != "__init__.py"}
    assert shipped - modules == set()
    assert modules - shipped == set(), "a hazard names a module that does not exist"


def _example_requests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for expected_file in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            body = json.loads((expected_file.parent / name).read_text(encoding="utf-8"))
            body.pop("fhirServer", None)
            found.append((case["service"], body))
    return found


async def _emitted_rule_ids() -> set[str]:
    async with httpx.AsyncClient() as http:
        evaluator = HookEvaluator(
            catalogue=CATALOGUE,
            settings=Settings(),
            http=http,
            terminology=load_default_terminology(),
            metrics=Metrics(),
            clock=lambda: NOW,
        )
        emitted = set()
        for service, body in _example_requests():
            evaluation = await evaluator.evaluate(service, CdsRequest.model_validate(body))
            emitted |= {card.rule_id for card in evaluation.cards}
    return emitted


def test_hazard_log_covers_every_rule_id_the_examples_produce() -> None:
    emitted = asyncio.run(_emitted_rule_ids())
    assert len(emitted) > 15
    assert sorted(r for r in emitted if not covered(r)) == []


# --- risk ratings ---------------------------------------------------------------------------


@pytest.mark.parametrize("hazard", hazards(), ids=[h["id"] for h in hazards()])
def test_hazard_log_entry_is_complete_and_rated_by_the_matrix(hazard: dict[str, Any]) -> None:
    for key in ("title", "causes", "effects", "controls", "initial_risk", "residual_risk"):
        assert hazard[key], f"{hazard['id']}: {key} is empty"
    initial, residual = hazard["initial_risk"], hazard["residual_risk"]
    assert initial["rating"] == rating(initial), hazard["id"]
    assert residual["rating"] == rating(residual), hazard["id"]
    assert residual["rating"] <= initial["rating"]
    assert LIKELIHOODS.index(residual["likelihood"]) <= LIKELIHOODS.index(initial["likelihood"])
    assert SEVERITIES.index(residual["severity"]) <= SEVERITIES.index(initial["severity"])
    if residual["rating"] >= 3:
        assert hazard.get("residual_note"), f"{hazard['id']}: rating 3+ needs a justification"
    assert all(control["verified_by"] for control in hazard["controls"])


def test_hazard_log_ids_are_unique_and_ordered() -> None:
    ids = [h["id"] for h in hazards()]
    assert ids == sorted(set(ids))


# --- rendering ------------------------------------------------------------------------------


_WORDS = {
    1: "acceptable",
    2: "tolerable",
    3: "undesirable",
    4: "mandatory control",
    5: "unacceptable",
}


def _risk(risk: dict[str, Any]) -> str:
    return f"{risk['rating']} ({risk['severity']} x {risk['likelihood']}: {_WORDS[risk['rating']]})"


def render() -> str:
    """hazard-log.md from hazard-log.yaml."""
    log = hazard_log()
    lines = [
        "# Hazard log",
        "",
        "<!-- Rendered from hazard-log.yaml by `python -m tests.test_hazard_log --render`;",
        "     edit the YAML, not this file (tests/test_hazard_log.py checks they agree). -->",
        "",
        f"System: {log['system']}. Risk ratings use the matrix in [README.md](README.md).",
        "Every hazard is open until the adopting organisation's Clinical Safety Officer has",
        "reviewed it.",
        "",
        "| id | hazard | initial | residual | status |",
        "|---|---|---|---|---|",
    ]
    for h in log["hazards"]:
        lines.append(
            f"| [{h['id']}](#{h['id'].lower()}) | {h['title']} | {h['initial_risk']['rating']} "
            f"| {h['residual_risk']['rating']} | {h['status']} |"
        )
    for h in log["hazards"]:
        lines += ["", f"## {h['id']}", "", f"**{h['title']}**", ""]
        if h["services"]:
            lines.append(f"- Services: {', '.join(f'`{s}`' for s in h['services'])}")
        if h["rules"]:
            lines.append(f"- Rules: {', '.join(f'`{r}`' for r in h['rules'])}")
        if h["modules"]:
            lines.append(f"- Modules: {', '.join(f'`{m}`' for m in h['modules'])}")
        lines += ["", "Causes:", "", *(f"- {c}" for c in h["causes"])]
        lines += ["", "Effects:", "", *(f"- {e}" for e in h["effects"])]
        lines += ["", f"Initial risk: {_risk(h['initial_risk'])}", "", "Controls:", ""]
        for number, control in enumerate(h["controls"], 1):
            lines.append(f"{number}. {control['description']}")
            lines.append("   Verified by:")
            lines += [f"   - `{t}`" for t in control["verified_by"]]
        lines += ["", f"Residual risk: {_risk(h['residual_risk'])}"]
        if h.get("residual_note"):
            lines += ["", f"Residual risk note: {h['residual_note']}"]
        lines += ["", f"Status: {h['status']}"]
    return "\n".join(lines) + "\n"


def test_hazard_log_is_rendered() -> None:
    assert LOG_MD.read_text(encoding="utf-8") == render(), (
        "hazard-log.md is out of date: python -m tests.test_hazard_log --render"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        LOG_MD.write_text(render(), encoding="utf-8")
    else:
        sys.exit("usage: python -m tests.test_hazard_log --render")
