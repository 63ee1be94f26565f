"""Open-loop HTTP load generator, run as its own process.

    python -m bench.loadgen --url http://127.0.0.1:8000/cds-services/long-stay \
        --body request.json --rate 100 --duration 60 [--warmup 3]

Request ``i`` is due at ``start + i / rate``, whatever happened to earlier requests (open loop);
its latency is measured from that scheduled time, not from when it was actually sent, so a
stalled server or a saturated client is charged for the wait (no coordinated omission). Prints
one JSON object: sent, ok, errors (by kind), achieved rate (answers per second of the measured
window), latency percentiles in milliseconds, and the client's own send lag (how late after its
due time each request was written: the share of the latency that is the client's). Requests due
in the first ``--warmup`` seconds are sent but not counted. Loopback URLs only.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (uvloop): a pool of up to
``--connections`` connections, one request at a time on each, the request bytes built once.
httpx was the first choice, but on a shared 2-CPU machine its per-request CPU cost saturated the
generator near 100 req/s, which would have measured the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["LoadResult", "main", "percentile", "run_load"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, slots=True)
class LoadResult:
    rate: float
    duration: float
    sent: int
    ok: int
    errors: dict[str, int]
    achieved_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    late_sends: int  # requests written more than 10 ms after they were due (client saturation)
    send_lag_p50_ms: float | None
    send_lag_p99_ms: float | None
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class HttpStatusError(Exception):
    pass


class _Connection:
    """One keep-alive HTTP/1.1 connection; ``exchange`` sends a request and reads the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.usable = True

    async def exchange(self, payload: bytes) -> int:
        self.writer.write(payload)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self.usable = False
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self.reader.readexactly(length)
        else:
            await self.reader.read()  # body until close
            self.usable = False
        return status

    def close(self) -> None:
        self.usable = False
        self.writer.close()


class _Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self.opened = 0
        self.peak = 0

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**22)
        return _Connection(reader, writer)

    async def acquire(self) -> _Connection:
        if not self.idle.empty():
            return self.idle.get_nowait()
        if self.opened < self.limit:
            self.opened += 1
            self.peak = max(self.peak, self.opened)
            try:
                return await self._connect()
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()

    def release(self, connection: _Connection) -> None:
        if connection.usable:
            self.idle.put_nowait(connection)
        else:
            connection.close()
            self.opened -= 1

    async def warm(self, count: int) -> None:
        connections = [await self.acquire() for _ in range(min(count, self.limit))]
        for connection in connections:
            self.release(connection)

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


async def run_load(
    url: str,
    body: bytes,
    *,
    rate: float,
    duration: float,
    warmup: float = 0.0,
    request_timeout: float = 10.0,
    connections: int = 128,
) -> LoadResult:
    parsed = urlparse(url)
    if parsed.hostname not in _LOOPBACK or parsed.port is None:
        raise ValueError(f"the load generator only targets loopback host:port URLs, not {url}")
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    payload = (
        f"POST {path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body
    total = int((warmup + duration) * rate)
    first_measured = int(warmup * rate)
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    late = 0
    pool = _Pool(parsed.hostname, parsed.port, connections)
    await pool.warm(8)
    clock = time.perf_counter

    async def one(index: int, due: float) -> None:
        failed: str | None = None
        connection: _Connection | None = None
        sent = due
        try:
            async with asyncio.timeout(request_timeout):
                connection = await pool.acquire()
                sent = clock()
                status = await connection.exchange(payload)
            if status != 200:
                failed = f"HTTP {status}"
        except TimeoutError:
            failed = "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            failed = type(exc).__name__
        finished = clock()
        if connection is not None:
            if failed is not None and not failed.startswith("HTTP"):
                connection.usable = False
            pool.release(connection)
        if index < first_measured:
            return
        if failed is None:
            latencies.append((finished - due) * 1000)
            lags.append((sent - due) * 1000)
        else:
            errors[failed] += 1

    tasks: list[asyncio.Task[None]] = []
    start = clock() + 0.05
    for index in range(total):
        due = start + index / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.010 and index >= first_measured:
            late += 1
        tasks.append(asyncio.create_task(one(index, due)))
    measured_start = start + first_measured / rate
    await asyncio.gather(*tasks)
    window = max(clock() - measured_start, 1e-9)
    pool.close()
    latencies.sort()
    lags.sort()
    return LoadResult(
        rate=rate,
        duration=duration,
        sent=total - first_measured,
        ok=len(latencies),
        errors=dict(errors),
        achieved_rate=round(len(latencies) / max(window, duration), 1),
        p50_ms=_round(percentile(latencies, 50)),
        p95_ms=_round(percentile(latencies, 95)),
        p99_ms=_round(percentile(latencies, 99)),
        max_ms=_round(latencies[-1] if latencies else None),
        late_sends=late,
        send_lag_p50_ms=_round(percentile(lags, 50)),
        send_lag_p99_ms=_round(percentile(lags, 99)),
        connections=pool.peak,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _run(coroutine: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True, help="request body (JSON file)")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = _run(
        run_load(
            args.url,
            args.body.read_bytes(),
            rate=args.rate,
            duration=args.duration,
            warmup=args.warmup,
            request_timeout=args.timeout,
            connections=args.connections,
        )
    )
    payload = result.as_dict() | {"wall_seconds": round(time.perf_counter() - started, 1)}
    sys.stdout.write(json.dumps(payload) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
