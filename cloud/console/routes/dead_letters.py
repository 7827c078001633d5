"""Dead letters (死信): every message the ingest refused, newest first, for district
engineers and admins only (a reject may come from a gateway nobody registered, so it
has no place to scope it by) — as ``GET /api/dead-letters``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from cloud.api.deps import DB
from cloud.console.routes.page_errors import lacks, refused
from cloud.console.session import Signed
from cloud.console.templating import render
from cloud.db import models as m
from cloud.permissions import Action

router = APIRouter()
LIMIT = 200
PREVIEW_BYTES = 64


@dataclass(frozen=True)
class Letter:
    row: m.DeadLetter
    size: int
    text: str  # the first bytes as text, unprintables as "·"
    hex: str  # the same bytes in hex


def preview(payload: bytes | None) -> tuple[str, str]:
    """A short look at a payload both ways: junk is often binary, and JSON is text.

    >>> preview(b'{"a":\\x00}')
    ('{"a":·}', '7b 22 61 22 3a 00 7d')
    """
    head = (payload or b"")[:PREVIEW_BYTES]
    text = "".join(chr(b) if 32 <= b < 127 else "·" for b in head)
    return text, head.hex(" ")


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters_page(request: Request, db: DB, signed: Signed) -> HTMLResponse:
    """The newest rejects, with reason, field, gateway, count and a preview."""
    if lacks(signed, Action.READ_DEAD_LETTERS):
        return refused(request, signed)
    rows = db.scalars(select(m.DeadLetter).order_by(m.DeadLetter.pk.desc()).limit(LIMIT))
    letters = [Letter(r, len(r.payload or b""), *preview(r.payload)) for r in rows]
    return render(request, "dead_letters.html", {"letters": letters}, signed=signed)
