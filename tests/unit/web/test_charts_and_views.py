"""SVG charts (text alternatives, escaping, scales) and the alert-fatigue sums."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from xml.etree import ElementTree

import pytest

from fhir_safety.services.feedback_store import FeedbackEntry, IssuedCard, open_feedback_store
from fhir_safety.web import charts
from fhir_safety.web.views import AlertFatigue, override_rate, reason_display

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 200)],
)
def test_nice_ceiling_table(value: int, ceiling: int) -> None:
    assert charts.nice_ceiling(value) == ceiling


def test_bar_chart_is_a_named_image_with_every_value_in_words() -> None:
    svg = charts.bar_chart(
        chart_id="c1",
        title="Patients by status",
        bars=[charts.Bar("Review <or> refer", 16, "red"), charts.Bar("No action", 0, "green")],
    )
    root = ElementTree.fromstring(str(svg))  # well-formed XML
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Patients by status"
    desc = root.find(f"{SVG}desc").text
    assert desc == "Patients by status. Review <or> refer: 16 patients; No action: 0 patients."
    assert "Review &lt;or&gt; refer" in str(svg)  # escaped, never markup


def test_column_chart_ticks_are_whole_steps() -> None:
    svg = charts.column_chart(
        chart_id="c2",
        title="Stays",
        columns=[charts.Bar("0-6", 11, "green"), charts.Bar("7-13", 39, "amber")],
        x_label="Days",
        y_label="Inpatients",
    )
    ticks = re.findall(r'class="chart-tick">([^<]+)<', str(svg))
    assert ticks == ["0", "10", "20", "30", "40"]
    ElementTree.fromstring(str(svg))


def test_stacked_chart_hatches_overrides_and_describes_each_day() -> None:
    svg = charts.stacked_chart(
        chart_id="c3",
        title="Cards per day",
        columns=[
            charts.StackedColumn(
                "01 Nov",
                (
                    charts.Segment("accepted", 3, "green"),
                    charts.Segment("overridden", 2, "red", "hatch"),
                ),
            )
        ],
        x_label="Day",
        y_label="Cards",
        legend=[("accepted", "green"), ("overridden", "red:hatch")],
    )
    text = str(svg)
    assert "01 Nov: accepted 3, overridden 2" in text
    assert text.count('fill="url(#c3-hatch)"') == 2  # the segment and its legend key
    ElementTree.fromstring(text)


def card(uuid: str, service: str, rule: str, day: int) -> IssuedCard:
    return IssuedCard(
        uuid, service, "patient-view", rule, "warning", datetime(2026, 11, day, 10, tzinfo=UTC)
    )


def outcome(
    uuid: str, service: str, result: str, day: int, reason: str | None = None
) -> FeedbackEntry:
    return FeedbackEntry(
        card_uuid=uuid,
        service_id=service,
        outcome=result,  # type: ignore[arg-type]
        outcome_timestamp=datetime(2026, 11, day, 11, tzinfo=UTC),
        override_reason_code=reason,
    )


def test_alert_fatigue_sums_rules_services_reasons_and_days() -> None:
    store = open_feedback_store("sqlite:///:memory:", timezone="Europe/London")
    store.record_cards(
        [
            card("a", "long-stay", "long-stay.stranded", 20),
            card("b", "long-stay", "long-stay.stranded", 20),
            card("c", "long-stay", "long-stay.super-stranded", 22),
            card("d", "valproate", "valproate.ppp-missing", 22),
            card("e", "valproate", "valproate.ppp-missing", 1),  # outside the window
        ]
    )
    store.record_feedback(
        [
            outcome("a", "long-stay", "accepted", 20),
            outcome("b", "long-stay", "overridden", 20, "action-completed"),
            outcome("d", "valproate", "overridden", 22, "action-completed"),
        ]
    )
    fatigue = AlertFatigue.build(
        summary=store.summary(),
        daily=store.daily(),
        today=date(2026, 11, 26),
        days=7,
        service=None,
        source="test",
        demo=False,
    )
    totals = fatigue.totals()
    assert (totals.shown, totals.accepted, totals.overridden, totals.no_feedback) == (5, 1, 2, 2)
    assert [(s.service, s.shown) for s in fatigue.by_service()] == [
        ("long-stay", 3),
        ("valproate", 2),
    ]
    assert fatigue.reasons() == [
        ("action-completed", "Recommended action was already completed", 2)
    ]
    days = fatigue.days()
    assert days[0].day == date(2026, 11, 20)
    assert len(days) == 7
    assert (days[0].shown, days[0].accepted, days[0].overridden) == (2, 1, 1)
    assert (days[2].shown, days[2].no_feedback) == (2, 1)
    assert sum(d.shown for d in days) == 4  # the card of 1 November is outside the 7 days
    only = AlertFatigue.build(
        summary=store.summary(),
        daily=store.daily(),
        today=date(2026, 11, 26),
        days=7,
        service="valproate",
        source="test",
        demo=False,
    )
    assert [r.rule_id for r in only.rules] == ["valproate.ppp-missing"]
    assert only.as_json()["rules"][0]["noFeedback"] == 1
    store.close()


@pytest.mark.parametrize(
    ("accepted", "overridden", "rate"), [(0, 0, None), (1, 1, 0.5), (0, 3, 1.0), (4, 0, 0.0)]
)
def test_override_rate(accepted: int, overridden: int, rate: float | None) -> None:
    assert override_rate(accepted, overridden) == rate


def test_reason_display_names_codes_and_comment_only() -> None:
    assert reason_display("need-more-info").startswith("Could not address")
    assert reason_display("comment only") == "A comment, no coded reason"
    assert reason_display("local-code") == "local-code"
