"""Feedback store against SQLite: idempotency, concurrency, summaries, errors.

The same behaviour is checked against PostgreSQL in
tests/integration/test_feedback_store_postgres.py.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fhir_safety.errors import ConfigurationError, StoreError
from fhir_safety.services.feedback_store import (
    COMMENT_ONLY,
    UNKNOWN_RULE,
    DailyCount,
    FeedbackEntry,
    FeedbackStore,
    IssuedCard,
    Outcome,
    RuleSummary,
    open_feedback_store,
)

T0 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
SERVICE = "news2-escalation"


def card(uuid: str, rule: str = "news2", at: datetime = T0, service: str = SERVICE) -> IssuedCard:
    return IssuedCard(uuid, service, "patient-view", rule, "warning", at)


def feedback(
    uuid: str,
    outcome: Outcome = "accepted",
    at: datetime = T0 + timedelta(minutes=5),
    *,
    code: str | None = None,
    comment: str | None = None,
    service: str = SERVICE,
) -> FeedbackEntry:
    return FeedbackEntry(
        card_uuid=uuid,
        service_id=service,
        outcome=outcome,
        outcome_timestamp=at,
        accepted_suggestions=("s1",) if outcome == "accepted" else (),
        override_reason_system="http://terminology.hl7.org/CodeSystem/non-adherence-reason"
        if code
        else None,
        override_reason_code=code,
        user_comment=comment,
    )


def run_together(workers: int, work: Callable[[int], int]) -> list[int]:
    """Start ``workers`` threads at the same instant and collect their results."""
    barrier = threading.Barrier(workers)
    results: list[int] = []
    errors: list[BaseException] = []

    def target(index: int) -> None:
        barrier.wait()
        try:
            results.append(work(index))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    return results


def feedback_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()
    conn.close()
    return int(count)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "feedback.sqlite3"


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[FeedbackStore]:
    url = f"sqlite:///{db_path}" if request.param == "file" else "sqlite:///:memory:"
    opened = open_feedback_store(url)
    yield opened
    opened.close()


@pytest.fixture
def file_store(db_path: Path) -> Iterator[FeedbackStore]:
    opened = open_feedback_store(f"sqlite:///{db_path}")
    yield opened
    opened.close()


# --- idempotency ---------------------------------------------------------------------------


def test_record_feedback_same_entry_twice_stored_once(store: FeedbackStore) -> None:
    store.record_cards([card("c1")])
    assert store.record_feedback([feedback("c1")]) == 1
    assert store.record_feedback([feedback("c1")]) == 0
    [summary] = store.summary()
    assert (summary.shown, summary.accepted) == (1, 1)


def test_record_feedback_duplicate_within_one_post_counts_once(store: FeedbackStore) -> None:
    assert store.record_feedback([feedback("c1"), feedback("c1"), feedback("c2")]) == 2


def test_record_feedback_same_instant_other_offset_is_a_duplicate(store: FeedbackStore) -> None:
    utc = datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    london_summer = datetime(2024, 7, 1, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert store.record_feedback([feedback("c1", at=utc)]) == 1
    assert store.record_feedback([feedback("c1", at=london_summer)]) == 0


def test_record_feedback_replay_with_other_details_keeps_first(store: FeedbackStore) -> None:
    store.record_cards([card("c1")])
    store.record_feedback([feedback("c1", "overridden", code="patient-declined")])
    assert store.record_feedback([feedback("c1", "overridden", code="other")]) == 0
    [summary] = store.summary()
    assert summary.override_reasons == (("patient-declined", 1),)


def test_record_feedback_new_outcome_for_same_card_is_stored(store: FeedbackStore) -> None:
    store.record_feedback([feedback("c1", "overridden")])
    assert store.record_feedback([feedback("c1", "accepted")]) == 1


def test_record_cards_twice_counts_card_once(store: FeedbackStore) -> None:
    store.record_cards([card("c1")])
    store.record_cards([card("c1"), card("c2")])
    [summary] = store.summary()
    assert summary.shown == 2


def test_empty_batches_do_nothing(store: FeedbackStore) -> None:
    store.record_cards([])
    assert store.record_feedback([]) == 0
    assert store.summary() == []
    assert store.daily() == []


# --- concurrency ---------------------------------------------------------------------------


def test_record_feedback_concurrent_duplicates_from_8_threads_stored_once(
    store: FeedbackStore,
) -> None:
    store.record_cards([card("c1")])
    new = run_together(8, lambda _: store.record_feedback([feedback("c1")]))
    assert sorted(new) == [0] * 7 + [1]
    [summary] = store.summary()
    assert (summary.accepted, summary.no_feedback) == (1, 0)


def test_two_stores_on_one_file_write_same_feedback_once(db_path: Path) -> None:
    """Two workers (two connections) posting the same feedback at once."""
    stores = [open_feedback_store(f"sqlite:///{db_path}") for _ in range(2)]
    try:
        entries = [feedback(f"c{i}") for i in range(50)]
        new = run_together(8, lambda i: stores[i % 2].record_feedback(entries))
    finally:
        for opened in stores:
            opened.close()
    assert sum(new) == 50
    assert feedback_rows(db_path) == 50


@pytest.mark.usefixtures("file_store")
def test_file_store_uses_wal(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    assert mode == "wal"


# --- summary -------------------------------------------------------------------------------


def test_summary_counts_outcomes_per_rule(store: FeedbackStore) -> None:
    store.record_cards([card("a"), card("b"), card("c"), card("d"), card("e", rule="hrt")])
    store.record_feedback(
        [
            feedback("a", "accepted"),
            feedback("b", "overridden", code="patient-declined"),
            feedback("c", "overridden", comment="Already escalated by phone"),
        ]
    )
    assert store.summary() == [
        RuleSummary(
            SERVICE, "hrt", shown=1, accepted=0, overridden=0, no_feedback=1, override_reasons=()
        ),
        RuleSummary(
            SERVICE,
            "news2",
            shown=4,
            accepted=1,
            overridden=2,
            no_feedback=1,
            override_reasons=((COMMENT_ONLY, 1), ("patient-declined", 1)),  # ties: by key
        ),
    ]


def test_summary_override_reasons_most_frequent_first(store: FeedbackStore) -> None:
    reasons: list[tuple[str | None, str | None]] = [
        ("contraindicated", None),
        ("patient-declined", None),
        ("patient-declined", "and a comment"),
        (None, "comment 1"),
        (None, "comment 2"),
        (None, "comment 3"),
        (None, None),  # an override with no reason at all: counted, but not as a reason
        (None, "   "),  # a blank comment is no comment
    ]
    store.record_cards([card(f"c{i}") for i in range(len(reasons))])
    store.record_feedback(
        [
            feedback(f"c{i}", "overridden", code=code, comment=comment)
            for i, (code, comment) in enumerate(reasons)
        ]
    )
    [summary] = store.summary()
    assert summary.overridden == 8
    assert summary.override_reasons == (
        (COMMENT_ONLY, 3),
        ("patient-declined", 2),
        ("contraindicated", 1),
    )


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        pytest.param([("overridden", 0), ("accepted", 10)], "accepted", id="override-then-accept"),
        pytest.param(
            [("accepted", 10), ("overridden", 0)], "accepted", id="older-override-arrives-late"
        ),
        pytest.param(
            [("accepted", 0), ("overridden", 10)], "overridden", id="accept-then-override"
        ),
        pytest.param(
            [("accepted", 5), ("overridden", 5)], "overridden", id="same-time-override-wins"
        ),
    ],
)
def test_summary_counts_latest_outcome_per_card(
    store: FeedbackStore, recorded: list[tuple[Outcome, int]], expected: str
) -> None:
    store.record_cards([card("c1")])
    for outcome, minutes in recorded:
        store.record_feedback([feedback("c1", outcome, T0 + timedelta(minutes=minutes), code="x")])
    [summary] = store.summary()
    assert (summary.shown, summary.no_feedback) == (1, 0)
    assert (summary.accepted, summary.overridden) == ((1, 0) if expected == "accepted" else (0, 1))
    assert summary.override_reasons == ((("x", 1),) if expected == "overridden" else ())


def test_summary_filters_by_service(store: FeedbackStore) -> None:
    store.record_cards([card("a"), card("b", rule="valproate", service="valproate-ppp")])
    [summary] = store.summary("valproate-ppp")
    assert (summary.service_id, summary.rule_id, summary.shown) == ("valproate-ppp", "valproate", 1)
    assert store.summary("no-such-service") == []


def test_summary_feedback_for_unknown_card_counts_under_unknown_rule(
    store: FeedbackStore,
) -> None:
    assert store.record_feedback([feedback("never-issued", "overridden", code="other")]) == 1
    assert store.summary() == [
        RuleSummary(
            SERVICE,
            UNKNOWN_RULE,
            shown=1,
            accepted=0,
            overridden=1,
            no_feedback=0,
            override_reasons=(("other", 1),),
        )
    ]


def test_summary_uses_the_issuing_service_for_known_cards(store: FeedbackStore) -> None:
    store.record_cards([card("c1")])
    store.record_feedback([feedback("c1", service="posted-to-another-service")])
    [summary] = store.summary()
    assert (summary.service_id, summary.accepted) == (SERVICE, 1)


# --- daily ---------------------------------------------------------------------------------


def test_daily_buckets_by_day_of_issue(store: FeedbackStore) -> None:
    day1, day2 = T0, T0 + timedelta(days=1)
    store.record_cards([card("a", at=day1), card("b", at=day1), card("c", at=day2)])
    # Feedback given the next day still counts on the day the card was shown.
    store.record_feedback(
        [feedback("a", "accepted", day2), feedback("b", "overridden", day1 + timedelta(hours=1))]
    )
    store.record_feedback([feedback("ghost", "accepted", day2)])
    assert store.daily() == [
        DailyCount(date(2024, 7, 1), SERVICE, "news2", shown=2, accepted=1, overridden=1),
        DailyCount(date(2024, 7, 2), SERVICE, "news2", shown=1, accepted=0, overridden=0),
        DailyCount(date(2024, 7, 2), SERVICE, UNKNOWN_RULE, shown=1, accepted=1, overridden=0),
    ]
    assert [row.day for row in store.daily(since=date(2024, 7, 2))] == [date(2024, 7, 2)] * 2


def test_daily_uses_the_store_time_zone(db_path: Path) -> None:
    late_evening_utc = datetime(2024, 7, 1, 23, 30, tzinfo=UTC)  # 00:30 on 2 July in London
    utc_store = open_feedback_store(f"sqlite:///{db_path}")
    london_store = open_feedback_store(
        f"sqlite:///{db_path.with_suffix('.london')}", timezone="Europe/London"
    )
    try:
        for opened in (utc_store, london_store):
            opened.record_cards([card("c1", at=late_evening_utc)])
        assert [row.day for row in utc_store.daily()] == [date(2024, 7, 1)]
        assert [row.day for row in london_store.daily()] == [date(2024, 7, 2)]
    finally:
        utc_store.close()
        london_store.close()


# --- opening, errors, schema ---------------------------------------------------------------


def test_reopened_file_store_keeps_data(db_path: Path) -> None:
    first = open_feedback_store(f"sqlite:///{db_path}")
    first.record_cards([card("c1")])
    first.record_feedback([feedback("c1")])
    first.close()
    second = open_feedback_store(f"sqlite:///{db_path}")
    try:
        assert second.record_feedback([feedback("c1")]) == 0
        assert second.summary()[0].accepted == 1
    finally:
        second.close()


def test_relative_sqlite_url_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    open_feedback_store("sqlite:///relative.sqlite3").close()
    assert (tmp_path / "relative.sqlite3").exists()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:secret@db.example.org/feedback",
        "user:secret@db.example.org/feedback",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/feedback.sqlite3",
        "sqlite:///no/such/directory/feedback.sqlite3",
    ],
)
def test_open_bad_url_raises_store_error_without_password(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_feedback_store(url)
    assert "secret" not in str(caught.value)


def test_open_unknown_time_zone_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        open_feedback_store("sqlite:///:memory:", timezone="Mars/Olympus")


def test_open_postgres_without_psycopg_raises_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(StoreError, match=r"fhir-safety\[postgres\]"):
        open_feedback_store("postgresql://user:secret@127.0.0.1:1/feedback")


def test_open_newer_schema_version_raises_store_error(db_path: Path) -> None:
    open_feedback_store(f"sqlite:///{db_path}").close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        open_feedback_store(f"sqlite:///{db_path}")


def test_closed_store_raises_store_error(store: FeedbackStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.summary()
    store.close()  # closing twice is harmless


def test_driver_error_rolls_back_the_batch_and_store_recovers(store: FeedbackStore) -> None:
    broken = card("c2")
    object.__setattr__(broken, "card_uuid", None)  # violates NOT NULL in the database
    with pytest.raises(StoreError, match="NOT NULL"):
        store.record_cards([card("c1"), broken])
    assert store.summary() == []  # c1 was rolled back with the failed batch
    store.record_cards([card("c1")])
    assert store.summary()[0].shown == 1


@pytest.mark.usefixtures("file_store")
def test_schema_holds_no_patient_data(db_path: Path) -> None:
    """A new column must be a deliberate decision: review it for patient data first."""
    with sqlite3.connect(db_path) as conn:
        columns = {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in ("issued_card", "feedback", "schema_version")
        }
    conn.close()
    assert columns == {
        "issued_card": [
            "card_uuid",
            "service_id",
            "hook",
            "rule_id",
            "indicator",
            "issued_at",
            "issued_day",
        ],
        "feedback": [
            "card_uuid",
            "outcome",
            "outcome_timestamp",
            "outcome_day",
            "service_id",
            "accepted_suggestions",
            "override_reason_system",
            "override_reason_code",
            "override_reason_display",
            "user_comment",
        ],
        "schema_version": ["version"],
    }


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda at: card("c1", at=at), id="issued_at"),
        pytest.param(lambda at: feedback("c1", at=at), id="outcome_timestamp"),
    ],
)
def test_naive_datetimes_are_refused(make: Callable[[datetime], object]) -> None:
    naive = datetime(2024, 7, 1, 9, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        make(naive)


def test_feedback_entry_refuses_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="accepted or overridden"):
        feedback("c1", "ignored")  # type: ignore[arg-type]
