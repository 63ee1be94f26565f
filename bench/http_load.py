"""HTTP under load: the real service and the floor app, driven by ``bench.loadgen`` processes.

Each measurement runs one ``python -m bench.loadgen`` process against one app; the two apps are
measured alternately at each rate, so a change in the machine's background load hits both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import REPO_ROOT, Server, cpu_seconds, memory_kib

__all__ = ["HttpResults", "held", "run_http_phase", "run_loadgen"]

P99_LIMIT_MS = 100.0  # "highest rate held": p99 under this ...
MIN_ACHIEVED = 0.95  # ... with at least this share of the target rate answered, and no errors


def run_loadgen(
    url: str, body_path: Path, *, rate: float, duration: float, warmup: float
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--body", str(body_path)]
    command += ["--rate", str(rate), "--duration", str(duration), "--warmup", str(warmup)]
    finished = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=warmup + duration + 90,
        check=False,
    )
    if finished.returncode != 0:
        return {"rate": rate, "duration": duration, "failed": finished.stderr[-2000:]}
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def measure(
    app: Server, body_path: Path, path: str, *, rate: float, duration: float, warmup: float
) -> dict[str, Any]:
    """One load run, with the app's CPU time per request (robust to other load on the machine)."""
    before = cpu_seconds(app.pid)
    result = run_loadgen(
        app.base_url + path, body_path, rate=rate, duration=duration, warmup=warmup
    )
    after = cpu_seconds(app.pid)
    requests = int((warmup + duration) * rate)
    if before is not None and after is not None and requests:
        result["server_cpu_ms_per_request"] = round((after - before) * 1000 / requests, 3)
    return result


def held(result: dict[str, Any]) -> bool:
    """Was the rate held: every request answered 200, p99 < 100 ms, >= 95% of the rate achieved."""
    if "failed" in result or result.get("errors") or result.get("p99_ms") is None:
        return False
    return bool(
        result["p99_ms"] < P99_LIMIT_MS and result["achieved_rate"] >= MIN_ACHIEVED * result["rate"]
    )


@dataclass
class HttpResults:
    request: str
    request_bytes: int
    response_bytes: int
    fixed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # app -> results
    steps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    max_held: dict[str, float | None] = field(default_factory=dict)
    memory_before: dict[str, int] = field(default_factory=dict)
    memory_after: dict[str, int] = field(default_factory=dict)


def run_http_phase(
    service: Server,
    floor: Server,
    *,
    path: str,
    body_path: Path,
    response_bytes: int,
    fixed_rates: Sequence[float],
    fixed_seconds: float,
    step_rates: Sequence[float],
    step_seconds: float,
    warmup: float,
    log: Callable[[str], None],
) -> HttpResults:
    results = HttpResults(
        request=path,
        request_bytes=body_path.stat().st_size,
        response_bytes=response_bytes,
    )
    apps = {"fhir-safety": service, "floor": floor}
    for name, app in apps.items():
        _warm(app, path, body_path)
        results.fixed[name] = []
        results.steps[name] = []
        results.max_held[name] = None
    results.memory_before = memory_kib(service.pid)
    for rate in fixed_rates:
        for name, app in apps.items():
            result = measure(app, body_path, path, rate=rate, duration=fixed_seconds, warmup=warmup)
            results.fixed[name].append(result)
            log(f"  {name:12} {_describe(result)}")
    # Step up each app until a rate is not held twice running (one retry absorbs a burst from
    # another process on a shared machine); bounded by step_rates.
    still_going = set(apps)
    for rate in step_rates:
        for name, app in apps.items():
            if name not in still_going:
                continue
            for attempt in (1, 2):
                result = measure(
                    app, body_path, path, rate=rate, duration=step_seconds, warmup=warmup
                )
                result["attempt"] = attempt
                results.steps[name].append(result)
                log(f"  {name:12} {_describe(result)}  (step, attempt {attempt})")
                if held(result):
                    results.max_held[name] = rate
                    break
            else:
                still_going.discard(name)
        if not still_going:
            break
    for name in apps:  # no step held: the highest fixed rate held, if any
        if results.max_held[name] is None:
            fixed_held = [r["rate"] for r in results.fixed[name] if held(r)]
            results.max_held[name] = max(fixed_held, default=None)
    results.memory_after = memory_kib(service.pid)
    return results


def _warm(app: Server, path: str, body_path: Path) -> None:
    body = body_path.read_bytes()
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10.0) as client:
        for _ in range(50):
            client.post(app.base_url + path, content=body, headers=headers).raise_for_status()


def _describe(result: dict[str, Any]) -> str:
    if "failed" in result:
        return f"{result['rate']:>6.0f}/s  load generator failed: {result['failed'][-200:]}"
    errors = sum(result["errors"].values()) if result["errors"] else 0
    return (
        f"{result['rate']:>6.0f}/s  achieved {result['achieved_rate']:>7.1f}/s  "
        f"p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  p99 {result['p99_ms']} ms  "
        f"errors {errors}  server CPU {result.get('server_cpu_ms_per_request')} ms/request"
    )
