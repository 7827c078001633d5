"""The question box (智能助手): ``POST /api/assistant/ask`` {"question": "本周西苑小区有几起违停？"}
answers from the analysis of the caller's area (cloud/assistant): the number or list,
the interpretation it used, a link to the filtered queue, what it did not understand."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import DB, State, allowed
from cloud.api.responses import documented
from cloud.assistant.answer import ask
from cloud.db import models as m
from cloud.permissions import Action

router = APIRouter(prefix="/api/assistant", tags=["assistant"])


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=500, description="a question in Chinese")


@router.post("/ask", responses=documented(400, 401, 403, 422))
def ask_question(
    body: Question,
    db: DB,
    user: Annotated[m.User, allowed(Action.ASK_ASSISTANT)],
    st: State,
) -> dict[str, Any]:
    """Answer a question about your area; one not understood is answered ``refused``
    with the words it could not read and examples of what it can."""
    return ask(db, user, body.question, st.clock()).to_json()
