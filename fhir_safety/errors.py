"""The one exception tree of fhir-safety.

Every error the package raises on purpose is a ``FhirSafetyError``. Only
``fhir_safety.api.errors`` turns them into HTTP responses (with an
OperationOutcome body); the CLI turns them into exit codes.

* FhirSafetyError
  x RequestError                 the caller sent something we cannot use (4xx)
  |  x MalformedJsonError          400: body is not JSON
  |  x InvalidRequestError         400: JSON, but not a valid CDS Hooks request
  |  x HookMismatchError           400: hook does not match the service
  |  x ContextError                422: hook context fields missing or wrong
  |  x InvalidResourceError        422: a FHIR resource in the request is invalid
  |  x PayloadTooLargeError        413: body over the configured size
  |  x UnknownServiceError         404: no such CDS service
  x AuthenticationError          401: JWT missing or not acceptable (never detailed)
  x DataUnavailableError         412: data the service requires could not be had
  x FhirError                    talking to a FHIR server went wrong
  |  x FhirUnavailableError        connection refused, timeout, 5xx
  |  x FhirNotFoundError           404 for a read
  |  x FhirResponseError           not JSON, not FHIR, too large, foreign next link
  x TerminologyError             a ValueSet or CodeSystem could not be loaded
  x ConfigurationError           settings that cannot work together
  x StoreError                   the feedback store failed
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ContextError",
    "DataUnavailableError",
    "FhirError",
    "FhirNotFoundError",
    "FhirResponseError",
    "FhirSafetyError",
    "FhirUnavailableError",
    "HookMismatchError",
    "InvalidRequestError",
    "InvalidResourceError",
    "MalformedJsonError",
    "PayloadTooLargeError",
    "RequestError",
    "StoreError",
    "TerminologyError",
    "UnknownServiceError",
]


class FhirSafetyError(Exception):
    """Base of every error raised by fhir-safety on purpose."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A FHIRPath-like pointer into the request ("context.draftOrders"), for OperationOutcome.
        self.location = location


class RequestError(FhirSafetyError):
    """The client sent a request we cannot act on."""


class MalformedJsonError(RequestError):
    """The body is not valid JSON."""


class InvalidRequestError(RequestError):
    """The JSON is not a valid CDS Hooks request or feedback body."""


class HookMismatchError(RequestError):
    """The request's hook is not the hook the service is registered for."""


class ContextError(RequestError):
    """A context field the hook requires is missing or has the wrong shape."""


class InvalidResourceError(RequestError):
    """A FHIR resource in the request (context or prefetch) is not valid R4."""


class PayloadTooLargeError(RequestError):
    """The request body is over the configured limit."""


class UnknownServiceError(RequestError):
    """No CDS service has this id."""


class AuthenticationError(FhirSafetyError):
    """The caller's JWT is missing or unacceptable. The reason is logged, never returned."""


class DataUnavailableError(FhirSafetyError):
    """Data the service needs could be had neither from prefetch nor from the FHIR server."""


class FhirError(FhirSafetyError):
    """A FHIR server interaction failed."""


class FhirUnavailableError(FhirError):
    """The FHIR server refused the connection, timed out or answered 5xx."""


class FhirNotFoundError(FhirError):
    """The FHIR server answered 404 for a read."""


class FhirResponseError(FhirError):
    """The FHIR server answered with something that is not usable FHIR JSON."""


class TerminologyError(FhirSafetyError):
    """A terminology resource could not be loaded or is inconsistent."""


class ConfigurationError(FhirSafetyError):
    """The settings cannot work together."""


class StoreError(FhirSafetyError):
    """The feedback store failed."""
