"""FHIR R4 rest-hook Subscriptions: register them on the server, and receive notifications.

Registration is idempotent: the Subscription's id is derived from its criteria
and endpoint, so subscribing twice updates one Subscription. The receiver
checks a shared secret header (HAPI sends the headers given in
``channel.header``) and hands each resource to the handlers registered for its
type; later services (concern escalation) register handlers here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_safety.errors import AuthenticationError, FhirError, FhirUnavailableError
from fhir_safety.fhir.client import FhirClient

__all__ = [
    "SECRET_HEADER",
    "NotificationReceiver",
    "register_subscription",
    "subscription_resource",
]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Fhir-Safety-Secret"
Handler = Callable[[dict[str, Any]], Awaitable[None]]


def subscription_resource(criteria: str, endpoint: str, secret: str) -> dict[str, Any]:
    digest = hashlib.sha256(f"{criteria}\n{endpoint}".encode()).hexdigest()[:16]
    return {
        "resourceType": "Subscription",
        "id": f"fhir-safety-{digest}",
        "status": "requested",
        "reason": "fhir-safety patient-safety checks on new data",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": [f"{SECRET_HEADER}: {secret}"],
        },
    }


async def register_subscription(
    client: FhirClient,
    criteria: str,
    endpoint: str,
    secret: str,
    *,
    wait_seconds: float = 60.0,
    poll_seconds: float = 1.0,
) -> dict[str, Any]:
    """Create or update the Subscription and wait until the server says it is active."""
    resource = subscription_resource(criteria, endpoint, secret)
    await client.put(resource)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        current = await client.read("Subscription", resource["id"])
        status = current.get("status")
        if status == "active":
            return current
        if status == "error":
            raise FhirError(f"Subscription/{resource['id']} is in error: {current.get('error')}")
        if loop.time() >= deadline:
            raise FhirUnavailableError(
                f"Subscription/{resource['id']} still {status!r} after {wait_seconds:.0f} s"
            )
        await asyncio.sleep(poll_seconds)


@dataclass
class NotificationReceiver:
    """Checks the secret and dispatches notified resources to handlers by type."""

    secret: str | None
    handlers: dict[str, list[Handler]] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)

    def add_handler(self, resource_type: str, handler: Handler) -> None:
        self.handlers.setdefault(resource_type, []).append(handler)

    def check_secret(self, presented: str | None) -> None:
        if self.secret is None:
            raise AuthenticationError("subscription receiver has no secret configured")
        if presented is None or not hmac.compare_digest(presented.encode(), self.secret.encode()):
            raise AuthenticationError("subscription notification with a wrong secret")

    async def deliver(self, resource: dict[str, Any] | None) -> None:
        """A notification: a resource (payload set), or None (an empty ping)."""
        kind = str(resource.get("resourceType")) if resource else "ping"
        self.received[kind] += 1
        if resource is None:
            return
        for handler in self.handlers.get(kind, []):
            try:
                await handler(resource)
            except Exception:
                # One failing handler must not stop the others or make HAPI retry forever.
                log.exception("subscription handler failed", extra={"fields": {"type": kind}})
