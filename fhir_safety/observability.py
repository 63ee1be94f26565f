"""Prometheus metrics and JSON logs.

Metrics live in a registry per app, so tests can build several apps. Logs are
JSON lines; at INFO they carry the hookInstance, service and timings, never
patient data, access tokens or JWTs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["JsonFormatter", "Metrics", "configure_logging"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "fhir_safety_hook_seconds",
            "Time to answer a CDS Hooks call, by service and outcome",
            ["service", "hook", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cards = Counter(
            "fhir_safety_cards",
            "Cards returned, by service, rule and indicator",
            ["service", "rule", "indicator"],
            registry=self.registry,
        )
        self.prefetch = Counter(
            "fhir_safety_prefetch",
            "Prefetch keys by where the data came from (prefetch, fhir-server, none) or failed",
            ["service", "key", "outcome"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "fhir_safety_subscription_notifications",
            "FHIR Subscription notifications received, by resource type",
            ["resource_type"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "fhir_safety_feedback",
            "Feedback entries received, by service and outcome",
            ["service", "outcome"],
            registry=self.registry,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full request URLs at INFO, which can carry patient ids in queries.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # uvicorn's access lines carry the raw path and query (/fhir-safety/Patient/<id>/$news2,
    # /subscriptions/notify/Patient/<id>): off. Our own lines name the route template instead.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
