"""The patient and family concern form (Martha's Rule, issue #7 item 4).

A small public web form, reached only through a ward link that staff hand out, asks "How is
[first name] today: better, the same or worse? Are you worried about them?" and writes the
answer to the FHIR server as a ``patient-concern`` Observation.

* ``signing``: ward links (per patient and ward, time-limited, HMAC-signed) and per-render
  form tokens (CSRF, single use). Pure.
* ``limits``: the per-link rate limit and the single-use ledger of form tokens. No I/O.
* ``links``: issue a link for the CLI (``fhir-safety concern-link``) and the staff endpoint.
* ``api/``: the FastAPI router (HTML pages, the staff endpoint), templates and CSS.

The FHIR reads and writes are in ``fhir_safety.services.concern_submission``.
Guide for staff and IT: docs/concern-form.md.
"""
