"""The error answers of the API, documented once: every route names the codes it may
give with ``responses=documented(401, 404, 422)``, so /openapi.json lists each one (a
client, or schemathesis, sees no undocumented status)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    """One refused field of a request (FastAPI's validation error)."""

    loc: list[str | int] = Field(description="where: path, query, header or body, then the field")
    msg: str = Field(description="what is wrong and what would be accepted")
    type: str


class ErrorOut(BaseModel):
    """Every error's body: ``detail`` says what was wrong and how to fix it; a request
    that fails validation gets one entry per refused field."""

    detail: str | list[FieldError]


_WHY: dict[int, str] = {
    400: "the body could not be read (not the declared encoding)",
    401: "not authenticated, or the token/credentials are unknown, revoked or expired",
    403: "your role may not do this",
    404: "no such thing in your area (one that exists elsewhere reads the same)",
    409: "the thing is not in a state that allows this",
    413: "the body is larger than allowed",
    422: "a field is invalid (out of range, wrong type, not matching); the detail names it",
    429: "too many attempts; retry after the seconds in Retry-After",
    503: "a part this needs (database, broker) is not reachable",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, each with the ``ErrorOut`` body."""
    unknown = set(codes) - _WHY.keys()
    if unknown:
        raise ValueError(f"no description for status {sorted(unknown)}; add it to _WHY")
    return {code: {"model": ErrorOut, "description": _WHY[code]} for code in codes}


# what nearly every authenticated route may answer (who are you; a field out of range)
AUTHED = (401, 422)
# and one that names a row by id
LOOKUP = (*AUTHED, 404)
# and one that changes it, as some roles only
ACTION = (*LOOKUP, 400, 403, 409)
