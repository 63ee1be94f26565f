"""What the alert-fatigue page shows, folded from the feedback store's ``summary`` and ``daily``.

The store's own functions give the numbers (the same as ``GET /feedback/summary``); this module
only adds them up per service, fills in the days with no cards, and names override reasons.
Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhir_safety.cds.override_reasons import OVERRIDE_REASON_DISPLAYS
from fhir_safety.services.feedback_store import COMMENT_ONLY, DailyCount, RuleSummary

__all__ = ["AlertFatigue", "DayTotals", "ServiceTotals", "override_rate", "reason_display"]


def override_rate(accepted: int, overridden: int) -> float | None:
    """Overridden as a share of the cards with feedback; None when there is no feedback."""
    answered = accepted + overridden
    return None if answered == 0 else overridden / answered


@dataclass(frozen=True, slots=True)
class ServiceTotals:
    service: str
    shown: int
    accepted: int
    overridden: int
    no_feedback: int

    @property
    def override_rate(self) -> float | None:
        return override_rate(self.accepted, self.overridden)


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    shown: int
    accepted: int
    overridden: int

    @property
    def no_feedback(self) -> int:
        return self.shown - self.accepted - self.overridden


@dataclass(frozen=True)
class AlertFatigue:
    source: str  # what the numbers come from, said on the page
    demo: bool  # True: the demo sample, not this service's store
    service: str | None  # the service filter, or None for all
    rules: tuple[RuleSummary, ...]
    daily: tuple[DailyCount, ...]
    first_day: date
    last_day: date
    all_services: tuple[str, ...]

    @classmethod
    def build(
        cls,
        *,
        summary: Sequence[RuleSummary],
        daily: Sequence[DailyCount],
        today: date,
        days: int,
        service: str | None,
        source: str,
        demo: bool,
    ) -> AlertFatigue:
        first = today - timedelta(days=days - 1)
        services = tuple(sorted({r.service_id for r in summary}))
        return cls(
            source=source,
            demo=demo,
            service=service,
            rules=tuple(r for r in summary if service is None or r.service_id == service),
            daily=tuple(
                d
                for d in daily
                if first <= d.day <= today and (service is None or d.service_id == service)
            ),
            first_day=first,
            last_day=today,
            all_services=services,
        )

    def totals(self) -> ServiceTotals:
        return ServiceTotals(
            service=self.service or "all services",
            shown=sum(r.shown for r in self.rules),
            accepted=sum(r.accepted for r in self.rules),
            overridden=sum(r.overridden for r in self.rules),
            no_feedback=sum(r.no_feedback for r in self.rules),
        )

    def by_service(self) -> list[ServiceTotals]:
        grouped: dict[str, list[RuleSummary]] = {}
        for rule in self.rules:
            grouped.setdefault(rule.service_id, []).append(rule)
        return [
            ServiceTotals(
                service=name,
                shown=sum(r.shown for r in rules),
                accepted=sum(r.accepted for r in rules),
                overridden=sum(r.overridden for r in rules),
                no_feedback=sum(r.no_feedback for r in rules),
            )
            for name, rules in sorted(grouped.items())
        ]

    def reasons(self) -> list[tuple[str, str, int]]:
        """(code, display, overrides) over the selected rules, most frequent first."""
        found: Counter[str] = Counter()
        for rule in self.rules:
            for code, count in rule.override_reasons:
                found[code] += count
        return [
            (code, reason_display(code), count)
            for code, count in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def days(self) -> list[DayTotals]:
        """Every day of the window, zeros included, summed over the selected rules."""
        by_day: dict[date, list[DailyCount]] = {}
        for row in self.daily:
            by_day.setdefault(row.day, []).append(row)
        out = []
        day = self.first_day
        while day <= self.last_day:
            rows = by_day.get(day, [])
            out.append(
                DayTotals(
                    day=day,
                    shown=sum(r.shown for r in rows),
                    accepted=sum(r.accepted for r in rows),
                    overridden=sum(r.overridden for r in rows),
                )
            )
            day += timedelta(days=1)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "demo": self.demo,
            "service": self.service,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            # Same shape as GET /feedback/summary's rows.
            "rules": [
                {
                    "service": r.service_id,
                    "rule": r.rule_id,
                    "shown": r.shown,
                    "accepted": r.accepted,
                    "overridden": r.overridden,
                    "noFeedback": r.no_feedback,
                    "overrideReasons": [{"reason": c, "count": n} for c, n in r.override_reasons],
                }
                for r in self.rules
            ],
            "days": [
                {
                    "day": d.day.isoformat(),
                    "shown": d.shown,
                    "accepted": d.accepted,
                    "overridden": d.overridden,
                    "noFeedback": d.no_feedback,
                }
                for d in self.days()
            ],
        }


def reason_display(code: str) -> str:
    if code == COMMENT_ONLY:
        return "A comment, no coded reason"
    return OVERRIDE_REASON_DISPLAYS.get(code, code)
