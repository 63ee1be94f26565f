"""Feedback store: which cards we issued, and what clinicians did with them.

CDS Hooks 2.0 §"Feedback" sends only the card's uuid, an outcome and a time,
so the service records every card it issues (uuid, service, hook, rule,
indicator, time) to be able to say how often each rule fired and how often it
was accepted or overridden (alert fatigue). Nothing here identifies a patient.

Idempotency: the spec allows the same feedback to be sent again, so the
natural key ``(card_uuid, outcome, outcome_timestamp)`` is the primary key
and every write is ``INSERT ... ON CONFLICT DO NOTHING``. The database, not
this process, decides what is new, so replays and concurrent duplicates from
several workers are stored exactly once; the first copy wins.

One card can have several outcomes (overridden, then accepted later). The
summaries count the *latest* outcome per card, by ``outcome_timestamp``; if
two outcomes carry the same timestamp, ``overridden`` wins (deterministic,
and it does not hide an override).

Timestamps are stored as fixed-width ISO 8601 UTC text
(``2024-05-01T09:30:00.000000Z``), so ordering and the idempotency key are
byte-identical in SQLite and PostgreSQL. Calendar days (for ``daily``) are
worked out in Python in the store's time zone when a row is written.

The SQL is written once, with ``?`` placeholders; ``_Dialect`` holds the only
two differences between the engines (placeholder style, and a lock that
serialises schema creation across PostgreSQL workers).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_safety.errors import ConfigurationError, StoreError

__all__ = [
    "COMMENT_ONLY",
    "SCHEMA_VERSION",
    "UNKNOWN_RULE",
    "DailyCount",
    "FeedbackEntry",
    "FeedbackStore",
    "IssuedCard",
    "Outcome",
    "RuleSummary",
    "open_feedback_store",
]

SCHEMA_VERSION = 1
# Rule id under which feedback for a card we have no record of is summarised.
UNKNOWN_RULE = "unknown"
# Override-reason key for an override that carries a comment but no coded reason.
COMMENT_ONLY = "comment only"

Outcome = Literal["accepted", "overridden"]
_OUTCOMES = frozenset({"accepted", "overridden"})
_SQLITE_BUSY_TIMEOUT_S = 10.0
_POSTGRES_CONNECT_TIMEOUT_S = 10
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card the service returned, recorded so feedback (uuid only) can be tied to a rule."""

    card_uuid: str
    service_id: str
    hook: str
    rule_id: str
    indicator: str
    issued_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.issued_at, "issued_at")


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One CDS Hooks feedback item, flattened; ``card_uuid`` is the feedback's ``card``."""

    card_uuid: str
    service_id: str
    outcome: Outcome
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason_system: str | None = None
    override_reason_code: str | None = None
    override_reason_display: str | None = None
    user_comment: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be accepted or overridden, not {self.outcome!r}")
        _require_aware(self.outcome_timestamp, "outcome_timestamp")


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """Alert-fatigue figures for one rule of one service (see docs/feedback.md).

    ``shown == accepted + overridden + no_feedback``. ``override_reasons`` counts
    the latest outcomes that are overrides, by reason code (or ``COMMENT_ONLY``),
    most frequent first; overrides with neither code nor comment are not listed.
    """

    service_id: str
    rule_id: str
    shown: int
    accepted: int
    overridden: int
    no_feedback: int
    override_reasons: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class DailyCount:
    """Cards shown on ``day``, and how many of those were (finally) accepted or overridden."""

    day: date
    service_id: str
    rule_id: str
    shown: int
    accepted: int
    overridden: int


class FeedbackStore(Protocol):
    """What the API layer needs; every method is synchronous and thread-safe."""

    def record_cards(self, cards: Sequence[IssuedCard]) -> None: ...

    def record_feedback(self, entries: Sequence[FeedbackEntry]) -> int: ...

    def summary(self, service_id: str | None = None) -> list[RuleSummary]: ...

    def daily(self, since: date | None = None) -> list[DailyCount]: ...

    def remember_token(self, iss: str, jti: str, expires_at: datetime, now: datetime) -> bool: ...

    def close(self) -> None: ...


def open_feedback_store(url: str, *, timezone: str = "UTC") -> FeedbackStore:
    """Open (and create, if need be) the store at ``url``.

    ``sqlite:///relative.sqlite3``, ``sqlite:////absolute.sqlite3``,
    ``sqlite:///:memory:`` or ``postgresql://user:pass@host:port/db``.
    ``timezone`` (an IANA name, normally ``Settings.timezone``) decides which
    calendar day a card or an outcome falls on.
    """
    zone = _zone(timezone)
    scheme, separator, rest = url.partition("://")
    if scheme == "sqlite" and separator:
        return _open_sqlite(_sqlite_path(rest), zone)
    if scheme in {"postgresql", "postgres"} and separator:
        return _open_postgres(url, zone)
    # Never echo the URL itself: it may hold a password.
    shown = scheme if separator and _SCHEME.fullmatch(scheme) else "<not a URL>"
    raise StoreError(
        f"unsupported feedback database URL scheme {shown}: "
        "use sqlite:///path.sqlite3 or postgresql://user:pass@host:port/db"
    )


# --- the two engines ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dialect:
    """Everything that differs between SQLite and PostgreSQL, in one place."""

    name: str
    placeholder: str  # sqlite3 uses qmark "?", psycopg uses format "%s"
    # Run first in the schema transaction. PostgreSQL can fail two concurrent
    # CREATE TABLE IF NOT EXISTS (unique violation in pg_type), so workers take turns.
    schema_lock: str | None
    errors: tuple[type[Exception], ...]

    def sql(self, text: str) -> str:
        """Our SQL uses "?" and contains no literal "?" or "%"."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


_SQLITE = _Dialect(name="sqlite", placeholder="?", schema_lock=None, errors=(sqlite3.Error,))


def _sqlite_path(rest: str) -> str:
    """``sqlite:///x`` -> ``x``; ``sqlite:////x`` -> ``/x`` (the SQLAlchemy convention)."""
    if not rest.startswith("/") or len(rest) < 2:
        raise StoreError("a SQLite feedback URL looks like sqlite:///path.sqlite3")
    return rest[1:]


def _open_sqlite(path: str, zone: tzinfo) -> FeedbackStore:
    def connect() -> _Connection:
        # One connection per store, used under the store's lock; other processes
        # on the same file wait up to the busy timeout (``timeout``) for the write lock.
        conn = sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer
        return conn

    return _SqlFeedbackStore(connect, _SQLITE, zone)


def _open_postgres(url: str, zone: tzinfo) -> FeedbackStore:
    try:
        import psycopg  # optional dependency, only needed for postgresql:// URLs
    except ImportError as exc:
        raise StoreError(
            "a postgresql:// feedback database needs psycopg: pip install 'fhir-safety[postgres]'"
        ) from exc
    dialect = _Dialect(
        name="postgresql",
        placeholder="%s",
        schema_lock="SELECT pg_advisory_xact_lock(1717921124)",  # b"feed" as an int
        errors=(psycopg.Error,),
    )

    def connect() -> _Connection:
        return psycopg.connect(
            url, connect_timeout=_POSTGRES_CONNECT_TIMEOUT_S, application_name="fhir-safety"
        )

    return _SqlFeedbackStore(connect, dialect, zone)


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class _Connection(Protocol):
    """The DB-API subset both sqlite3 and psycopg connections provide."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> _Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


# --- SQL ----------------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS issued_card (
        card_uuid TEXT NOT NULL PRIMARY KEY,
        service_id TEXT NOT NULL,
        hook TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        indicator TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        issued_day TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        card_uuid TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
        outcome_timestamp TEXT NOT NULL,
        outcome_day TEXT NOT NULL,
        service_id TEXT NOT NULL,
        accepted_suggestions TEXT NOT NULL,
        override_reason_system TEXT,
        override_reason_code TEXT,
        override_reason_display TEXT,
        user_comment TEXT,
        PRIMARY KEY (card_uuid, outcome, outcome_timestamp)
    )""",
    "CREATE INDEX IF NOT EXISTS issued_card_day ON issued_card (issued_day)",
    # JWT jti replay cache shared by every worker on this database (CDS Hooks: a token
    # must not be accepted twice); rows are purged once their token can no longer be used.
    """CREATE TABLE IF NOT EXISTS jwt_replay (
        iss TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (iss, jti)
    )""",
    "INSERT INTO schema_version (version) VALUES (?) ON CONFLICT DO NOTHING",
)

_INSERT_CARD = """INSERT INTO issued_card
    (card_uuid, service_id, hook, rule_id, indicator, issued_at, issued_day)
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

_INSERT_TOKEN = (
    "INSERT INTO jwt_replay (iss, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
_PURGE_TOKENS = "DELETE FROM jwt_replay WHERE expires_at < ?"

_INSERT_FEEDBACK = """INSERT INTO feedback
    (card_uuid, outcome, outcome_timestamp, outcome_day, service_id, accepted_suggestions,
     override_reason_system, override_reason_code, override_reason_display, user_comment)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

# One row per card: the day it counts on, its rule, its latest outcome (NULL: no
# feedback) and, for an override, the reason key. Feedback for a card we never
# recorded is counted under UNKNOWN_RULE on the day of its outcome.
_CARD_OUTCOMES = f"""WITH ranked AS (
    SELECT card_uuid, service_id, outcome, outcome_day, override_reason_code, user_comment,
           ROW_NUMBER() OVER (
               PARTITION BY card_uuid ORDER BY outcome_timestamp DESC, outcome DESC
           ) AS position
    FROM feedback
), latest AS (
    SELECT * FROM ranked WHERE position = 1
), card_outcome AS (
    SELECT c.issued_day AS day, c.service_id, c.rule_id, l.outcome,
           l.override_reason_code AS reason_code, l.user_comment
    FROM issued_card c LEFT JOIN latest l ON l.card_uuid = c.card_uuid
    UNION ALL
    SELECT l.outcome_day, l.service_id, '{UNKNOWN_RULE}', l.outcome,
           l.override_reason_code, l.user_comment
    FROM latest l
    WHERE NOT EXISTS (SELECT 1 FROM issued_card c WHERE c.card_uuid = l.card_uuid)
)"""

_SUMMARY = f"""{_CARD_OUTCOMES}
SELECT service_id, rule_id, outcome,
       CASE WHEN outcome = 'overridden' THEN COALESCE(
           reason_code, CASE WHEN user_comment IS NOT NULL THEN '{COMMENT_ONLY}' END
       ) END,
       COUNT(*)
FROM card_outcome {{where}}
GROUP BY 1, 2, 3, 4"""

_DAILY = f"""{_CARD_OUTCOMES}
SELECT day, service_id, rule_id, outcome, COUNT(*)
FROM card_outcome {{where}}
GROUP BY 1, 2, 3, 4"""


# --- the store ----------------------------------------------------------------------------


class _SqlFeedbackStore:
    """``FeedbackStore`` over one lock-guarded DB-API connection (SQLite or PostgreSQL).

    FastAPI runs sync endpoints in a threadpool; the lock makes each method one
    transaction on one connection. Feedback traffic is a few writes per card,
    so a pool would add failure modes without adding useful throughput.
    Uniqueness across processes is the database's job (primary keys).
    """

    def __init__(self, connect: Callable[[], _Connection], dialect: _Dialect, zone: tzinfo):
        self._connect = connect
        self._dialect = dialect
        self._zone = zone
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._closed = False
        try:
            self._create_schema()
        except BaseException:
            self.close()  # do not leak the connection of a store nobody will get
            raise

    def record_cards(self, cards: Sequence[IssuedCard]) -> None:
        """Remember issued cards; recording the same uuid again changes nothing."""
        rows = [self._card_row(card) for card in cards]
        if rows:
            with self._transaction() as conn:
                self._insert(conn, _INSERT_CARD, rows)

    def record_feedback(self, entries: Sequence[FeedbackEntry]) -> int:
        """Store feedback once per (card, outcome, time); return how many were new."""
        rows = [self._feedback_row(entry) for entry in entries]
        if not rows:
            return 0
        with self._transaction() as conn:
            return self._insert(conn, _INSERT_FEEDBACK, rows)

    def summary(self, service_id: str | None = None) -> list[RuleSummary]:
        """Per-rule shown / accepted / overridden / no feedback, latest outcome per card."""
        where, params = (
            ("WHERE service_id = ?", [service_id]) if service_id is not None else ("", [])
        )
        rows = self._query(_SUMMARY.format(where=where), params)
        return _fold_summary(rows)

    def daily(self, since: date | None = None) -> list[DailyCount]:
        """Per day (of issue) and rule: cards shown, and how many were accepted or overridden."""
        where, params = ("WHERE day >= ?", [since.isoformat()]) if since is not None else ("", [])
        rows = self._query(_DAILY.format(where=where), params)
        return _fold_daily(rows)

    def remember_token(self, iss: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """True the first time (iss, jti) is seen by any worker on this database."""
        with self._transaction() as conn:
            conn.execute(self._dialect.sql(_PURGE_TOKENS), (_utc_text(now),))
            return self._insert(conn, _INSERT_TOKEN, [(iss, jti, _utc_text(expires_at))]) == 1

    def close(self) -> None:
        """Close the connection; later calls raise ``StoreError``."""
        with self._lock:
            self._closed = True
            self._drop_connection()

    # -- rows --

    def _card_row(self, card: IssuedCard) -> tuple[str, ...]:
        return (
            card.card_uuid,
            card.service_id,
            card.hook,
            card.rule_id,
            card.indicator,
            _utc_text(card.issued_at),
            self._day(card.issued_at),
        )

    def _feedback_row(self, entry: FeedbackEntry) -> tuple[str | None, ...]:
        return (
            entry.card_uuid,
            entry.outcome,
            _utc_text(entry.outcome_timestamp),
            self._day(entry.outcome_timestamp),
            entry.service_id,
            json.dumps(list(entry.accepted_suggestions)),
            _blank_to_none(entry.override_reason_system),
            _blank_to_none(entry.override_reason_code),
            _blank_to_none(entry.override_reason_display),
            _blank_to_none(entry.user_comment),
        )

    def _day(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).date().isoformat()

    # -- database plumbing --

    def _create_schema(self) -> None:
        with self._transaction() as conn:
            if self._dialect.schema_lock:
                conn.execute(self._dialect.schema_lock)
            for statement in _SCHEMA[:-1]:
                conn.execute(statement)
            conn.execute(self._dialect.sql(_SCHEMA[-1]), (SCHEMA_VERSION,))
            (found,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchall()[0]
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"feedback database has schema version {found}; this code knows {SCHEMA_VERSION}"
            )

    def _insert(self, conn: _Connection, statement: str, rows: Iterable[Sequence[Any]]) -> int:
        # One execute per row: rowcount is then 0 or 1 in both drivers, which is
        # how ON CONFLICT DO NOTHING tells us whether the row was new.
        sql = self._dialect.sql(statement)
        return sum(conn.execute(sql, row).rowcount for row in rows)

    def _query(self, statement: str, params: Sequence[Any]) -> list[Any]:
        with self._transaction() as conn:
            return conn.execute(self._dialect.sql(statement), params).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[_Connection]:
        """Hold the lock for one transaction; commit, or roll back and raise ``StoreError``."""
        with self._lock:
            if self._closed:
                raise StoreError("the feedback store is closed")
            try:
                conn = self._connection()
                yield conn
                conn.commit()  # also ends PostgreSQL's read transactions
            except self._dialect.errors as exc:
                self._abandon()
                raise StoreError(f"feedback store ({self._dialect.name}) failed: {exc}") from exc
            except BaseException:
                self._abandon()
                raise

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _abandon(self) -> None:
        """Roll back; if even that fails the connection is dead, so reconnect next time."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except self._dialect.errors:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(*self._dialect.errors):  # a broken connection: nothing left to save
                conn.close()


# --- helpers ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str | None, count: int) -> None:
        self.shown += count
        if outcome == "accepted":
            self.accepted += count
        elif outcome == "overridden":
            self.overridden += count


def _fold_summary(rows: Iterable[Sequence[Any]]) -> list[RuleSummary]:
    tallies: dict[tuple[str, str], _Tally] = {}
    for service_id, rule_id, outcome, reason, count in rows:
        tally = tallies.setdefault((service_id, rule_id), _Tally())
        tally.add(outcome, count)
        if reason is not None:
            tally.reasons[reason] = tally.reasons.get(reason, 0) + count
    return [
        RuleSummary(
            service_id=service_id,
            rule_id=rule_id,
            shown=tally.shown,
            accepted=tally.accepted,
            overridden=tally.overridden,
            no_feedback=tally.shown - tally.accepted - tally.overridden,
            override_reasons=tuple(sorted(tally.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        for (service_id, rule_id), tally in sorted(tallies.items())
    ]


def _fold_daily(rows: Iterable[Sequence[Any]]) -> list[DailyCount]:
    tallies: dict[tuple[str, str, str], _Tally] = {}
    for day, service_id, rule_id, outcome, count in rows:
        tallies.setdefault((day, service_id, rule_id), _Tally()).add(outcome, count)
    return [
        DailyCount(
            day=date.fromisoformat(day),
            service_id=service_id,
            rule_id=rule_id,
            shown=tally.shown,
            accepted=tally.accepted,
            overridden=tally.overridden,
        )
        for (day, service_id, rule_id), tally in sorted(tallies.items())
    ]


def _require_aware(moment: datetime, name: str) -> None:
    """A naive time would be stored as if it were UTC and silently shift days: refuse it."""
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")


def _utc_text(moment: datetime) -> str:
    """Fixed width, so text order is time order and equal instants give equal keys."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r} for the feedback store") from exc
