"""Import 12345 hotline work orders as appeals: a JSON list of objects, or CSV with a
header row, each row one order with these fields (CSV columns of the same names):

==============  ========  ============================================================
field           required  meaning
==============  ========  ============================================================
``order_no``    yes       the hotline's order number: the import is idempotent by it
``community``   yes       community id of the site
``compound``    yes       compound id
``building``    no        building id
``text``        yes       the citizen's words (classified like a resident's text)
``category``    no        a category id, when the hotline's desk chose one
``phone``       no        the citizen's phone (opens the appeal with its ticket)
``received_at`` no        ISO 8601; without a zone, Beijing time; default: now
==============  ========  ============================================================

Rows are numbered from 1 (the CSV header is not a row). Each is stored on its own
(a savepoint each): a bad row is reported by number and reason and the others go in;
an order imported before is skipped, not duplicated. A place outside the importer's area
reads like one that does not exist.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import auth
from cloud.appeals.config import AppealSettings
from cloud.appeals.intake import AppealIn, make
from cloud.db import models as m
from cloud.errors import DomainError, Invalid

BEIJING = ZoneInfo("Asia/Shanghai")
FIELDS = ("order_no", "community", "compound", "building", "text", "category", "phone")
MAX_ROWS = 5000
PREFIX = "12345:"


@dataclass(frozen=True, slots=True)
class Problem:
    row: int
    order_no: str | None
    error: str


@dataclass
class ImportReport:
    created: list[dict[str, Any]] = field(default_factory=list)  # row, order_no, ticket
    skipped: list[dict[str, Any]] = field(default_factory=list)  # row, order_no
    problems: list[Problem] = field(default_factory=list)


def parse(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The rows of a JSON list or a CSV file (by ``content_type``, else by the first
    character); Invalid when neither reads."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the file is not UTF-8 text") from None
    is_json = "json" in content_type or text.lstrip()[:1] == "["
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise Invalid(f"not JSON: {err}") from None
        if not isinstance(data, list):
            raise Invalid("JSON: a list of orders, one object each")
        rows: list[dict[str, Any]] = [r if isinstance(r, dict) else {"_bad": r} for r in data]
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = {"order_no", "compound", "text"} - set(reader.fieldnames or ())
        if missing:
            raise Invalid(f"CSV: the header lacks {', '.join(sorted(missing))}")
        rows = [dict(r) for r in reader]
    if len(rows) > MAX_ROWS:
        raise Invalid(f"at most {MAX_ROWS} orders per import, got {len(rows)}")
    return rows


def _str(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Invalid(f"{name}: required")
        return None
    if not isinstance(value, str | int):
        raise Invalid(f"{name}: text expected, got {type(value).__name__}")
    return str(value).strip()


def _when(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"received_at: {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=BEIJING)
    return when.astimezone(UTC)


def import_orders(
    session: Session,
    user: m.User,
    rows: list[dict[str, Any]],
    *,
    settings: AppealSettings,
    secret: str,
    now: datetime,
) -> ImportReport:
    """Store each row as an appeal (origin ``hotline``); see the module's docstring."""
    report = ImportReport()
    for n, row in enumerate(rows, 1):
        order_no = None
        try:
            if "_bad" in row:
                raise Invalid("an order is an object of fields")
            order_no = _str(row, "order_no", required=True)
            assert order_no is not None
            if len(order_no) > 64:
                raise Invalid("order_no: at most 64 characters")
            external = PREFIX + order_no
            done = session.scalar(select(m.Appeal.ticket).where(m.Appeal.external_id == external))
            if done is not None:
                report.skipped.append({"row": n, "order_no": order_no, "ticket": done})
                continue
            community = _str(row, "community", required=True)
            compound = _str(row, "compound", required=True)
            assert community is not None and compound is not None
            building = _str(row, "building")
            if not auth.in_scope(user, community, compound, building):
                raise Invalid(f"compound: {community}/{compound} does not exist")
            data = AppealIn(
                community=community,
                compound=compound,
                building=building,
                text=_str(row, "text", required=True) or "",
                category=_str(row, "category"),
                phone=_str(row, "phone"),
            )
            when = _when(_str(row, "received_at"), now)
            with session.begin_nested():
                appeal, _ = make(
                    session,
                    data,
                    settings=settings,
                    secret=secret,
                    now=when,
                    origin="hotline",
                    external_id=external,
                    actor=f"import:{user.username}",
                )
            report.created.append({"row": n, "order_no": order_no, "ticket": appeal.ticket})
        except DomainError as err:
            report.problems.append(Problem(n, order_no, str(err)))
    return report
