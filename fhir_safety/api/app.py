"""``create_app(settings)``: the FastAPI application. HTTP only; work is in services."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from fhir_safety import __version__
from fhir_safety.api.app_state import AppState
from fhir_safety.api.errors import install_error_handlers
from fhir_safety.api.routes import (
    discovery,
    feedback,
    hooks,
    hrt_check,
    incidents,
    news2,
    operations,
    registry,
    subscriptions,
    ward,
)
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.concern_form.api import router as concern_form_router
from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import now_utc
from fhir_safety.observability import Metrics
from fhir_safety.services.auth import (
    InMemoryReplayCache,
    JwtVerifier,
    ReplayCache,
    StoreReplayCache,
)
from fhir_safety.services.escalation import register_concern_escalation
from fhir_safety.services.evaluate import HookEvaluator
from fhir_safety.services.feedback_store import FeedbackStore, open_feedback_store
from fhir_safety.services.subscriptions import NotificationReceiver
from fhir_safety.terminology import Terminology

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    terminology: Terminology | None = None,
    clock: Callable[[], datetime] = now_utc,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app; ``clock`` and ``transport`` are seams for tests."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = terminology or Terminology.load(settings.terminology_dir)
        timeout = httpx.Timeout(settings.request_deadline_seconds, connect=2.0)
        async with httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False
        ) as http:
            store = open_feedback_store(settings.feedback_database_url, timezone=settings.timezone)
            try:
                app.state.fhir_safety = _build_state(settings, metrics, http, store, loaded, clock)
                _warn_if_open(settings)
                # Start-up objects (terminology, models) live for the whole process: moving them
                # out of the collector's reach turns ~120 ms full collections (tail latency in
                # docs/benchmarks.md) into near nothing.
                gc.freeze()
                yield
            finally:
                store.close()

    app = FastAPI(
        title="fhir-safety",
        version=__version__,
        description="FHIR-native patient-safety decision support: a CDS Hooks 2.0 service.",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=settings.cors_allow_methods,
        allow_headers=settings.cors_allow_headers,
    )
    install_error_handlers(app)
    for router in (
        discovery.router,
        hooks.router,
        feedback.router,
        subscriptions.router,
        registry.router,
        news2.router,
        hrt_check.router,
        incidents.router,
        concern_form_router,
        operations.router,
        ward.router,  # also the /dashboards pages (fhir_safety/web)
    ):
        app.include_router(router)
    app.state.metrics = metrics
    return app


def _build_state(
    settings: Settings,
    metrics: Metrics,
    http: httpx.AsyncClient,
    store: FeedbackStore,
    terminology: Terminology,
    clock: Callable[[], datetime],
) -> AppState:
    verifier = None
    if settings.authentication_enabled:
        verifier = JwtVerifier(
            settings.issuers,
            http,
            _replay_cache(settings, store, clock),
            clock=clock,
            clock_skew_seconds=settings.jwt_clock_skew_seconds,
            max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
            jwks_min_refresh_seconds=settings.jwks_min_refresh_seconds,
        )
    evaluator = HookEvaluator(
        catalogue=CATALOGUE,
        settings=settings,
        http=http,
        terminology=terminology,
        metrics=metrics,
        clock=clock,
    )
    receiver = NotificationReceiver(settings.subscription_secret)
    if settings.fhir_server_url:
        # Martha's Rule: a worried/worse concern written to the FHIR server becomes an
        # Escalation Task there, whoever wrote it (needs a Subscription, see docs/concern.md).
        register_concern_escalation(
            receiver, _default_fhir_client(settings, http), settings, terminology, clock
        )
    return AppState(
        settings, CATALOGUE, metrics, http, verifier, store, evaluator, clock, receiver, terminology
    )


def _default_fhir_client(settings: Settings, http: httpx.AsyncClient) -> FhirClient:
    assert settings.fhir_server_url is not None
    return FhirClient(
        http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=settings.max_fhir_pages,
    )


def _replay_cache(
    settings: Settings, store: FeedbackStore, clock: Callable[[], datetime]
) -> ReplayCache:
    if settings.jwt_replay_cache == "database":
        return StoreReplayCache(store, clock=clock)
    return InMemoryReplayCache(clock=clock)


def _warn_if_open(settings: Settings) -> None:
    if not settings.authentication_enabled:
        log.warning(
            "NO AUTHENTICATION: no JWT issuer is configured, so any caller that can reach "
            "%s:%s is trusted. Configure FHIR_SAFETY_ISSUERS before real patient data.",
            settings.host,
            settings.port,
        )
