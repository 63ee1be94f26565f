"""Feedback store against a real PostgreSQL (a throwaway cluster from tests/postgres_harness.py).

The properties that matter most here are the ones SQLite cannot show: several
workers (separate connections, separate store objects) posting the same
feedback at the same moment, and workers creating the schema at the same time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import psycopg
import pytest

from fhir_safety.errors import StoreError
from fhir_safety.services.feedback_store import (
    COMMENT_ONLY,
    UNKNOWN_RULE,
    DailyCount,
    FeedbackStore,
    RuleSummary,
    open_feedback_store,
)
from tests.postgres_harness import (
    PostgresUnavailableError,
    find_postgres_bin,
    postgres_cluster,
    temporary_database,
)
from tests.unit.test_feedback_store import SERVICE, T0, card, feedback, run_together

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One cluster per session. Missing binaries fail the run: they must never skip."""
    missing = None
    try:
        find_postgres_bin()
    except PostgresUnavailableError as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def db_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database per test."""
    with temporary_database(postgres_url) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[FeedbackStore]:
    opened = open_feedback_store(db_url)
    yield opened
    opened.close()


def feedback_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()
    assert row is not None
    return int(row[0])


# --- idempotency and concurrency -----------------------------------------------------------


def test_record_feedback_same_entry_twice_stored_once(store: FeedbackStore, db_url: str) -> None:
    store.record_cards([card("c1")])
    assert store.record_feedback([feedback("c1"), feedback("c1")]) == 1
    assert store.record_feedback([feedback("c1")]) == 0
    same_instant = T0 + timedelta(minutes=5)
    other_offset = same_instant.astimezone(timezone(timedelta(hours=1)))
    assert store.record_feedback([feedback("c1", at=other_offset)]) == 0
    assert feedback_rows(db_url) == 1


def test_record_feedback_concurrent_duplicates_from_8_threads_stored_once(
    store: FeedbackStore, db_url: str
) -> None:
    new = run_together(8, lambda _: store.record_feedback([feedback("c1")]))
    assert sorted(new) == [0] * 7 + [1]
    assert feedback_rows(db_url) == 1


def test_two_workers_write_same_feedback_concurrently_stored_once(db_url: str) -> None:
    """Two store objects = two workers with their own connections, as under uvicorn --workers."""
    workers = [open_feedback_store(db_url), open_feedback_store(db_url)]
    entries = [feedback(f"c{i}") for i in range(100)]
    try:
        for _ in range(5):  # several rounds, to give the race many chances
            new = run_together(8, lambda i: workers[i % 2].record_feedback(entries))
            assert sum(new) in {0, 100}
        assert workers[0].record_feedback(entries) == 0
    finally:
        for worker in workers:
            worker.close()
    assert feedback_rows(db_url) == 100


def test_workers_creating_the_schema_at_once_all_succeed(db_url: str) -> None:
    stores: list[FeedbackStore] = []

    def open_one(_: int) -> int:
        stores.append(open_feedback_store(db_url))
        return 1

    try:
        assert sum(run_together(8, open_one)) == 8
    finally:
        for opened in stores:
            opened.close()


# --- summary and daily ---------------------------------------------------------------------


def test_summary_counts_latest_outcome_reasons_and_unknown_cards(store: FeedbackStore) -> None:
    store.record_cards([card(uuid) for uuid in "abcde"] + [card("h", rule="hrt")])
    later = T0 + timedelta(hours=1)
    store.record_feedback(
        [
            feedback("a", "accepted"),
            feedback("b", "overridden", code="patient-declined"),
            feedback("c", "overridden", comment="Escalated by phone"),
            feedback("d", "overridden", code="patient-declined"),
            feedback("d", "accepted", later),  # latest outcome wins: d counts as accepted
            feedback("e", "accepted"),
            feedback("e", "overridden", later, code="contraindicated"),
            feedback("ghost", "overridden", code="other"),
        ]
    )
    assert store.summary() == [
        RuleSummary(SERVICE, "hrt", 1, 0, 0, 1, ()),
        RuleSummary(
            SERVICE,
            "news2",
            shown=5,
            accepted=2,
            overridden=3,
            no_feedback=0,
            override_reasons=(
                (COMMENT_ONLY, 1),
                ("contraindicated", 1),
                ("patient-declined", 1),
            ),
        ),
        RuleSummary(SERVICE, UNKNOWN_RULE, 1, 0, 1, 0, (("other", 1),)),
    ]
    assert [row.rule_id for row in store.summary(SERVICE)] == ["hrt", "news2", UNKNOWN_RULE]
    assert store.summary("other-service") == []


def test_daily_buckets_by_day_of_issue_in_store_zone(db_url: str) -> None:
    store = open_feedback_store(db_url, timezone="Europe/London")
    try:
        late_evening_utc = datetime(2024, 7, 1, 23, 30, tzinfo=UTC)  # 2 July in London
        store.record_cards([card("a", at=T0), card("b", at=late_evening_utc)])
        store.record_feedback([feedback("a", "overridden", T0 + timedelta(days=1))])
        assert store.daily() == [
            DailyCount(date(2024, 7, 1), SERVICE, "news2", shown=1, accepted=0, overridden=1),
            DailyCount(date(2024, 7, 2), SERVICE, "news2", shown=1, accepted=0, overridden=0),
        ]
        assert [row.day for row in store.daily(since=date(2024, 7, 2))] == [date(2024, 7, 2)]
    finally:
        store.close()


# --- failures ------------------------------------------------------------------------------


def test_store_reconnects_after_its_connection_is_killed(store: FeedbackStore, db_url: str) -> None:
    store.record_cards([card("c1")])
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'fhir-safety'"
        )
    with pytest.raises(StoreError, match="postgresql"):
        store.summary()
    assert store.summary()[0].shown == 1  # a new connection on the next call


def test_unreachable_server_raises_store_error_without_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_feedback_store("postgresql://postgres:secret@127.0.0.1:1/feedback")
    assert "secret" not in str(caught.value)
