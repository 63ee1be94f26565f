"""The concern form's memory: answers per link per hour, and form tokens already used.

Both live in the process (like the JWT replay cache): with several workers each has its own,
so the effective limit is ``workers x submissions_per_hour``, and a token replayed to another
worker is still written only once because the Observation id comes from the token
(``services.concern_submission``). Both are bounded so that a flood cannot grow them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

__all__ = ["RateLimiter", "SubmissionLedger", "Used"]

T = TypeVar("T")


class RateLimiter:
    """At most ``limit`` events per key in any sliding ``window``."""

    def __init__(self, limit: int, window: timedelta, *, max_keys: int = 10_000) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[datetime]] = OrderedDict()

    def allow(self, key: str, now: datetime) -> bool:
        """Record an event for ``key`` and say yes, or say no (and record nothing)."""
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)  # the key unused for longest
        self._events.move_to_end(key)
        while events and now - events[0] >= self._window:
            events.popleft()
        if len(events) >= self._limit:
            return False
        events.append(now)
        return True


@dataclass(frozen=True, slots=True)
class Used(Generic[T]):
    """The result of the first submission with a token, and whether this call repeated it."""

    result: T
    repeated: bool


class SubmissionLedger(Generic[T]):
    """Runs the work for a submission id once; later calls with the id get the same result.

    A second press of Send while the first is still being written waits for the first one's
    result instead of writing again. A submission that failed is forgotten, so the person can
    try again with the same page.
    """

    def __init__(self, ttl: timedelta, *, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[datetime, asyncio.Future[T]]] = OrderedDict()

    async def once(self, key: str, now: datetime, work: Callable[[], Awaitable[T]]) -> Used[T]:
        self._forget_before(now - self._ttl)
        entry = self._entries.get(key)
        if entry is not None:
            return Used(await asyncio.shield(entry[1]), repeated=True)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now, future)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        try:
            result = await work()
        except BaseException as exc:
            self._entries.pop(key, None)
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            else:
                future.cancel()
            raise
        future.set_result(result)
        return Used(result, repeated=False)

    def _forget_before(self, cutoff: datetime) -> None:
        while self._entries:
            key, (when, future) = next(iter(self._entries.items()))
            if when >= cutoff or not future.done():
                return
            del self._entries[key]
