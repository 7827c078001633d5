"""模型管理 (``/models``): the registered models and each rollout's state per gateway, for
engineers and admins (the same services and the same views as ``GET /api/models`` and
``GET /api/rollouts``; other roles get the 403 page)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cloud.api.deps import DB
from cloud.console.routes.page_errors import lacks, refused
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.model_registry import rollouts, store
from cloud.model_registry.views import model_out, rollout_out
from cloud.permissions import Action

router = APIRouter()
SHOWN = 50  # the latest rollouts and models, at most this many each


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """Rollouts first (each gateway's state, reason and version), then the models."""
    user = signed.user
    if lacks(signed, Action.MANAGE_MODELS):
        return refused(request, signed)
    rows = store.list_models(db)[:SHOWN]
    context = {
        "rollouts": [rollout_out(db, r, user) for r in rollouts.list_rollouts(db, user, SHOWN)],
        "models": [model_out(db, row, user) for row in rows],
        # the gate's reasons as codes and figures, said in the console's language
        "gates": {row.id: rollouts.gate_findings_of(row) for row in rows},
    }
    return render(request, "models.html", context, signed=signed)
