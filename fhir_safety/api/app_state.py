"""``AppState``: what the routes need, built once per app in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from fhir_safety.cds.catalogue import Catalogue
from fhir_safety.config import Settings
from fhir_safety.observability import Metrics
from fhir_safety.services.auth import JwtVerifier
from fhir_safety.services.evaluate import HookEvaluator
from fhir_safety.services.feedback_store import FeedbackStore
from fhir_safety.services.subscriptions import NotificationReceiver
from fhir_safety.terminology import Terminology

__all__ = ["AppState"]


@dataclass
class AppState:
    """Everything the routes need, built once per app in the lifespan."""

    settings: Settings
    catalogue: Catalogue
    metrics: Metrics
    http: httpx.AsyncClient
    verifier: JwtVerifier | None
    store: FeedbackStore
    evaluator: HookEvaluator
    clock: Callable[[], datetime]
    receiver: NotificationReceiver
    terminology: Terminology
