"""Run every benchmark of issue 11 and write docs/benchmarks.md.

    python -m bench.run            # the full run (about 45 minutes on 2 shared CPUs)
    python -m bench.run --quick    # short runs of everything (about 10-15 minutes)

Phases: (1) in-process evaluation per catalogue service, typical and large patient; (2) HTTP
under open-loop load, the service against the floor app, fixed rates then a step-up; (3) no
prefetch against a local HAPI; (4) the valproate registry over synthetic populations; (5) peak
memory of the service during (2). Then the targets of issue 11 §2, cProfile profiles, and the
report. ``--skip-*`` flags leave a phase out (the report says so); ``--output`` writes the
report elsewhere (e.g. while trying the bench, so docs/benchmarks.md keeps a real run).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import synthetic
from bench.external import load_hapi, profile_registry, run_no_prefetch, run_population
from bench.http_load import run_http_phase
from bench.inprocess import PHASES, profile_service, service_label, time_services
from bench.report import INPROCESS_P50_MS, INPROCESS_P99_MS, evaluate_targets, render
from bench.servers import REPO_ROOT, ServerStartError, start_floor, start_service
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology

__all__ = ["main"]

HTTP_SERVICE = ("long-stay", "patient-view")
FIXED_RATES = (50.0, 100.0, 200.0)
STEP_RATES = (300.0, 400.0, 600.0, 800.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0)
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "pydantic-core",
    "httpx",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    typical_iterations: int
    large_iterations: int
    fixed_seconds: float
    step_seconds: float
    warmup_seconds: float
    no_prefetch_main: int
    no_prefetch_other: int
    population_sizes: tuple[int, ...]
    hapi_population: int


FULL = Plan(2000, 200, 60.0, 15.0, 2.0, 200, 20, (1_000, 10_000, 100_000), 10_000)
QUICK = Plan(200, 20, 10.0, 5.0, 2.0, 50, 10, (1_000, 10_000), 1_000)


def log(message: str) -> None:
    print(message, flush=True)  # noqa: T201


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "n/a"


def _busiest_processes() -> str:
    try:
        listing = subprocess.run(
            ["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    rows = [line.split(None, 1) for line in listing.splitlines()[:6] if line.strip()]
    return ", ".join(f"{name.strip()} {cpu}%" for cpu, name in rows if float(cpu) >= 5.0) or "none"


def machine_info() -> dict[str, Any]:
    cpu_model = "n/a"
    memory = "n/a"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (absent)")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": nproc or os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": memory,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": ", ".join(versions),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs of every phase")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--skip-hapi", action="store_true", help="no HAPI: phase 3 and HAPI registry"
    )
    parser.add_argument("--skip-population", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (and SIGINT, even when started in the background) unwind through the finally
    # blocks, so the service, the floor and HAPI are stopped.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    settings = Settings(feedback_database_url="sqlite:///:memory:")
    terminology = Terminology.load(settings.terminology_dir)
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    results: dict[str, Any] = {
        "command": command + "".join(f" {a}" for a in (argv or sys.argv[1:]) if a != "--quick"),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "load_before": _load_average(),
        "busy_before": _busiest_processes(),
        "iterations": {"typical": plan.typical_iterations, "large": plan.large_iterations},
        "http_seconds": {
            "fixed": plan.fixed_seconds,
            "step": plan.step_seconds,
            "warmup": plan.warmup_seconds,
        },
        "phases": list(PHASES),
        "http_service_label": f"{HTTP_SERVICE[0]} ({HTTP_SERVICE[1]})",
        "load_samples": [],
    }
    log(f"machine: {results['machine']}")
    log(f"load average {results['load_before']}; busiest processes: {results['busy_before']}")
    typical = synthetic.make_patient(terminology, scale=1)
    large = synthetic.make_patient(terminology, scale=10)
    results["patient"] = {"typical": typical.counts(), "large": large.counts()}

    with tempfile.TemporaryDirectory(prefix="fhir-safety-bench-") as tmp:
        workdir = Path(tmp)
        _phase_inprocess(results, settings, terminology, typical, large, plan)
        if not args.skip_http:
            _phase_http(results, workdir, terminology, plan)
        else:
            results["http"] = {"error": "skipped (--skip-http)"}
        _phase_hapi_and_population(results, workdir, terminology, plan, args)
        _phase_profiles(results, settings, terminology, typical)

    results["load_after"] = _load_average()
    results["busy_after"] = _busiest_processes()
    results["wall_minutes"] = round((time.monotonic() - started) / 60, 1)
    results["load_note"] = _load_note(results)
    targets = evaluate_targets(results)
    registry = next(t for t in targets if t.name.startswith("registry"))
    if registry.met is False:
        log("\n6. profile of the registry (target missed)")
        with tempfile.TemporaryDirectory(prefix="fhir-safety-bench-") as tmp:
            results["profiles"][
                "valproate registry, 10,000 patients from NDJSON: missed its target"
            ] = profile_registry(Path(tmp), 10_000)
    results["targets"] = [dataclasses.asdict(t) | {"verdict": t.verdict} for t in targets]
    log("\ntargets:")
    for target in targets:
        log(f"  {target.verdict:14} {target.name}: {target.measured} (goal {target.target})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(results, targets), encoding="utf-8")
    log(f"\nwrote {args.output}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


def _stop(number: int, _: object) -> None:
    raise SystemExit(128 + number)


def _sample_load(results: dict[str, Any], phase: str) -> None:
    results["load_samples"].append(f"{phase}: {_load_average()}")


def _load_note(results: dict[str, Any]) -> str:
    samples = "; ".join(results["load_samples"])
    cores = results["machine"]["nproc"]
    before = float(results["load_before"].split()[0]) if results["load_before"] != "n/a" else 0.0
    shared = (
        f"**Other processes were running on this {cores}-CPU machine during the run** "
        f"(load average {results['load_before']} before it started; busiest processes then: "
        f"{results['busy_before']}; at the end: {results['busy_after']}), e.g. other developers' "
        "test runs, so every figure here includes their interference; a quiet machine would do "
        "better, mostly at the tails (p99) and the highest rates."
        if before >= 0.5
        else f"The machine was quiet before the run (load average {results['load_before']})."
    )
    return f"{shared} Load average at each phase start (our own load included): {samples}."


def _phase_inprocess(
    results: dict[str, Any],
    settings: Settings,
    terminology: Terminology,
    typical: synthetic.PatientData,
    large: synthetic.PatientData,
    plan: Plan,
) -> None:
    log(f"\n1. in-process, {len(CATALOGUE.services)} services")
    _sample_load(results, "in-process")

    def show(timing: Any) -> None:
        if timing.error:
            log(f"  {timing.service:28} {timing.hook:20} ERROR {timing.error}")
            return
        log(
            f"  {timing.service:28} {timing.hook:20} typical p50 {timing.p50_ms['typical']:7.3f} "
            f"p99 {timing.p99_ms['typical']:7.3f} ms | large p50 {timing.p50_ms['large']:8.3f} "
            f"p99 {timing.p99_ms['large']:8.3f} ms | cards {timing.cards['typical']}"
        )

    timings = time_services(
        settings,
        terminology,
        {"typical": (typical, plan.typical_iterations), "large": (large, plan.large_iterations)},
        on_result=show,
    )
    results["inprocess"] = [dataclasses.asdict(t) for t in timings]


def _phase_http(
    results: dict[str, Any], workdir: Path, terminology: Terminology, plan: Plan
) -> None:
    log("\n2. HTTP under load")
    _sample_load(results, "HTTP")
    service_def = CATALOGUE.find(*HTTP_SERVICE)
    # The served app uses the wall clock, so the patient's dates are relative to now.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    data = synthetic.make_patient(terminology, scale=1, now=now)
    body_path = workdir / "request.json"
    body_path.write_bytes(
        json.dumps(synthetic.build_request(service_def, data, terminology)).encode()
    )
    path = f"/cds-services/{service_def.id}"
    service = floor = None
    try:
        service = start_service(workdir)
        with httpx.Client(timeout=10.0) as client:
            answer = client.post(
                service.base_url + path,
                content=body_path.read_bytes(),
                headers={"Content-Type": "application/json"},
            )
        answer.raise_for_status()
        floor = start_floor(workdir, answer.content)
        http = run_http_phase(
            service,
            floor,
            path=path,
            body_path=body_path,
            response_bytes=len(answer.content),
            fixed_rates=FIXED_RATES,
            fixed_seconds=plan.fixed_seconds,
            step_rates=STEP_RATES,
            step_seconds=plan.step_seconds,
            warmup=plan.warmup_seconds,
            log=log,
        )
        results["http"] = dataclasses.asdict(http)
    except (ServerStartError, httpx.HTTPError, OSError, subprocess.SubprocessError) as exc:
        results["http"] = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
        log(f"  HTTP phase failed: {exc}")
    finally:
        for server in (service, floor):
            if server is not None:
                server.stop()


def _phase_hapi_and_population(
    results: dict[str, Any],
    workdir: Path,
    terminology: Terminology,
    plan: Plan,
    args: argparse.Namespace,
) -> None:
    hapi = None
    if args.skip_hapi:
        results["no_prefetch"] = {"error": "skipped (--skip-hapi)"}
    else:
        log("\n3. no prefetch, local HAPI")
        _sample_load(results, "HAPI")
        hapi = _start_hapi(results)
    try:
        if hapi is not None:
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            data = synthetic.make_patient(terminology, scale=1, now=now)
            try:
                load_started = time.monotonic()
                load_hapi(hapi.base_url, data, log)
                results["no_prefetch"]["load_s"] = round(time.monotonic() - load_started, 1)
                results["no_prefetch"]["results"] = run_no_prefetch(
                    hapi.base_url,
                    data,
                    terminology,
                    workdir,
                    main_service=HTTP_SERVICE,
                    main_n=plan.no_prefetch_main,
                    other_n=plan.no_prefetch_other,
                    log=log,
                )
            except (RuntimeError, ServerStartError, httpx.HTTPError, OSError) as exc:
                results["no_prefetch"]["error"] = f"{type(exc).__name__}: {exc}"[:1500]
                log(f"  no-prefetch phase failed: {exc}")
        if args.skip_population:
            results["population"] = {"status": "not measured: skipped (--skip-population)"}
        else:
            log("\n4. population")
            _sample_load(results, "population")
            results["population"] = run_population(
                workdir,
                plan.population_sizes,
                hapi_url=hapi.base_url if hapi is not None else None,
                hapi_patients=plan.hapi_population,
                log=log,
            )
    finally:
        if hapi is not None:
            hapi.stop()


def _start_hapi(results: dict[str, Any]) -> Any:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.hapi_harness import HapiStartError, start_hapi
    except ImportError as exc:
        results["no_prefetch"] = {"error": f"tests/hapi_harness.py cannot be imported: {exc}"}
        return None
    started = time.monotonic()
    try:
        server = start_hapi(None)
    except (HapiStartError, OSError, subprocess.SubprocessError) as exc:
        results["no_prefetch"] = {"error": f"HAPI could not start: {exc}"[:1500]}
        log(f"  HAPI could not start: {exc}")
        return None
    results["no_prefetch"] = {"hapi_start_s": round(time.monotonic() - started, 1)}
    log(f"  HAPI up at {server.base_url} in {results['no_prefetch']['hapi_start_s']} s")
    return server


def _phase_profiles(
    results: dict[str, Any],
    settings: Settings,
    terminology: Terminology,
    typical: synthetic.PatientData,
) -> None:
    log("\n6. profiles")
    timings = [t for t in results["inprocess"] if not t.get("error")]
    wanted: dict[tuple[str, str], str] = {}
    for t in timings:
        if t["p50_ms"]["typical"] > INPROCESS_P50_MS or t["p99_ms"]["typical"] > INPROCESS_P99_MS:
            wanted[(t["service"], t["hook"])] = "missed an in-process target"
    if timings:
        slowest = max(timings, key=lambda t: t["p50_ms"]["typical"])
        wanted.setdefault((slowest["service"], slowest["hook"]), "slowest service")
    wanted.setdefault(HTTP_SERVICE, "the HTTP benchmark's service")
    results["profiles"] = {}
    for (service_id, hook), why in wanted.items():
        service = CATALOGUE.find(service_id, hook)
        text = profile_service(service, typical, settings, terminology, iterations=200)
        results["profiles"][f"{service_label(service)}: {why}"] = text
        log(f"  profiled {service_label(service)} ({why})")


if __name__ == "__main__":
    raise SystemExit(main())
