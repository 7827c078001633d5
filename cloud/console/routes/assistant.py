"""The question box page (智能助手, ``/ask``): a question in Chinese, answered from the
analysis of the user's area (cloud/assistant) with the interpretation it used and a
link to the queue filtered the same way. ``/ask?q=…`` is a whole page (a link can be
shared); the form asks ``/ask/answer?q=…`` through htmx and swaps in the answer only.
Asking changes nothing, so both are GETs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from cloud.api.deps import DB, State
from cloud.assistant.answer import Answer, ask
from cloud.console.session import Signed
from cloud.console.templating import render

router = APIRouter()
_Q = Annotated[str, Query(max_length=500)]


def _answer(db: DB, signed: Signed, st: State, q: str) -> Answer | None:
    return ask(db, signed.user, q, st.clock()) if q.strip() else None


@router.get("/ask", response_class=HTMLResponse)
def ask_page(request: Request, db: DB, signed: Signed, st: State, q: _Q = "") -> HTMLResponse:
    """The question box, with the answer to ``q`` if one was asked."""
    return render(
        request, "ask.html", {"q": q, "answer": _answer(db, signed, st, q)}, signed=signed
    )


@router.get("/ask/answer", response_class=HTMLResponse)
def ask_answer(request: Request, db: DB, signed: Signed, st: State, q: _Q = "") -> HTMLResponse:
    """The answer alone, for the form's htmx swap (an empty question is refused too)."""
    answer = ask(db, signed.user, q, st.clock())
    return render(request, "partials/ask_answer.html", {"answer": answer}, signed=signed)
