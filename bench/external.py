"""Benchmarks that need the local HAPI FHIR server or the population tools.

* No prefetch: the service fetches every key from HAPI (``fhirServer`` in the request).
* Population: the valproate registry (``fhir-safety registry valproate``) over synthetic
  populations from ``fhir-safety synth``, from NDJSON and from HAPI.
"""

from __future__ import annotations

import io
import json
import pstats
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import synthetic
from bench.inprocess import service_label
from bench.loadgen import percentile
from bench.servers import REPO_ROOT, start_service
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.terminology import Terminology

__all__ = [
    "load_hapi",
    "population_available",
    "profile_registry",
    "run_no_prefetch",
    "run_population",
]

CLI = [sys.executable, "-m", "fhir_safety.cli"]
FHIR_JSON = "application/fhir+json"
AS_OF = "2026-11-26"
REGISTRY_NOW = "2026-11-26T09:00:00Z"


def _cli(args: Sequence[str], *, timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    finished = subprocess.run(
        [*CLI, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    return time.perf_counter() - started, finished


def load_hapi(base_url: str, data: synthetic.PatientData, log: Callable[[str], None]) -> None:
    """``fhir-safety load`` (profiles, terminology, examples), then the synthetic patient."""
    seconds, finished = _cli(["load", "--fhir-server", base_url], timeout=1200)
    if finished.returncode != 0:
        raise RuntimeError(f"fhir-safety load failed: {finished.stderr[-1500:]}")
    log(f"  fhir-safety load: {seconds:.1f} s")
    bundle = json.dumps(synthetic.transaction_bundle(data)).encode()
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    with httpx.Client(timeout=300.0) as client:
        response = client.post(base_url, content=bundle, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"loading the synthetic patient: HTTP {response.status_code}")


def _cards(response: httpx.Response) -> list[tuple[str, str]]:
    return [(c["indicator"], c["summary"]) for c in response.json().get("cards", [])]


def run_no_prefetch(
    base_url: str,
    data: synthetic.PatientData,
    terminology: Terminology,
    workdir: Path,
    *,
    main_service: tuple[str, str],
    main_n: int,
    other_n: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Sequential requests without prefetch per service; p50/p95 and whether cards match."""
    server = start_service(workdir)
    results = []
    try:
        with httpx.Client(timeout=30.0) as client:
            for service in CATALOGUE.services:
                n = main_n if (service.id, service.hook) == main_service else other_n
                url = f"{server.base_url}/cds-services/{service.id}"
                bare = synthetic.build_request(
                    service, data, terminology, with_prefetch=False, fhir_server=base_url
                )
                full = synthetic.build_request(service, data, terminology)
                entry: dict[str, Any] = {"service": service_label(service), "n": n}
                try:
                    with_prefetch = client.post(url, json=full)
                    for _ in range(5):  # warm both sides (HAPI's JIT, our connection pool)
                        client.post(url, json=bare)
                    samples, errors = [], 0
                    answer = None
                    for _ in range(n):
                        started = time.perf_counter()
                        answer = client.post(url, json=bare)
                        elapsed = (time.perf_counter() - started) * 1000
                        if answer.status_code == 200:
                            samples.append(elapsed)
                        else:
                            errors += 1
                    samples.sort()
                    entry |= {
                        "p50_ms": _r(percentile(samples, 50)),
                        "p95_ms": _r(percentile(samples, 95)),
                        "errors": errors,
                        "last_status": answer.status_code if answer is not None else None,
                        "same_cards": (
                            answer is not None
                            and answer.status_code == 200
                            and with_prefetch.status_code == 200
                            and _cards(answer) == _cards(with_prefetch)
                        ),
                    }
                except httpx.HTTPError as exc:
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                results.append(entry)
                log(f"  {entry}")
    finally:
        server.stop()
    return results


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def population_available() -> str | None:
    """None when the registry and generator exist; else why the population cannot be measured."""
    if not (REPO_ROOT / "fhir_safety" / "services" / "registry.py").is_file():
        return "not measured yet: the registry does not exist"
    _, finished = _cli(["--help"], timeout=120)
    commands = finished.stdout
    if "synth" not in commands or "registry" not in commands:
        return "not measured yet: `fhir-safety synth` or `fhir-safety registry` does not exist"
    return None


def _registry_summary(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / "valproate-registry.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {"on_valproate": data.get("on_valproate"), "cohort": data.get("cohort")}


def run_population(
    workdir: Path,
    sizes: Sequence[int],
    *,
    hapi_url: str | None,
    hapi_patients: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    why_not = population_available()
    if why_not is not None:
        return {"status": why_not}
    rows = []
    for size in sizes:
        folder = workdir / f"synth-{size}"
        out = workdir / f"registry-{size}"
        synth_s, made = _cli(
            [
                "synth",
                "--patients",
                str(size),
                "--seed",
                "11",
                "--out",
                str(folder),
                "--format",
                "ndjson",
                "--as-of",
                AS_OF,
            ],
            timeout=3600,
        )
        if made.returncode != 0:
            rows.append({"patients": size, "error": f"synth failed: {made.stderr[-500:]}"})
            continue
        megabytes = sum(p.stat().st_size for p in folder.glob("*.ndjson")) / 1e6
        seconds, ran = _cli(
            [
                "registry",
                "valproate",
                "--ndjson",
                str(folder),
                "--out",
                str(out),
                "--now",
                REGISTRY_NOW,
            ],
            timeout=3600,
        )
        row: dict[str, Any] = {
            "patients": size,
            "source": "NDJSON",
            "ndjson_mb": round(megabytes, 1),
            "synth_s": round(synth_s, 2),
            "registry_s": round(seconds, 2),
            "us_per_patient": round(seconds / size * 1e6, 1),
            **_registry_summary(out),
        }
        if ran.returncode != 0:
            row["error"] = f"registry failed: {ran.stderr[-500:]}"
        rows.append(row)
        log(f"  {row}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    result: dict[str, Any] = {"status": "measured", "rows": rows}
    if hapi_url is not None:
        result["hapi"] = _population_from_hapi(workdir, hapi_url, hapi_patients, log)
    return result


def _population_from_hapi(
    workdir: Path, hapi_url: str, patients: int, log: Callable[[str], None]
) -> dict[str, Any]:
    folder = workdir / "synth-hapi"
    _, made = _cli(
        [
            "synth",
            "--patients",
            str(patients),
            "--seed",
            "12",
            "--out",
            str(folder),
            "--format",
            "bundles",
            "--as-of",
            AS_OF,
        ],
        timeout=3600,
    )
    if made.returncode != 0:
        return {"patients": patients, "error": f"synth failed: {made.stderr[-500:]}"}
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    started = time.perf_counter()
    with httpx.Client(timeout=600.0) as client:
        for path in sorted(folder.glob("synth-bundle-*.json")):
            response = client.post(hapi_url, content=path.read_bytes(), headers=headers)
            if response.status_code != 200:
                return {
                    "patients": patients,
                    "error": f"HAPI refused {path.name}: {response.text[:300]}",
                }
    load_s = time.perf_counter() - started
    rows = [
        _registry_from_hapi(workdir, hapi_url, patients, method, load_s, log)
        for method in ("search", "export")
    ]
    shutil.rmtree(folder, ignore_errors=True)
    search, export = rows
    return {**search, "export": export}


def _registry_from_hapi(
    workdir: Path,
    hapi_url: str,
    patients: int,
    method: str,
    load_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One `fhir-safety registry valproate --method METHOD` run against the loaded HAPI."""
    out = workdir / f"registry-hapi-{method}"
    seconds, ran = _cli(
        [
            "registry",
            "valproate",
            "--fhir-server",
            hapi_url,
            "--method",
            method,
            "--out",
            str(out),
            "--now",
            REGISTRY_NOW,
        ],
        timeout=3600,
    )
    row: dict[str, Any] = {
        "patients": patients,
        "source": "HAPI, paged search" if method == "search" else "HAPI, Bulk Data $export",
        "hapi_load_s": round(load_s, 1),
        "registry_s": round(seconds, 2),
        "us_per_patient": round(seconds / patients * 1e6, 1),
        **_registry_summary(out),
    }
    if ran.returncode != 0:
        row["error"] = f"registry failed: {ran.stderr[-500:]}"
    log(f"  {row}")
    shutil.rmtree(out, ignore_errors=True)
    return row


def profile_registry(workdir: Path, patients: int, *, limit: int = 25) -> str:
    """cProfile of ``fhir-safety registry valproate --ndjson`` over a fresh population."""
    folder = workdir / "synth-profile"
    out = workdir / "registry-profile"
    stats = workdir / "registry.prof"
    _, made = _cli(
        [
            "synth",
            "--patients",
            str(patients),
            "--seed",
            "11",
            "--out",
            str(folder),
            "--format",
            "ndjson",
            "--as-of",
            AS_OF,
        ],
        timeout=3600,
    )
    if made.returncode != 0:
        return f"synth failed: {made.stderr[-500:]}"
    command = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "fhir_safety.cli"]
    command += ["registry", "valproate", "--ndjson", str(folder), "--out", str(out)]
    command += ["--now", REGISTRY_NOW]
    subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=3600, check=False)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    if not stats.is_file():
        return "the profiled run wrote no statistics"
    text = io.StringIO()
    pstats.Stats(str(stats), stream=text).strip_dirs().sort_stats("cumulative").print_stats(limit)
    lines = [line.rstrip() for line in text.getvalue().splitlines()]
    return "\n".join(line for line in lines if line and not line.startswith("   Ordered by"))
