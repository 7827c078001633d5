"""Residents' appeals over HTTP.

Public (no login; the ticket and its key are the credential):
``POST /api/appeals`` (multipart: fields and up to 3 photos), ``GET /api/appeals/{ticket}``
and ``POST /api/appeals/{ticket}/rating`` with the key from the intake (header
``X-Appeal-Key`` or query ``k``) or the phone it was made with (header
``X-Appeal-Phone``); anything else answers the 404 a missing ticket gets.

Staff (logged in, their area only, like alerts): ``/api/staff/appeals`` list, detail,
``/{id}/{action}`` (accept, answer, close, reassign), ``/import`` (12345 orders), photos.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.api.deps import DB, ApiState, CurrentUser, State, allowed
from cloud.api.params import Offset, RowId
from cloud.api.responses import ACTION, AUTHED, LOOKUP, ErrorOut, documented
from cloud.api.schemas import Page
from cloud.appeals import access, hotline, lifecycle, photos, queries
from cloud.appeals.config import AppealSettings
from cloud.appeals.intake import INTAKE, AppealIn, Taken, Throttled, submit
from cloud.appeals.views import (
    AppealDetail,
    AppealOut,
    AppealPhotoOut,
    AppealTransitionOut,
    ResidentView,
    Submitted,
)
from cloud.db import models as m
from cloud.errors import Invalid
from cloud.permissions import Action

router = APIRouter(prefix="/api/appeals", tags=["appeals"])
staff = APIRouter(prefix="/api/staff/appeals", tags=["appeals"])

Ticket = Annotated[str, Path(max_length=24, description="the ticket shown at intake")]
FIELDS = ("community", "compound", "building", "category", "text", "phone")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    extra = {
        411: "send Content-Length (the size is checked before the body is read)",
        415: "a photo is not a JPEG, PNG or WebP image (by its bytes)",
    }
    out = documented(*(c for c in codes if c not in extra))
    out.update({c: {"model": ErrorOut, "description": extra[c]} for c in codes if c in extra})
    return out


def appeal_settings(request: Request) -> AppealSettings:
    """This app's appeal settings: ``app.state.appeals`` if set (tests), else read from
    the environment once and kept there."""
    cfg = getattr(request.app.state, "appeals", None)
    if not isinstance(cfg, AppealSettings):
        cfg = AppealSettings()
        request.app.state.appeals = cfg
    return cfg


def photo_root(state: ApiState, cfg: AppealSettings) -> FsPath:
    return cfg.photo_root(state.settings.evidence_dir)


def secret_of(state: ApiState) -> str:
    return state.settings.secret_key.get_secret_value()


def receive(
    state: ApiState, cfg: AppealSettings, data: AppealIn, received: list[photos.PhotoIn]
) -> Taken:
    """Store one appeal in its own transaction, photos and all (the console's form and
    the API share it); counted in ``mb_appeals_intake_total``. Raises the domain errors."""
    root = photo_root(state, cfg)
    ticket = None
    try:
        with state.factory() as session:
            taken = submit(
                session,
                data,
                received,
                settings=cfg,
                photo_root=root,
                secret=secret_of(state),
                now=state.clock(),
            )
            ticket = taken.appeal.ticket
            session.commit()
    except Throttled:
        INTAKE.labels("throttled").inc()
        raise
    except photos.PhotoTooLarge:
        INTAKE.labels("too_large").inc()
        raise
    except photos.PhotoWrongType:
        INTAKE.labels("wrong_type").inc()
        raise
    except Invalid:
        INTAKE.labels("invalid").inc()
        raise
    except BaseException:
        if ticket is not None:
            photos.discard(root, ticket)
        INTAKE.labels("failed").inc()
        raise
    INTAKE.labels("stored").inc()
    return taken


def refusal(err: Exception) -> HTTPException:
    """The HTTP answer to an intake's refusal."""
    if isinstance(err, Throttled):
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            err.limited.message,
            headers={"Retry-After": str(err.limited.retry_after_s)},
        )
    if isinstance(err, photos.PhotoTooLarge):
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(err))
    if isinstance(err, photos.PhotoWrongType):
        return HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(err))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))


async def read_form(request: Request, cfg: AppealSettings) -> tuple[AppealIn, list[photos.PhotoIn]]:
    """The intake's fields and photos, the size checked before the body is read."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "send Content-Length")
    if int(length) > cfg.max_body_bytes:
        INTAKE.labels("too_large").inc()
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"an appeal is at most {cfg.max_photos} photos of "
            f"{cfg.max_photo_bytes // 1024} KiB each",
        )
    try:
        form = await request.form(max_files=cfg.max_photos + 10, max_fields=40)
    except StarletteHTTPException as err:
        INTAKE.labels("invalid").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err.detail)) from None
    values: dict[str, str | None] = {}
    for name in FIELDS:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: text expected")
        values[name] = value.strip() if value and value.strip() else None
    place = form.get("place")  # the console's one select: "community/compound"
    if isinstance(place, str) and "/" in place and not values["compound"]:
        values["community"], _, values["compound"] = place.partition("/")
    for name in ("community", "compound", "text"):
        if not values[name]:
            INTAKE.labels("invalid").inc()
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: required")
    files = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
    if len(files) > cfg.max_photos:
        INTAKE.labels("invalid").inc()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"photos: at most {cfg.max_photos} per appeal, got {len(files)}",
        )
    received = [photos.PhotoIn(await f.read(cfg.max_photo_bytes + 1), f.filename) for f in files]
    await form.close()
    data = AppealIn(
        community=values["community"] or "",
        compound=values["compound"] or "",
        building=values["building"],
        category=values["category"],
        text=values["text"] or "",
        phone=values["phone"],
    )
    return data, received


_MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["community", "compound", "text", "phone"],
                    "properties": {
                        "community": {"type": "string"},
                        "compound": {"type": "string"},
                        "building": {"type": "string"},
                        "category": {"type": "string", "description": "your own choice"},
                        "text": {"type": "string", "maxLength": 2000},
                        "phone": {"type": "string"},
                        "photos": {
                            "type": "array",
                            "maxItems": 3,
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=Submitted,
    openapi_extra=_MULTIPART,
    responses=_errors(400, 411, 413, 415, 422, 429),
)
async def submit_appeal(request: Request) -> Submitted:
    """Report a problem (no login): place, text, phone, up to 3 photos (JPEG, PNG or WebP,
    each at most 5 MiB by default). The answer's ``access_key`` opens the appeal with its
    ticket: it is shown this once. A phone may send 5 appeals an hour (429 after)."""
    state: ApiState = request.app.state.api
    cfg = appeal_settings(request)
    data, received = await read_form(request, cfg)
    try:
        taken = await run_in_threadpool(receive, state, cfg, data, received)
    except (Throttled, Invalid) as err:
        raise refusal(err) from None
    appeal, key = taken.appeal, taken.access_key or ""
    return Submitted(
        ticket=appeal.ticket,
        access_key=key,
        link=f"/report/{appeal.ticket}?k={key}",
        status=appeal.status,
        category=appeal.category,
        category_source=appeal.category_source,
        due_at=appeal.due_at,
        photos=len(taken.photos),
    )


def _photo_count(db: DB, appeal: m.Appeal) -> int:
    query = select(func.count()).where(m.AppealPhoto.appeal_id == appeal.id)
    return db.scalar(query) or 0


KeyQuery = Annotated[str | None, Query(alias="k", max_length=64, description="the access key")]
KeyHeader = Annotated[str | None, Header(alias="X-Appeal-Key", max_length=64)]
PhoneHeader = Annotated[str | None, Header(alias="X-Appeal-Phone", max_length=32)]


@router.get("/{ticket}", response_model=ResidentView, responses=documented(404, 422))
def resident_view(
    ticket: Ticket,
    db: DB,
    st: State,
    k: KeyQuery = None,
    key: KeyHeader = None,
    phone: PhoneHeader = None,
) -> ResidentView:
    """Your appeal: its state, the answer, your rating. Needs the key from the intake
    (``X-Appeal-Key`` or ``?k=``) or the phone it was made with (``X-Appeal-Phone``)."""
    appeal = access.for_reporter(db, ticket, key=key or k, phone=phone, secret=secret_of(st))
    return ResidentView.of(appeal, _photo_count(db, appeal))


class RatingIn(BaseModel):
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=500)


@router.post(
    "/{ticket}/rating", response_model=ResidentView, responses=documented(400, 404, 409, 422)
)
def rate_appeal(
    ticket: Ticket,
    body: RatingIn,
    db: DB,
    st: State,
    k: KeyQuery = None,
    key: KeyHeader = None,
    phone: PhoneHeader = None,
) -> ResidentView:
    """Rate the answer, 1-5, once (409 before the answer or a second time)."""
    appeal = access.for_reporter(
        db, ticket, key=key or k, phone=phone, secret=secret_of(st), for_update=True
    )
    access.rate(db, appeal, body.rating, body.comment, now=st.clock())
    return ResidentView.of(appeal, _photo_count(db, appeal))


# --- staff -----------------------------------------------------------------------------


@staff.get("", response_model=Page[AppealOut], responses=documented(*AUTHED))
def list_appeals(
    db: DB,
    user: CurrentUser,
    st: State,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    category: Annotated[list[str] | None, Query()] = None,
    compound: str | None = None,
    building: str | None = None,
    overdue: bool = False,
    escalated: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[AppealOut]:
    """Appeals in your area, newest first; ``overdue``: open ones past their deadline."""
    flt = queries.AppealFilter(
        statuses=tuple(status_ or ()),
        categories=tuple(category or ()),
        compound=compound,
        building=building,
        overdue_at=st.clock() if overdue else None,
        escalated=escalated,
        limit=limit,
        offset=offset,
    )
    total, rows = queries.list_appeals(db, user, flt)
    return Page(
        total=total, limit=limit, offset=offset, items=[AppealOut.model_validate(r) for r in rows]
    )


def _detail(db: DB, appeal: m.Appeal) -> AppealDetail:
    shots = db.scalars(
        select(m.AppealPhoto).where(m.AppealPhoto.appeal_id == appeal.id).order_by(m.AppealPhoto.n)
    )
    return AppealDetail(
        **AppealOut.model_validate(appeal).model_dump(),
        transitions=[AppealTransitionOut.model_validate(t) for t in access.timeline(db, appeal.id)],
        photos=[AppealPhotoOut.model_validate(p) for p in shots],
    )


class ImportOut(BaseModel):
    created: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    problems: list[dict[str, Any]]


MAX_IMPORT = 5 * 1024 * 1024


async def _import_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_IMPORT:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "imports are at most 5 MiB")
    body = await request.body()
    if len(body) > MAX_IMPORT:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "imports are at most 5 MiB")
    return body


@staff.post(
    "/import",
    response_model=ImportOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    responses=documented(*AUTHED, 400, 403, 413),
)
def import_hotline(
    request: Request,
    body: Annotated[bytes, Depends(_import_body)],
    db: DB,
    user: Annotated[m.User, allowed(Action.IMPORT_APPEALS)],
    st: State,
) -> ImportOut:
    """Import 12345 hotline orders (a JSON list, or CSV with a header: order_no,
    community, compound, building, text, category, phone, received_at); idempotent by
    order_no; each bad row is named by its number (from 1) and reason."""
    rows = hotline.parse(body, request.headers.get("content-type", ""))
    report = hotline.import_orders(
        db,
        user,
        rows,
        settings=appeal_settings(request),
        secret=secret_of(st),
        now=st.clock(),
    )
    return ImportOut(
        created=report.created,
        skipped=report.skipped,
        problems=[
            {"row": p.row, "order_no": p.order_no, "error": p.error} for p in report.problems
        ],
    )


@staff.get("/{appeal_id}", response_model=AppealDetail, responses=documented(*LOOKUP))
def get_appeal(appeal_id: RowId, db: DB, user: CurrentUser) -> AppealDetail:
    """One appeal of your area with its log and its photos' details."""
    return _detail(db, access.scoped(db, user, appeal_id))


@staff.get(
    "/{appeal_id}/photos/{n}",
    response_class=FileResponse,
    responses={
        **documented(*LOOKUP),
        200: {"description": "the photo", "content": {"image/jpeg": {}, "image/png": {}}},
    },
)
def get_photo(
    appeal_id: RowId,
    n: Annotated[int, Path(ge=1, le=10)],
    db: DB,
    user: CurrentUser,
    request: Request,
    st: State,
) -> FileResponse:
    """A photo of an appeal of your area, as the type its bytes were checked to be."""
    appeal = access.scoped(db, user, appeal_id)
    shot = db.scalars(
        select(m.AppealPhoto).where(m.AppealPhoto.appeal_id == appeal.id, m.AppealPhoto.n == n)
    ).first()
    if shot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"appeal {appeal_id} has no photo {n}")
    root = photo_root(st, appeal_settings(request))
    return FileResponse(root / shot.path, media_type=shot.content_type, headers=NOSNIFF)


class MoveBody(BaseModel):
    reply: str | None = Field(default=None, max_length=lifecycle.MAX_REPLY)
    party_kind: str | None = Field(
        default=None, description="reassign: department|property|building_leader"
    )
    party_id: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=1000)


@staff.post(
    "/{appeal_id}/{action}",
    response_model=AppealDetail,
    responses=documented(*ACTION),
)
def move_appeal(
    appeal_id: RowId,
    action: Annotated[str, Path(description="accept, answer, close or reassign")],
    body: MoveBody,
    db: DB,
    user: Annotated[m.User, allowed(Action.WORK_ON_APPEALS)],
    st: State,
) -> AppealDetail:
    """accept; answer (``reply`` required: what the resident reads); close (after the
    answer); reassign (``party_kind`` and, for a department, ``party_id``)."""
    access.scoped(db, user, appeal_id)
    appeal = lifecycle.move(
        db,
        appeal_id,
        action,
        lifecycle.MoveIn(body.reply, body.party_kind, body.party_id, body.note),
        actor=user.username,
        now=st.clock(),
    )
    return _detail(db, appeal)
