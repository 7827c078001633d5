"""Bounded request parameters: a number or a time the database cannot hold answers 422
naming the field, instead of failing in the driver with a 500.

SQLite's INTEGER and PostgreSQL's BIGINT both hold signed 64-bit numbers (a larger
value raises OverflowError in sqlite3 and "bigint out of range" in PostgreSQL, even when
only compared with a 32-bit column). Times go through Python's
``datetime`` into both stores (cloud/db/types.py converts to UTC first), so a time is
storable when it lies in year 1 … 9999 *in UTC*: ``9999-12-31T23:59:59-14:00`` is not.
PostgreSQL's text holds no NUL character, so no string parameter may carry one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Header, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, AwareDatetime

from microbrain.protocol.payloads import INT64_MAX

MAX_DB_INT = INT64_MAX  # BIGINT (PostgreSQL), INTEGER (SQLite)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def storable_time(value: datetime) -> datetime:
    """``value`` in UTC (``2026-01-01T08:00+08:00`` → ``2026-01-01T00:00Z``), or
    ValueError when UTC has no such time for the database to store."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside the times the database stores "
            f"({EARLIEST.isoformat()} … {LATEST.isoformat()}, in UTC)"
        ) from None


# an id in the path: ids start at 1, and are BIGINT
RowId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="the row's id (1 … 2^63-1)")]
# an optional id filter in the query
RowIdFilter = Annotated[int | None, Query(ge=1, le=MAX_DB_INT, description="an id (1 … 2^63-1)")]
Offset = Annotated[int, Query(ge=0, le=MAX_DB_INT, description="rows to skip (0 … 2^63-1)")]
# times are stored in UTC; a time without an offset is ambiguous (comparing it with the
# stored ones failed with a 500): 422 asks for one, e.g. ...Z or +08:00
StoredTime = Annotated[AwareDatetime, AfterValidator(storable_time)]
# the id of the last alert change a stream client saw (sent back by EventSource)
LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=MAX_DB_INT,
        description="resume after this change id (0 … 2^63-1); without it, from now",
    ),
]


def _nul_locations(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nul_locations(key, (*loc, str(key)))
            yield from _nul_locations(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_locations(item, (*loc, index))


async def refuse_nul(request: Request) -> None:
    """422 naming each path, query or JSON-body field that holds a NUL character:
    PostgreSQL's text cannot store one ("cannot contain NUL (0x00) bytes" was a 500),
    and no id, name or note of ours has a use for it. Every route depends on this."""
    found = [
        loc
        for name, value in request.path_params.items()
        for loc in _nul_locations(str(value), ("path", name))
    ]
    route = request.scope.get("route")
    declared = _query_names(route.dependant) if isinstance(route, APIRoute) else set()
    for name, value in request.query_params.multi_items():
        if name in declared:  # others are never read, so never stored
            found += _nul_locations(value, ("query", name))
    if isinstance(route, APIRoute) and route.body_field is not None and _is_json(request):
        try:
            body = await request.json()  # already read and parsed by FastAPI: cached
        except ValueError:
            body = None  # FastAPI answers a body that is not JSON itself
        found += _nul_locations(body, ("body",))
    if found:
        raise RequestValidationError(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": loc,
                    "input": None,
                    "msg": "must not contain NUL (\\x00) characters; remove them",
                }
                for loc in found
            ]
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")
