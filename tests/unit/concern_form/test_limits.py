"""The per-link rate limit and the single-use ledger of form tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fhir_safety.concern_form.limits import RateLimiter, SubmissionLedger

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_rate_limiter_allows_the_limit_then_refuses() -> None:
    limiter = RateLimiter(3, HOUR)
    assert [limiter.allow("link", NOW) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    ("later", "allowed"),
    [(HOUR - timedelta(seconds=1), False), (HOUR, True)],
)
def test_rate_limiter_window_edge(later: timedelta, allowed: bool) -> None:
    limiter = RateLimiter(1, HOUR)
    assert limiter.allow("link", NOW)
    assert limiter.allow("link", NOW + later) is allowed


def test_rate_limiter_refusals_do_not_count() -> None:
    limiter = RateLimiter(1, HOUR)
    assert limiter.allow("link", NOW)
    for minutes in range(1, 60):
        assert not limiter.allow("link", NOW + timedelta(minutes=minutes))
    assert limiter.allow("link", NOW + HOUR)


def test_rate_limiter_keys_are_separate() -> None:
    limiter = RateLimiter(1, HOUR)
    assert limiter.allow("link-a", NOW)
    assert limiter.allow("link-b", NOW)
    assert not limiter.allow("link-a", NOW)


def test_rate_limiter_forgets_the_longest_unused_key_when_full() -> None:
    limiter = RateLimiter(1, HOUR, max_keys=2)
    assert limiter.allow("a", NOW)
    assert limiter.allow("b", NOW)
    assert limiter.allow("c", NOW)  # "a" is forgotten
    assert limiter.allow("a", NOW)
    assert not limiter.allow("c", NOW)


async def test_ledger_runs_the_work_once_per_key() -> None:
    ledger: SubmissionLedger[int] = SubmissionLedger(HOUR)
    calls = []

    async def work() -> int:
        calls.append(1)
        return len(calls)

    first = await ledger.once("token", NOW, work)
    second = await ledger.once("token", NOW, work)
    assert (first.result, first.repeated) == (1, False)
    assert (second.result, second.repeated) == (1, True)
    assert calls == [1]


async def test_ledger_second_press_waits_for_the_first() -> None:
    ledger: SubmissionLedger[str] = SubmissionLedger(HOUR)
    release = asyncio.Event()
    calls = []

    async def work() -> str:
        calls.append(1)
        await release.wait()
        return "written"

    first = asyncio.create_task(ledger.once("token", NOW, work))
    await asyncio.sleep(0)
    second = asyncio.create_task(ledger.once("token", NOW, work))
    await asyncio.sleep(0)
    release.set()
    assert (await first).result == "written"
    assert (await second).repeated
    assert calls == [1]


async def test_ledger_failed_work_is_forgotten_so_the_person_can_retry() -> None:
    ledger: SubmissionLedger[str] = SubmissionLedger(HOUR)

    async def failing() -> str:
        raise RuntimeError("server down")

    async def working() -> str:
        return "written"

    with pytest.raises(RuntimeError):
        await ledger.once("token", NOW, failing)
    assert (await ledger.once("token", NOW, working)).repeated is False


async def test_ledger_forgets_tokens_older_than_its_ttl() -> None:
    ledger: SubmissionLedger[int] = SubmissionLedger(HOUR)
    calls = []

    async def work() -> int:
        calls.append(1)
        return len(calls)

    await ledger.once("token", NOW, work)
    await ledger.once("other", NOW + HOUR + timedelta(seconds=1), work)
    again = await ledger.once("token", NOW + HOUR + timedelta(seconds=1), work)
    assert again.repeated is False  # the form token has expired by then anyway
