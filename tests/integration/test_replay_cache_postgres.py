"""Replicas on one PostgreSQL: a JWT accepted by one worker is refused by another."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fhir_safety.services.auth import StoreReplayCache
from fhir_safety.services.feedback_store import open_feedback_store
from tests.postgres_harness import postgres_cluster, temporary_database

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_cluster() as cluster_url, temporary_database(cluster_url) as url:
        yield url


async def test_two_workers_share_the_replay_cache(database_url: str) -> None:
    first, second = open_feedback_store(database_url), open_feedback_store(database_url)
    try:
        expires = NOW + timedelta(minutes=5)
        assert await StoreReplayCache(first, clock=lambda: NOW).check_and_remember(
            "iss", "t1", expires
        )
        assert not await StoreReplayCache(second, clock=lambda: NOW).check_and_remember(
            "iss", "t1", expires
        )
    finally:
        first.close()
        second.close()
