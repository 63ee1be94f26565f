"""Replicas and soak: two uvicorn workers sharing PostgreSQL, under mixed traffic.

The service runs as ``uvicorn fhir_safety.api.asgi:app_factory --factory --workers 2``
with its feedback store AND its JWT replay cache in one PostgreSQL database (Debian's
server, started by tests/postgres_harness.py). JWTs are ES384, signed by a test issuer
whose JWKS is a file. Everything is on 127.0.0.1.

- A token accepted by one worker is refused by the other, over real HTTP, with the worker
  that answered each request identified from /proc (tests/reliability/multiworker.py).
- The soak sends mixed valid and invalid traffic at a fixed rate for
  ``FHIR_SAFETY_SOAK_SECONDS`` (default 60; 600 for the documented run, results in
  docs/reliability.md) and checks the definitions of "stable" below.

Stable means (STABILITY_RULES, checked in ``check_stability``):
1. every response has exactly the status its kind of request must get; no 5xx, no
   transport error, no request still open when the run ends;
2. the p99 latency of the last window is at most 2x that of the first window plus 100 ms,
   its p50 at most 2x the first window's plus 10 ms, and no window's p99 is over 1 s (the
   hook deadline is 5 s);
3. per worker, RSS growth from the end of the first window to the end of the run is under
   ``RSS_GROWTH_LIMIT_MB`` (the first window is warm-up: imports, caches, connections);
4. every concurrent duplicate feedback burst is stored exactly once: the receipts of a
   burst add up to stored=1, and PostgreSQL holds exactly one row per burst;
5. every card returned is recorded once in PostgreSQL (issued_card rows == cards returned);
6. both workers answered part of the traffic.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import EXAMPLES, load_example
from tests.postgres_harness import postgres_cluster, temporary_database
from tests.reliability.multiworker import (
    Workers,
    connection_to_each_worker,
    rss_bytes,
    start_workers,
)
from tests.reliability.tokens import TestIssuer

pytestmark = pytest.mark.postgres

ISS = "https://ehr.reliability.test"
SOAK_SECONDS = float(os.environ.get("FHIR_SAFETY_SOAK_SECONDS", "60"))
SOAK_RATE = float(os.environ.get("FHIR_SAFETY_SOAK_RATE", "20"))  # requests started per second
RSS_GROWTH_LIMIT_MB = 16.0
LATENCY_GROWTH_FACTOR = 2.0
LATENCY_SLACK_SECONDS = 0.1
MEDIAN_SLACK_SECONDS = 0.01
LATENCY_CEILING_SECONDS = 1.0
MAX_IN_FLIGHT = 200
BURST = 4  # identical feedback posts sent at once


# --- the service under test ---------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_cluster() as cluster_url, temporary_database(cluster_url) as url:
        yield url


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer(ISS)


@pytest.fixture(scope="module")
def workers(
    database_url: str, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    folder = tmp_path_factory.mktemp("workers")
    jwks_file = folder / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    env = {
        "FHIR_SAFETY_ISSUERS": json.dumps([{"iss": ISS, "jwks_file": str(jwks_file)}]),
        "FHIR_SAFETY_JWT_REPLAY_CACHE": "database",
        "FHIR_SAFETY_FEEDBACK_DATABASE_URL": database_url,
        "FHIR_SAFETY_LOG_LEVEL": "WARNING",
    }
    # The JWT aud is the endpoint URL; the port is only known once chosen, so the workers
    # take the audience from the URL each request arrived on (public_base_url unset).
    with start_workers(env, 2, folder / "uvicorn.log") as running:
        yield running


def _aud(workers: Workers, path: str) -> str:
    return f"{workers.base_url}{path}"


def _post(
    conn: http.client.HTTPConnection, path: str, token: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else {}


# --- replicas -----------------------------------------------------------------------------


def test_replay_cache_token_accepted_by_one_worker_is_refused_by_the_other(
    workers: Workers, issuer: TestIssuer
) -> None:
    by_worker = connection_to_each_worker(workers)
    first, second = sorted(by_worker)
    path = "/cds-services/long-stay"
    body = load_example("long-stay/patient-view-super-stranded-no-plan.json")
    body.pop("fhirServer", None)
    try:
        for accepting, refusing in ((first, second), (second, first)):
            token = issuer.token(_aud(workers, path))
            status, cards = _post(by_worker[accepting], path, token, body)
            assert status == 200, cards
            assert cards["cards"]  # the real answer, not an empty pass
            status, outcome = _post(by_worker[refusing], path, token, body)
            assert status == 401, outcome
            # and the worker that accepted it refuses it too
            status, _ = _post(by_worker[accepting], path, token, body)
            assert status == 401
    finally:
        for conn in by_worker.values():
            conn.close()


def test_feedback_concurrent_duplicates_on_both_workers_stored_once(
    workers: Workers, issuer: TestIssuer, database_url: str
) -> None:
    by_worker = connection_to_each_worker(workers)
    path = "/cds-services/long-stay/feedback"
    card = str(uuid.uuid4())
    when = datetime.now(UTC).isoformat()
    body = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": when}]}

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=workers.base_url, limits=httpx.Limits(max_keepalive_connections=0)
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        path,
                        json=body,
                        headers={"Authorization": f"Bearer {issuer.token(_aud(workers, path))}"},
                    )
                    for _ in range(8)
                )
            )

    try:
        # The same feedback through each identified worker first, then eight at once.
        receipts = [
            _post(conn, path, issuer.token(_aud(workers, path)), body)
            for conn in by_worker.values()
        ]
        responses = asyncio.run(send_all())
    finally:
        for conn in by_worker.values():
            conn.close()
    assert [status for status, _ in receipts] == [200, 200]
    assert [r.status_code for r in responses] == [200] * 8
    stored = [receipt["stored"] for _, receipt in receipts] + [
        r.json()["stored"] for r in responses
    ]
    assert sum(stored) == 1
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM feedback WHERE card_uuid = %s", (card,))
        assert rows.fetchone() == (1,)


# --- soak ---------------------------------------------------------------------------------


def _valid_requests() -> list[tuple[str, dict[str, Any]]]:
    """(service, body) for every documented example that carries its prefetch; no fhirServer."""
    found = []
    for expected_file in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            body = load_example(f"{expected_file.parent.name}/{name}")
            if body.get("prefetch"):
                body.pop("fhirServer", None)
                body.pop("fhirAuthorization", None)
                found.append((case["service"], body))
    return found


# One cycle of request kinds; the soak walks it round and round at a fixed rate.
CYCLE = (
    ["hook"] * 8
    + ["malformed-json"] * 2
    + ["bad-signature", "garbage-token", "expired-token", "replayed-token", "no-token"]
    + ["unknown-service", "wrong-hook", "discovery"]
    + ["feedback-burst"] * 2
)
EXPECTED_STATUS = {
    "hook": 200,
    "malformed-json": 400,
    "bad-signature": 401,
    "garbage-token": 401,
    "expired-token": 401,
    "replay-first-use": 200,
    "replayed-token": 401,
    "no-token": 401,
    "unknown-service": 404,
    "wrong-hook": 400,
    "discovery": 200,
    "feedback": 200,
}


@dataclass
class Sample:
    started: float  # seconds since the soak started
    kind: str
    status: int  # 0: transport error
    seconds: float


@dataclass
class SoakRun:
    workers: Workers
    issuer: TestIssuer
    stranger: TestIssuer
    client: httpx.AsyncClient
    t0: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cards_returned: int = 0
    card_uuids: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    bursts: list[tuple[str, str, int]] = field(default_factory=list)  # card, time, stored sum
    in_flight: int = 0
    peak_in_flight: int = 0
    valid: list[tuple[str, dict[str, Any]]] = field(default_factory=_valid_requests)

    def token(self, path: str, **kwargs: Any) -> str:
        return self.issuer.token(_aud(self.workers, path), **kwargs)

    async def send(
        self, kind: str, method: str, path: str, *, token: str | None, content: bytes | None = None
    ) -> httpx.Response | None:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            self.samples.append(Sample(started - self.t0, kind, 0, time.monotonic() - started))
            self.errors.append(f"{kind} {path}: {type(exc).__name__}")
            return None
        elapsed = time.monotonic() - started
        self.samples.append(Sample(started - self.t0, kind, response.status_code, elapsed))
        if response.status_code != EXPECTED_STATUS[kind]:
            self.errors.append(f"{kind} {path}: {response.status_code} {response.text[:200]}")
        elif kind in {"hook", "replay-first-use"}:
            cards = response.json()["cards"]
            self.cards_returned += len(cards)
            self.card_uuids.extend(c["uuid"] for c in cards)
        return response

    async def one(self, tick: int) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await self._dispatch(tick)
        finally:
            self.in_flight -= 1

    async def _dispatch(self, tick: int) -> None:
        kind = CYCLE[tick % len(CYCLE)]
        service, body = self.valid[tick % len(self.valid)]
        path = f"/cds-services/{service}"
        payload = json.dumps(body).encode()
        if kind == "hook":
            await self.send(kind, "POST", path, token=self.token(path), content=payload)
        elif kind == "malformed-json":
            await self.send(kind, "POST", path, token=self.token(path), content=payload[:-7])
        elif kind == "bad-signature":
            token = self.stranger.token(_aud(self.workers, path))
            await self.send(kind, "POST", path, token=token, content=payload)
        elif kind == "garbage-token":
            await self.send(kind, "POST", path, token="not.a.jwt", content=payload)
        elif kind == "expired-token":
            token = self.token(path, issued=time.time() - 3600, lifetime=600)
            await self.send(kind, "POST", path, token=token, content=payload)
        elif kind == "replayed-token":
            token = self.token(path)
            await self.send("replay-first-use", "POST", path, token=token, content=payload)
            await self.send(kind, "POST", path, token=token, content=payload)
        elif kind == "no-token":
            await self.send(kind, "POST", path, token=None, content=payload)
        elif kind == "unknown-service":
            bad = "/cds-services/no-such-service"
            await self.send(kind, "POST", bad, token=self.token(bad), content=payload)
        elif kind == "wrong-hook":
            wrong = dict(body, hook="encounter-start")
            content = json.dumps(wrong).encode()
            await self.send(kind, "POST", path, token=self.token(path), content=content)
        elif kind == "discovery":
            await self.send(kind, "GET", "/cds-services", token=self.token("/cds-services"))
        else:
            await self._feedback_burst(tick, service)

    async def _feedback_burst(self, tick: int, service: str) -> None:
        """BURST identical feedback posts at once (each with its own JWT): stored once."""
        card = self.card_uuids.pop() if self.card_uuids else str(uuid.uuid4())
        when = (datetime.now(UTC) + timedelta(microseconds=tick)).isoformat()
        item = {"card": card, "outcome": "overridden", "outcomeTimestamp": when}
        content = json.dumps({"feedback": [item]}).encode()
        path = f"/cds-services/{service}/feedback"
        responses = await asyncio.gather(
            *(
                self.send("feedback", "POST", path, token=self.token(path), content=content)
                for _ in range(BURST)
            )
        )
        stored = sum(
            r.json()["stored"] for r in responses if r is not None and r.status_code == 200
        )
        self.bursts.append((card, when, stored))


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _windows(run: SoakRun, duration: float, width: float) -> list[dict[str, Any]]:
    rows = []
    count = max(1, round(duration / width))
    for index in range(count):
        inside = [
            s.seconds for s in run.samples if index * width <= s.started < (index + 1) * width
        ]
        rows.append(
            {
                "window": index + 1,
                "requests": len(inside),
                "p50_ms": round(_percentile(inside, 50) * 1000, 1) if inside else None,
                "p99_ms": round(_percentile(inside, 99) * 1000, 1) if inside else None,
            }
        )
    return rows


async def _sample_rss(
    workers: Workers, width: float, count: int, into: list[dict[int, int]]
) -> None:
    into.append({pid: rss_bytes(pid) for pid in workers.pids})
    for _ in range(count):
        await asyncio.sleep(width)
        into.append({pid: rss_bytes(pid) for pid in workers.pids})


def _requests_per_worker(workers: Workers) -> dict[int, int]:
    """Each worker's own count of answered hook calls, from its own /metrics."""
    counts = {}
    for pid, conn in connection_to_each_worker(workers).items():
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        counts[pid] = round(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("fhir_safety_hook_seconds_count")
            )
        )
    return counts


@pytest.mark.soak
async def test_soak_mixed_traffic_two_workers_stay_stable(
    workers: Workers, issuer: TestIssuer, database_url: str
) -> None:
    duration = SOAK_SECONDS
    width = 60.0 if duration >= 300 else max(5.0, duration / 6)
    ticks = int(duration * SOAK_RATE)
    rss: list[dict[int, int]] = []
    before = _row_counts(database_url)
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=workers.base_url, limits=limits, timeout=10.0) as client:
        run = SoakRun(workers, issuer, TestIssuer(ISS), client)  # same iss, another key
        run.t0 = time.monotonic()
        sampler = asyncio.create_task(_sample_rss(workers, width, round(duration / width), rss))
        tasks: set[asyncio.Task[None]] = set()
        for tick in range(ticks):  # open loop: a request starts every 1/rate s, come what may
            delay = run.t0 + tick / SOAK_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            assert run.in_flight < MAX_IN_FLIGHT, f"service fell behind at tick {tick}"
            task = asyncio.create_task(run.one(tick))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await asyncio.wait_for(sampler, timeout=width + 30)

    per_worker = _requests_per_worker(workers)
    after = _row_counts(database_url)
    with psycopg.connect(database_url) as conn:
        feedback_rows = {
            (card, stamp): n
            for card, stamp, n in conn.execute(
                "SELECT card_uuid, outcome_timestamp, COUNT(*) FROM feedback GROUP BY 1, 2"
            ).fetchall()
        }
    added = {table: after[table] - before[table] for table in after}
    report = _report(run, duration, width, rss, per_worker, added)
    _publish(report)
    check_stability(run, report, feedback_rows)


def _row_counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("feedback", "issued_card")
        }


def _report(
    run: SoakRun,
    duration: float,
    width: float,
    rss: list[dict[int, int]],
    per_worker: dict[int, int],
    added: dict[str, int],
) -> dict[str, Any]:
    statuses = Counter(f"{s.kind} {s.status}" for s in run.samples)
    return {
        "seconds": duration,
        "rate_per_second": SOAK_RATE,
        "window_seconds": width,
        "requests": len(run.samples),
        "status_by_kind": dict(sorted(statuses.items())),
        "status_totals": dict(sorted(Counter(s.status for s in run.samples).items())),
        "windows": _windows(run, duration, width),
        "rss_mb": [
            {str(pid): round(value / 2**20, 1) for pid, value in sample.items()} for sample in rss
        ],
        "hook_calls_per_worker": {str(pid): n for pid, n in per_worker.items()},
        "feedback_bursts": len(run.bursts),
        "feedback_posts": len(run.bursts) * BURST,
        "feedback_rows_added": added["feedback"],
        "cards_returned": run.cards_returned,
        "issued_card_rows_added": added["issued_card"],
        "peak_in_flight": run.peak_in_flight,
        "errors": run.errors[:20],
    }


def _publish(report: dict[str, Any]) -> None:
    text = json.dumps(report, indent=2)
    print(text)  # noqa: T201 - shown with -s; the 10-minute run's numbers go in docs
    target = os.environ.get("FHIR_SAFETY_SOAK_REPORT")
    if target:
        Path(target).write_text(text, encoding="utf-8")


def check_stability(
    run: SoakRun,
    report: dict[str, Any],
    feedback_rows: dict[tuple[str, str], int],
) -> None:
    # 1. statuses
    assert not run.errors, run.errors[:20]
    assert all(s.status == EXPECTED_STATUS[s.kind] for s in run.samples)
    assert len(run.samples) == report["requests"] > 0
    # 2. latency
    windows = [w for w in report["windows"] if w["requests"]]
    first, last = windows[0]["p99_ms"] / 1000, windows[-1]["p99_ms"] / 1000
    assert last <= LATENCY_GROWTH_FACTOR * first + LATENCY_SLACK_SECONDS, windows
    first_p50, last_p50 = windows[0]["p50_ms"] / 1000, windows[-1]["p50_ms"] / 1000
    assert last_p50 <= LATENCY_GROWTH_FACTOR * first_p50 + MEDIAN_SLACK_SECONDS, windows
    assert all(w["p99_ms"] / 1000 <= LATENCY_CEILING_SECONDS for w in windows), windows
    # 3. memory, per worker, after the first window
    samples = report["rss_mb"]
    baseline, final = samples[min(1, len(samples) - 1)], samples[-1]
    for pid, start in baseline.items():
        assert final[pid] - start < RSS_GROWTH_LIMIT_MB, (pid, samples)
    # 4. feedback stored exactly once per burst
    assert all(stored == 1 for _, _, stored in run.bursts), run.bursts
    assert report["feedback_rows_added"] == len(run.bursts) > 0
    assert all(n == 1 for n in feedback_rows.values())
    for card, when, _ in run.bursts:
        stamp = datetime.fromisoformat(when).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert feedback_rows.get((card, stamp)) == 1, (card, stamp)
    # 5. every card returned was recorded once
    assert report["issued_card_rows_added"] == run.cards_returned > 0
    # 6. both workers carried traffic
    assert len(report["hook_calls_per_worker"]) == 2
    assert all(n > 0 for n in report["hook_calls_per_worker"].values())
