"""Targets (issue 11 §2) and the markdown report ``docs/benchmarks.md``, from one run's results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "evaluate_targets", "render"]

INPROCESS_P50_MS = 5.0
INPROCESS_P99_MS = 20.0
HTTP_RATE = 100.0
HTTP_P99_MS = 50.0
HTTP_P50_RATIO = 3.0
NO_PREFETCH_P95_MS = 300.0
REGISTRY_PATIENTS = 100_000
REGISTRY_SECONDS = 60.0
LINEAR_TOLERANCE = 1.5  # per-patient time at the largest size <= 1.5 x that at 10x fewer


@dataclass
class Target:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


def _fmt(value: float | None, unit: str = " ms") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


def _ratio(ours: float | None, floor: float | None) -> float | None:
    if ours is None or not floor:
        return None
    return round(ours / floor, 2)


def fixed_result(http: dict[str, Any], app: str, rate: float) -> dict[str, Any] | None:
    for result in http.get("fixed", {}).get(app, []):
        if result.get("rate") == rate:
            found: dict[str, Any] = result
            return found
    return None


def evaluate_targets(results: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []
    timings = [t for t in results.get("inprocess", []) if not t.get("error")]
    broken = [t for t in results.get("inprocess", []) if t.get("error")]
    for key, limit, label in (
        ("p50_ms", INPROCESS_P50_MS, "p50"),
        ("p99_ms", INPROCESS_P99_MS, "p99"),
    ):
        if not timings:
            targets.append(Target(f"in-process typical {label}", f"<= {limit:g} ms", "n/a", None))
            continue
        worst = max(timings, key=lambda t: t[key]["typical"])
        over = [
            f"{t['service']} ({t['hook']}; {_largest_phase(t)})"
            for t in timings
            if t[key]["typical"] > limit
        ]
        targets.append(
            Target(
                f"in-process typical {label}, every service",
                f"<= {limit:g} ms",
                f"worst {worst[key]['typical']:g} ms ({worst['service']}, {worst['hook']})",
                not over and not broken,
                ("over: " + ", ".join(over)) if over else "",
            )
        )
    http = results.get("http") or {}
    ours = fixed_result(http, "fhir-safety", HTTP_RATE)
    floor = fixed_result(http, "floor", HTTP_RATE)
    if ours is None or "failed" in ours:
        targets.append(Target("HTTP 100 req/s p99", f"<= {HTTP_P99_MS:g} ms", "n/a", None))
        targets.append(
            Target("HTTP 100 req/s our/floor p50", f"<= {HTTP_P50_RATIO:g}", "n/a", None)
        )
    else:
        errors = sum((ours.get("errors") or {}).values())
        targets.append(
            Target(
                "HTTP 100 req/s p99 (long-stay, typical prefetch)",
                f"<= {HTTP_P99_MS:g} ms",
                f"{ours['p99_ms']} ms, {errors} errors",
                ours["p99_ms"] is not None and ours["p99_ms"] <= HTTP_P99_MS and errors == 0,
            )
        )
        ratio = _ratio(ours.get("p50_ms"), (floor or {}).get("p50_ms"))
        targets.append(
            Target(
                "HTTP 100 req/s our/floor p50 ratio",
                f"<= {HTTP_P50_RATIO:g}",
                f"{ratio} ({ours['p50_ms']} / {(floor or {}).get('p50_ms')} ms)",
                None if ratio is None else ratio <= HTTP_P50_RATIO,
            )
        )
    main = _main_no_prefetch(results)
    if main is None or main.get("p95_ms") is None:
        why = (results.get("no_prefetch") or {}).get("error", "not run")
        targets.append(
            Target(
                "no-prefetch p95 (local HAPI)",
                f"<= {NO_PREFETCH_P95_MS:g} ms",
                "n/a",
                None,
                why[:200],
            )
        )
    else:
        targets.append(
            Target(
                "no-prefetch p95 (long-stay, local HAPI)",
                f"<= {NO_PREFETCH_P95_MS:g} ms",
                f"{main['p95_ms']} ms (p50 {main['p50_ms']} ms, n={main['n']})",
                main["p95_ms"] <= NO_PREFETCH_P95_MS and not main.get("errors"),
            )
        )
    targets.append(_registry_target(results.get("population") or {}))
    return targets


def _largest_phase(timing: dict[str, Any]) -> str:
    phases = timing.get("phases_ms") or {}
    total = sum(phases.values())
    if not total:
        return "no phase split"
    ranked = sorted(phases, key=lambda p: -phases[p])[:2]
    return ", ".join(f"{p} {phases[p] / total:.0%}" for p in ranked)


def _main_no_prefetch(results: dict[str, Any]) -> dict[str, Any] | None:
    no_prefetch = results.get("no_prefetch") or {}
    for row in no_prefetch.get("results", []):
        if row["service"] == results.get("http_service_label"):
            found: dict[str, Any] = row
            return found
    return None


def _registry_target(population: dict[str, Any]) -> Target:
    name = "registry over 100k patients from NDJSON, linear growth"
    goal = f"<= {REGISTRY_SECONDS:g} s"
    rows = [r for r in population.get("rows", []) if not r.get("error")]
    largest = next((r for r in rows if r["patients"] == REGISTRY_PATIENTS), None)
    if largest is None:
        return Target(name, goal, "n/a", None, population.get("status", "not run"))
    tenth = next((r for r in rows if r["patients"] == REGISTRY_PATIENTS // 10), None)
    growth = (
        round(largest["us_per_patient"] / tenth["us_per_patient"], 2) if tenth is not None else None
    )
    linear = growth is None or growth <= LINEAR_TOLERANCE
    return Target(
        name,
        goal,
        f"{largest['registry_s']} s; per-patient time 100k / 10k = {growth}",
        largest["registry_s"] <= REGISTRY_SECONDS and linear,
    )


# -- markdown ---------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render(results: dict[str, Any], targets: Sequence[Target]) -> str:
    machine = results["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Written by `{results['command']}` on {results['generated']} "
        f"(wall time {results['wall_minutes']} min). Do not edit by hand: run the command again.",
        "The method is in `bench/` (module docstrings); issue 11 sets the targets.",
        "",
        "## Machine",
        "",
        *_table(
            ["what", "value"],
            [
                ["CPUs (nproc)", machine["nproc"]],
                ["CPU model", machine["cpu_model"]],
                ["memory", machine["memory"]],
                ["Python", machine["python"]],
                ["OS", machine["platform"]],
                ["packages", machine["packages"]],
                ["load average before the run (1/5/15 min)", results["load_before"]],
                ["load average after the run", results["load_after"]],
            ],
        ),
        "",
        results["load_note"],
        "",
        "## Targets (issue 11 §2)",
        "",
        *_table(
            ["target", "goal", "measured", "verdict", "note"],
            [[t.name, t.target, t.measured, t.verdict, t.note] for t in targets],
        ),
        "",
    ]
    out += _render_inprocess(results)
    out += _render_http(results)
    out += _render_no_prefetch(results)
    out += _render_population(results)
    out += _render_memory(results)
    out += _render_profiles(results)
    return "\n".join(out).rstrip() + "\n"


def _render_inprocess(results: dict[str, Any]) -> list[str]:
    patient = results["patient"]
    iterations = results["iterations"]
    out = [
        "## 1. In-process evaluation, per service",
        "",
        "One call = `json.loads` of the request bytes, `CdsRequest` validation, "
        "`HookEvaluator.evaluate` (context check, prefetch, `build_record`, rules, cards) and the "
        "response serialised to JSON bytes; fixed clock, `Terminology.load`. Each service's "
        "prefetch is built from its own templates (`bench/synthetic.py`): every key present, "
        "filtered as a FHIR server would filter its query.",
        "",
        f"Typical patient ({iterations['typical']} calls per service): "
        + ", ".join(f"{k} {v}" for k, v in patient["typical"].items())
        + ".",
        f"Large patient, 10x ({iterations['large']} calls per service): "
        + ", ".join(f"{k} {v}" for k, v in patient["large"].items())
        + ".",
        "",
    ]
    rows = []
    for t in results["inprocess"]:
        if t.get("error"):
            rows.append(
                [t["service"], t["hook"], t["keys"], "error: " + t["error"][:120]] + [""] * 7
            )
            continue
        rows.append(
            [
                t["service"],
                t["hook"],
                t["keys"],
                f"{t['resources']['typical']} / {t['request_bytes']['typical'] // 1024} KiB",
                t["cards"]["typical"],
                t["p50_ms"]["typical"],
                t["p99_ms"]["typical"],
                f"{t['resources']['large']} / {t['request_bytes']['large'] // 1024} KiB",
                t["p50_ms"]["large"],
                t["p99_ms"]["large"],
                round(t["p50_ms"]["large"] / t["p50_ms"]["typical"], 1)
                if t["p50_ms"]["typical"]
                else "",
            ]
        )
    out += _table(
        [
            "service",
            "hook",
            "keys",
            "typical resources / request",
            "cards",
            "typical p50 ms",
            "typical p99 ms",
            "large resources / request",
            "large p50 ms",
            "large p99 ms",
            "large/typical",
        ],
        rows,
    )
    out += [
        "",
        "Where the time goes (typical patient, mean ms per call, same functions called one by one):",
        "",
    ]
    phase_rows = []
    for t in results["inprocess"]:
        phases = t.get("phases_ms") or {}
        if not phases:
            continue
        total = sum(phases.values()) or 1.0
        top = max(phases, key=lambda p: phases[p])
        phase_rows.append(
            [
                t["service"],
                t["hook"],
                *(phases[p] for p in results["phases"]),
                f"{top} ({phases[top] / total:.0%})",
            ]
        )
    out += _table(["service", "hook", *results["phases"], "largest share"], phase_rows)
    out.append("")
    return out


def _render_http(results: dict[str, Any]) -> list[str]:
    http = results.get("http") or {}
    out = ["## 2. HTTP under load (open loop), the service against the floor", ""]
    if "error" in http:
        return [*out, f"Not measured: {http['error']}", ""]
    out += [
        f"Request: `POST {http['request']}` ({http['request_bytes']} bytes, typical prefetch); "
        f"response {http['response_bytes']} bytes. The service is `python -m fhir_safety.cli serve` "
        "(uvicorn, one process, uvloop + httptools, JSON logs at INFO to a file, SQLite feedback "
        "store recording every card); the floor (`bench/floor_app.py`) is FastAPI on the same "
        "uvicorn settings, reading the body and returning the service's own response bytes. The "
        "load generator (`bench/loadgen.py`, its own process: a minimal asyncio/uvloop HTTP/1.1 "
        "client with up to 128 keep-alive connections; httpx saturated near 100 req/s here) sends "
        "at a fixed rate and times each request from its scheduled send time (no coordinated "
        "omission); 'send lag' is how late the client itself wrote the request, which is inside "
        "the latency. 'server CPU' is the app process's user + system CPU time (all threads, from "
        "/proc) over the run divided by the requests sent: unlike latency, it hardly depends on "
        "what else runs on the machine. The two apps are measured alternately at each rate. "
        f"Fixed rates run {results['http_seconds']['fixed']:g} s each, the step-up "
        f"{results['http_seconds']['step']:g} s each, after {results['http_seconds']['warmup']:g} s "
        "of unmeasured warm-up. All on loopback, on the same machine as the load generator.",
        "",
    ]
    rows = []
    for rate_result in http.get("fixed", {}).get("fhir-safety", []):
        rate = rate_result.get("rate")
        floor = fixed_result(http, "floor", rate) or {}
        for app, result in (("fhir-safety", rate_result), ("floor", floor)):
            rows.append(_load_row(app, result))
        rows.append(
            [
                "**our/floor**",
                rate,
                "",
                f"p50 x{_ratio(rate_result.get('p50_ms'), floor.get('p50_ms'))}",
                "",
                f"p99 x{_ratio(rate_result.get('p99_ms'), floor.get('p99_ms'))}",
                "",
                "",
                "",
                "",
                "CPU x"
                + str(
                    _ratio(
                        rate_result.get("server_cpu_ms_per_request"),
                        floor.get("server_cpu_ms_per_request"),
                    )
                ),
            ]
        )
    header = [
        "app",
        "rate /s",
        "achieved /s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "late sends",
    ]
    out += _table(header, rows)
    out += [
        "",
        "Step-up (each app on its own; a rate not held is tried once more, since a burst from "
        "another process can sink one run on a shared machine; it stops at a rate not held twice):",
        "",
    ]
    step_rows = [
        _load_row(app, result)
        for app in ("fhir-safety", "floor")
        for result in http.get("steps", {}).get(app, [])
    ]
    out += _table(header, step_rows)
    held = http.get("max_held", {})
    ours, floor = held.get("fhir-safety"), held.get("floor")
    out += [
        "",
        f"**Highest rate held** (every request 200, p99 < 100 ms, >= 95% of the rate answered; "
        "from the step-up, or the highest fixed rate held when no step was): "
        f"fhir-safety {_fmt(ours, ' req/s')}, floor {_fmt(floor, ' req/s')}"
        + (f" (our/floor {_ratio(ours, floor)})" if ours and floor else "")
        + ". Only rates on the ladder are tried, so the true ceiling is between the last rate held "
        "and the next. The load generator shares the 2 CPUs with the app under test, so at high "
        "rates the client's own CPU use is part of what limits both apps (see the send lag); the "
        "floor's ceiling is a lower bound on the framework's.",
        "",
    ]
    return out


def _load_row(app: str, result: dict[str, Any]) -> list[Any]:
    if "failed" in result:
        return [app, result.get("rate"), "load generator failed", "", "", "", "", "", "", "", ""]
    errors = result.get("errors") or {}
    return [
        app,
        result.get("rate"),
        result.get("achieved_rate"),
        result.get("p50_ms"),
        result.get("p95_ms"),
        result.get("p99_ms"),
        result.get("max_ms"),
        ", ".join(f"{k}: {v}" for k, v in errors.items()) or 0,
        f"{result.get('send_lag_p50_ms')} / {result.get('send_lag_p99_ms')}",
        result.get("connections"),
        result.get("server_cpu_ms_per_request", "n/a"),
    ]


def _render_no_prefetch(results: dict[str, Any]) -> list[str]:
    no_prefetch = results.get("no_prefetch") or {}
    out = ["## 3. No prefetch: every key fetched from the local HAPI FHIR server", ""]
    if "error" in no_prefetch:
        return [*out, f"Not measured: {no_prefetch['error']}", ""]
    out += [
        "The same typical patient was loaded into a local HAPI FHIR JPA server "
        "(`tests/hapi_harness.start_hapi`, H2 database, `-Xmx1g`) after `fhir-safety load`; "
        "each request carries `fhirServer` and no prefetch, so the service runs every template as "
        "a search (pages followed). Requests are sequential over HTTP to `fhir-safety serve`, "
        "after 5 unmeasured ones. 'same cards' compares the indicators and summaries with the "
        "answer to the prefetched request (order-dispatch differs by design: its dispatched "
        "orders are in its prefetch but the benchmark does not store them on HAPI).",
        "",
        f"HAPI start: {no_prefetch.get('hapi_start_s')} s; loading: {no_prefetch.get('load_s')} s.",
        "",
    ]
    rows = [
        [
            r["service"],
            r["n"],
            r.get("p50_ms", "n/a"),
            r.get("p95_ms", "n/a"),
            r.get("errors", r.get("error", "")),
            r.get("same_cards", ""),
        ]
        for r in no_prefetch.get("results", [])
    ]
    out += _table(["service", "n", "p50 ms", "p95 ms", "errors", "same cards"], rows)
    out.append("")
    return out


def _render_population(results: dict[str, Any]) -> list[str]:
    population = results.get("population") or {}
    out = ["## 4. Population: the valproate registry", ""]
    if population.get("status") != "measured":
        return [*out, population.get("status", "not run"), ""]
    out += [
        "`fhir-safety synth --patients N --seed 11 --format ndjson` writes the population; the "
        "time is the wall time of `fhir-safety registry valproate --ndjson DIR --out OUT` as a "
        "user runs it (Python start-up and terminology loading included, about a second).",
        "",
    ]
    rows = [
        [
            r["patients"],
            r.get("source", ""),
            r.get("ndjson_mb", ""),
            r.get("on_valproate", ""),
            r.get("cohort", ""),
            r.get("registry_s", ""),
            r.get("us_per_patient", ""),
            r.get("synth_s", ""),
            r.get("error", ""),
        ]
        for r in population.get("rows", [])
    ]
    hapi = population.get("hapi")
    for row in [hapi, (hapi or {}).get("export")]:
        if row:
            rows.append(
                [
                    row["patients"],
                    row.get("source", "HAPI"),
                    f"(loaded in {row.get('hapi_load_s')} s)",
                    row.get("on_valproate", ""),
                    row.get("cohort", ""),
                    row.get("registry_s", ""),
                    row.get("us_per_patient", ""),
                    "",
                    row.get("error", ""),
                ]
            )
    out += _table(
        [
            "patients",
            "source",
            "NDJSON MB",
            "on valproate",
            "cohort",
            "registry s",
            "us per patient",
            "synth s",
            "error",
        ],
        rows,
    )
    if hapi:
        out += [
            "",
            "From HAPI by paged search the registry searches active MedicationRequests, then reads "
            "each valproate patient's Patient, Flags, Conditions, Procedures and ARAF Observations "
            "(8 at a time). By Bulk Data `$export` it asks HAPI for one system-level export of the "
            "same resource types (ARAF Observations only, by `_typeFilter`), polls until it is "
            "ready, downloads the NDJSON and reads it as `--ndjson` does (`--method export`). The "
            "HAPI server also holds the example data and the benchmark patient.",
            "",
            "On this HAPI server (H2, one JVM) the export is the slower way: HAPI runs it as a "
            "batch job (our build advances jobs on a 5 s maintenance pass) that writes every Patient, "
            "Condition, Procedure, Flag and MedicationRequest on the server to Binary files, "
            "while the paged search reads only the valproate patients' records. The export makes "
            "about twenty HTTP requests (kick-off, status polls, one download per file, DELETE) "
            "where the search makes one per page, a Patient read per valproate patient and four "
            "searches per patient in the cohort: that is what counts on an EHR's rate-limited FHIR "
            "server. Where "
            'the search is faster, set `bulk_export.registry_method = "search"`.',
        ]
        if hapi.get("remeasured"):
            out += ["", str(hapi["remeasured"])]
    out.append("")
    return out


def _render_memory(results: dict[str, Any]) -> list[str]:
    http = results.get("http") or {}
    before, after = http.get("memory_before") or {}, http.get("memory_after") or {}
    out = ["## 5. Memory", ""]
    if not after:
        return [*out, "Not measured (the HTTP phase did not run).", ""]
    return [
        *out,
        f"The service process (`fhir-safety serve`): resident {before.get('VmRSS', 0) / 1024:.0f} "
        f"MiB after start-up and warm-up; **peak resident (VmHWM) {after.get('VmHWM', 0) / 1024:.0f} "
        f"MiB** after every load phase (resident at the end {after.get('VmRSS', 0) / 1024:.0f} MiB).",
        "",
    ]


def _render_profiles(results: dict[str, Any]) -> list[str]:
    profiles = results.get("profiles") or {}
    out = ["## 6. Profiles", ""]
    if not profiles:
        return [*out, "None taken.", ""]
    out += [
        "cProfile of in-process calls (the section 1 path, typical patient) for each service "
        "that missed an in-process target, the slowest service and the HTTP benchmark's service. "
        "cProfile adds overhead to every Python call, so read the shares, not the absolute times. "
        "The phase table in section 1 gives the same split without a profiler.",
        "",
    ]
    for label, text in profiles.items():
        out += [f"### {label}", "", "```", text, "```", ""]
    return out
