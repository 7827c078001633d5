"""The FastAPI application: routes, error mapping, /metrics and /healthz."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from sqlalchemy import text

from cloud.api.deps import ApiState
from cloud.api.params import refuse_nul
from cloud.api.responses import documented
from cloud.api.routes import (
    alerts,
    analysis,
    appeals,
    assistant,
    auth,
    devices,
    events,
    evidence,
    fusion,
    governance,
    handovers,
    models,
    reports,
    site,
    stream,
    users,
    work_orders,
)
from cloud.errors import Conflict, DomainError, Forbidden, Invalid, NotFound

_STATUS = {NotFound: 404, Conflict: 409, Forbidden: 403, Invalid: 422}
INVALID = Counter(
    "mb_api_invalid_requests_total",
    "requests answered 422, by route and where the faults were (path, query, "
    "header, body, joined by +; content: a domain check such as a hash)",
    ["route", "where"],
)
# error answers of the routers whose routes do not list their own (see cloud/api/responses.py)
_ROUTER_ERRORS = {
    auth: (400, 401, 422, 429),
    users: (400, 401, 403, 404, 409, 422),
    stream: (401, 422),
}


def _route(request: Request) -> str:
    # the route's template (bounded), never the raw path (an attacker picks that)
    return str(getattr(request.scope.get("route"), "path", "unmatched"))


def create_api(state: ApiState) -> FastAPI:
    """Build the API around ``state`` (settings, session factory, clock, command sender)."""
    # /docs and /redoc from the installed package's copies of Swagger UI and ReDoc, never a
    # CDN: the cloud often runs where the internet is not (and a CDN script runs with the
    # API's origin)
    app: FastAPI = FastAPIOffline(
        title="microbrain cloud",
        version="1",
        description="社区微脑: alerts, escalation, work orders",
        dependencies=[Depends(refuse_nul)],
    )
    app.state.api = state
    for module in (auth, users, alerts, work_orders, site, devices, events, evidence, stream):
        app.include_router(module.router, responses=documented(*_ROUTER_ERRORS.get(module, ())))
    # residents' appeals: public intake and view (the ticket's key), and the staff's desk
    app.include_router(appeals.router)
    app.include_router(appeals.staff)
    # the daily report (日报): JSON, or HTML/PDF downloads (cloud/awareness)
    app.include_router(reports.router)
    # shift handovers (交接班), made at each shift start (cloud/awareness)
    app.include_router(handovers.router)
    # data analysis of the caller's area (cloud/analysis)
    app.include_router(analysis.router)
    # the question box (智能助手), answered from the analysis (cloud/assistant)
    app.include_router(assistant.router)
    # fusion: the alerts linked with an alert, and why (cloud/fusion)
    app.include_router(fusion.router)
    # hotspots as governance items (治理事项): list, one, close (cloud/warning/hotspots)
    app.include_router(governance.router)
    # the model registry and its rollouts to gateways (cloud/model_registry)
    app.include_router(models.router)
    app.include_router(models.rollouts_router)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, err: DomainError) -> JSONResponse:
        code = next((c for t, c in _STATUS.items() if isinstance(err, t)), 400)
        if code == 422:
            INVALID.labels(_route(request), "content").inc()
        return JSONResponse({"detail": str(err)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Response:
        # FastAPI's answer (each refused field named by its location), counted once, by
        # where the faults were ("query", "body+query" …: a small, fixed set)
        where = "+".join(sorted({str(e["loc"][0]) for e in err.errors() if e.get("loc")}))
        INVALID.labels(_route(request), where or "request").inc()
        return await request_validation_exception_handler(request, err)

    @app.get(
        "/healthz", tags=["ops"], responses={503: {"description": "the database does not answer"}}
    )
    def healthz() -> JSONResponse:
        """200 when the database answers; ``ingest_subscribed`` tells whether this
        process's ingest currently receives messages."""
        try:
            with state.read_factory() as s:
                s.execute(text("SELECT 1"))
        except Exception as err:  # noqa: BLE001 - report, do not crash the probe
            return JSONResponse({"ok": False, "database": type(err).__name__}, status_code=503)
        body: dict[str, bool] = {"ok": True}
        if state.ingest_ready is not None:
            body["ingest_subscribed"] = state.ingest_ready()
        return JSONResponse(body)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus metrics of this process."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
