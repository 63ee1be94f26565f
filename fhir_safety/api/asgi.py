"""``app_factory()``: the app for ``uvicorn --factory``, with settings from the environment.

``fhir-safety serve`` runs one process. To run several worker processes, let uvicorn
build one app per worker::

    uvicorn fhir_safety.api.asgi:app_factory --factory --workers 2 --host 127.0.0.1

Settings come from ``FHIR_SAFETY_*`` variables (and ``FHIR_SAFETY_CONFIG_FILE``, a TOML
file, if set). Workers share state only through the database: set
``FHIR_SAFETY_FEEDBACK_DATABASE_URL`` to a PostgreSQL URL and
``FHIR_SAFETY_JWT_REPLAY_CACHE=database`` so that a token accepted by one worker is
refused by every other (docs/reliability.md).

uvicorn's ``--host`` is the address bound; ``FHIR_SAFETY_HOST`` is what the insecure-bind
check reads, so set both to the same value.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from fhir_safety.api.app import create_app
from fhir_safety.config import load_settings
from fhir_safety.observability import configure_logging

__all__ = ["app_factory"]


def app_factory() -> FastAPI:
    """One app per worker process: settings from the environment, JSON logs."""
    config_file = os.environ.get("FHIR_SAFETY_CONFIG_FILE")
    settings = load_settings(Path(config_file) if config_file else None)
    settings.check_bind()
    configure_logging(settings.log_level)
    return create_app(settings)
