"""The FastAPI application: routes, error mapping, /metrics and /healthz."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from cloud.api.deps import ApiState
from cloud.api.routes import (
    alerts,
    auth,
    devices,
    events,
    evidence,
    site,
    stream,
    users,
    work_orders,
)
from cloud.errors import Conflict, DomainError, Forbidden, Invalid, NotFound

_STATUS = {NotFound: 404, Conflict: 409, Forbidden: 403, Invalid: 422}


def create_api(state: ApiState) -> FastAPI:
    """Build the API around ``state`` (settings, session factory, clock, command sender)."""
    app = FastAPI(title="microbrain cloud", version="1", description="社区微脑: alerts, escalation, work orders")
    app.state.api = state
    for module in (auth, users, alerts, work_orders, site, devices, events, evidence, stream):
        app.include_router(module.router)

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, err: DomainError) -> JSONResponse:
        code = next((c for t, c in _STATUS.items() if isinstance(err, t)), 400)
        return JSONResponse({"detail": str(err)}, status_code=code)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """200 when the database answers; ``ingest_subscribed`` tells whether this
        process's ingest currently receives messages."""
        try:
            with state.factory() as s:
                s.execute(text("SELECT 1"))
        except Exception as err:  # noqa: BLE001 - report, do not crash the probe
            return JSONResponse({"ok": False, "database": type(err).__name__}, status_code=503)
        body: dict = {"ok": True}
        if state.ingest_ready is not None:
            body["ingest_subscribed"] = state.ingest_ready()
        return JSONResponse(body)

    @app.get("/metrics", tags=["ops"])
    def metrics() -> PlainTextResponse:
        """Prometheus metrics of this process."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
