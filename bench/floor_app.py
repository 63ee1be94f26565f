"""The floor: the least a FastAPI CDS endpoint can cost on the same server settings.

    python -m bench.floor_app --port 8100 --response response.json

``POST /cds-services/{service_id}`` reads the request body and returns the bytes of
``--response`` (the service's own answer to the benchmark request, so the same size) as
``application/json``. ``GET /cds-services`` answers ``{"services": []}`` for readiness checks.
It runs under uvicorn exactly as ``fhir-safety serve`` does (``uvicorn.run(app, host, port,
log_config=None)``: one process, uvloop and httptools when installed), so the difference between
the two is our code: validation, rules, cards, logging, metrics and the feedback store.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

__all__ = ["create_floor_app", "main"]


def create_floor_app(response_body: bytes) -> FastAPI:
    app = FastAPI(title="fhir-safety benchmark floor")

    @app.get("/cds-services")
    async def discovery() -> dict[str, list[str]]:
        return {"services": []}

    @app.post("/cds-services/{service_id}")
    async def call_service(request: Request) -> Response:
        await request.body()
        return Response(content=response_body, media_type="application/json")

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response", type=Path, required=True, help="the body to return")
    args = parser.parse_args(argv)
    app = create_floor_app(args.response.read_bytes())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
