"""In-process evaluation timing: the whole hook call without HTTP, per catalogue service.

One timed iteration is what the HTTP route does between reading the body and writing the
answer: ``json.loads`` of the request bytes, ``CdsRequest`` validation, ``HookEvaluator.evaluate``
(context check, prefetch resolution, ``build_record`` into narrow models, the service's rules,
cards) and serialising the response to JSON bytes. The clock is fixed at ``synthetic.NOW`` and
the terminology is ``Terminology.load(settings.terminology_dir)``, as in the service.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench import synthetic
from bench.loadgen import percentile
from fhir_safety.cds.cards import to_cards
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.models import CdsRequest, CdsResponse, dump
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.config import Settings
from fhir_safety.observability import Metrics
from fhir_safety.record import RuleEnvironment
from fhir_safety.services.evaluate import HookEvaluator
from fhir_safety.services.record import build_record, resolve_prefetch
from fhir_safety.terminology import Terminology

__all__ = [
    "PHASES",
    "ServiceTiming",
    "phase_breakdown",
    "profile_service",
    "service_label",
    "time_services",
]

PHASES = ("json decode", "request model", "prefetch + record", "rules", "cards", "serialise")


def service_label(service: ServiceDefinition) -> str:
    return f"{service.id} ({service.hook})"


@dataclass
class ServiceTiming:
    service: str
    hook: str
    keys: int
    request_bytes: dict[str, int] = field(default_factory=dict)  # size -> bytes
    resources: dict[str, int] = field(default_factory=dict)  # size -> resources in the prefetch
    cards: dict[str, int] = field(default_factory=dict)
    response_bytes: dict[str, int] = field(default_factory=dict)
    p50_ms: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    phases_ms: dict[str, float] = field(default_factory=dict)  # typical, mean per phase
    error: str | None = None


def _evaluator(
    settings: Settings, terminology: Terminology, http: httpx.AsyncClient
) -> HookEvaluator:
    return HookEvaluator(
        catalogue=CATALOGUE,
        settings=settings,
        http=http,
        terminology=terminology,
        metrics=Metrics(),
        clock=lambda: synthetic.NOW,
    )


def _count_resources(request: dict[str, Any]) -> int:
    total = 0
    for value in (request.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            total += len(value.get("entry") or [])
        elif value is not None:
            total += 1
    return total


async def _one_call(evaluator: HookEvaluator, service_id: str, body: bytes) -> tuple[bytes, int]:
    request = CdsRequest.model_validate(json.loads(body))
    evaluation = await evaluator.evaluate(service_id, request)
    return json.dumps(dump(evaluation.response)).encode(), len(evaluation.cards)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def time_services(
    settings: Settings,
    terminology: Terminology,
    sizes: dict[str, tuple[synthetic.PatientData, int]],
    *,
    on_result: Callable[[ServiceTiming], None] | None = None,
) -> list[ServiceTiming]:
    """p50/p99 per service and size; ``sizes`` maps a size name to (patient, iterations)."""

    async def run_all() -> list[ServiceTiming]:
        results = []
        async with httpx.AsyncClient() as http:
            evaluator = _evaluator(settings, terminology, http)
            for service in CATALOGUE.services:
                timing = ServiceTiming(service.id, service.hook, len(service.prefetch))
                try:
                    for size, (data, iterations) in sizes.items():
                        await _time_one(evaluator, service, size, data, iterations, timing)
                    timing.phases_ms = await phase_breakdown(
                        service, sizes["typical"][0], settings, terminology, http, iterations=100
                    )
                except Exception as exc:  # one broken service must not hide the others
                    timing.error = f"{type(exc).__name__}: {exc}"
                results.append(timing)
                if on_result is not None:
                    on_result(timing)
        return results

    async def _time_one(
        evaluator: HookEvaluator,
        service: ServiceDefinition,
        size: str,
        data: synthetic.PatientData,
        iterations: int,
        timing: ServiceTiming,
    ) -> None:
        request = synthetic.build_request(service, data, terminology)
        body = json.dumps(request).encode()
        timing.request_bytes[size] = len(body)
        timing.resources[size] = _count_resources(request)
        warmup = max(5, iterations // 20)
        for _ in range(warmup):
            response, cards = await _one_call(evaluator, service.id, body)
        timing.cards[size] = cards
        timing.response_bytes[size] = len(response)
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            await _one_call(evaluator, service.id, body)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        timing.p50_ms[size] = round(percentile(samples, 50) or 0.0, 3)
        timing.p99_ms[size] = round(percentile(samples, 99) or 0.0, 3)
        timing.iterations[size] = iterations

    result: list[ServiceTiming] = _run(run_all())
    return result


async def phase_breakdown(
    service: ServiceDefinition,
    data: synthetic.PatientData,
    settings: Settings,
    terminology: Terminology,
    http: httpx.AsyncClient,
    *,
    iterations: int,
) -> dict[str, float]:
    """Mean milliseconds per phase, calling the same functions HookEvaluator calls, in order."""
    del http  # every key is prefetched: no FHIR client is needed
    body = json.dumps(synthetic.build_request(service, data, terminology)).encode()
    env = RuleEnvironment(settings=settings, terminology=terminology)
    zone = ZoneInfo(settings.timezone)
    totals = dict.fromkeys(PHASES, 0.0)
    for round_number in range(iterations + 5):
        marks = [time.perf_counter()]
        raw = json.loads(body)
        marks.append(time.perf_counter())
        request = CdsRequest.model_validate(raw)
        marks.append(time.perf_counter())
        outcome = await resolve_prefetch(
            service.prefetch, request.context, request.prefetch, None, timeout_seconds=4.0
        )
        record = build_record(
            hook=request.hook,
            context=request.context,
            templates=service.prefetch,
            outcome=outcome,
            now=synthetic.NOW,
            zone=zone,
        )
        marks.append(time.perf_counter())
        findings = service.rules(record, env)
        marks.append(time.perf_counter())
        cards = to_cards(findings)
        marks.append(time.perf_counter())
        json.dumps(dump(CdsResponse(cards=[c.card for c in cards]))).encode()
        marks.append(time.perf_counter())
        if round_number < 5:  # warm-up
            continue
        for phase, start, end in zip(PHASES, marks, marks[1:], strict=False):
            totals[phase] += (end - start) * 1000
    return {phase: round(total / iterations, 3) for phase, total in totals.items()}


def profile_service(
    service: ServiceDefinition,
    data: synthetic.PatientData,
    settings: Settings,
    terminology: Terminology,
    *,
    iterations: int,
    limit: int = 18,
) -> str:
    """cProfile of ``iterations`` in-process calls: the top functions by cumulative time."""
    body = json.dumps(synthetic.build_request(service, data, terminology)).encode()

    async def run() -> cProfile.Profile:
        async with httpx.AsyncClient() as http:
            evaluator = _evaluator(settings, terminology, http)
            for _ in range(10):
                await _one_call(evaluator, service.id, body)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(iterations):
                await _one_call(evaluator, service.id, body)
            profiler.disable()
            return profiler

    profiler: cProfile.Profile = _run(run())
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(limit)
    out.write("\n")
    stats.sort_stats("tottime").print_stats(12)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    return "\n".join(line for line in lines if line and not line.startswith("   Ordered by"))
