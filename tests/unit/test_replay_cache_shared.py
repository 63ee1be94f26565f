"""The database replay cache: a token accepted by one worker is refused by every other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_safety.errors import AuthenticationError, StoreError
from fhir_safety.services.auth import StoreReplayCache
from fhir_safety.services.feedback_store import FeedbackStore, open_feedback_store

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def two_workers(url: str) -> tuple[FeedbackStore, FeedbackStore]:
    return open_feedback_store(url), open_feedback_store(url)


async def test_token_seen_by_one_worker_is_refused_by_another(tmp_path: Path) -> None:
    first, second = two_workers(f"sqlite:///{tmp_path / 'shared.sqlite3'}")
    try:
        worker_a = StoreReplayCache(first, clock=lambda: NOW)
        worker_b = StoreReplayCache(second, clock=lambda: NOW)
        expires = NOW + timedelta(minutes=5)
        assert await worker_a.check_and_remember("https://ehr", "jti-1", expires) is True
        assert await worker_b.check_and_remember("https://ehr", "jti-1", expires) is False
        assert await worker_b.check_and_remember("https://other-ehr", "jti-1", expires) is True
    finally:
        first.close()
        second.close()


async def test_concurrent_first_use_is_accepted_exactly_once(tmp_path: Path) -> None:
    stores = [open_feedback_store(f"sqlite:///{tmp_path / 'race.sqlite3'}") for _ in range(4)]
    try:
        caches = [StoreReplayCache(s, clock=lambda: NOW) for s in stores]
        expires = NOW + timedelta(minutes=5)
        results = await asyncio.gather(
            *(c.check_and_remember("https://ehr", "same", expires) for c in caches * 3)
        )
        assert results.count(True) == 1
    finally:
        for store in stores:
            store.close()


async def test_expired_entries_are_purged(tmp_path: Path) -> None:
    store = open_feedback_store(f"sqlite:///{tmp_path / 'purge.sqlite3'}")
    try:
        later = NOW + timedelta(hours=2)
        cache_now = StoreReplayCache(store, clock=lambda: NOW)
        cache_later = StoreReplayCache(store, clock=lambda: later)
        assert await cache_now.check_and_remember("i", "old", NOW + timedelta(minutes=1))
        # Two hours on, the old token is long expired (so unusable): its row may go.
        assert await cache_later.check_and_remember("i", "new", later + timedelta(minutes=1))
        assert await cache_later.check_and_remember("i", "old", later + timedelta(minutes=1))
    finally:
        store.close()


async def test_store_failure_refuses_the_token() -> None:
    class Broken:
        def remember_token(self, *_: object) -> bool:
            raise StoreError("database down")

    with pytest.raises(AuthenticationError, match="replay cache unavailable"):
        await StoreReplayCache(Broken()).check_and_remember("i", "j", NOW)
