"""Take in an appeal: check the place, count it against the contact's limit, classify,
route, give it a deadline, link it to a matching alert, keep its photos.

The classifier (jieba's dictionary, about a second to load) is made once per process,
lazily, on the first appeal (:func:`classifier`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.appeals import linking, photos, routing, throttle, tokens
from cloud.appeals.categories import AppealCategories, load_categories
from cloud.appeals.classify import AppealClassifier, Classification
from cloud.appeals.config import AppealSettings
from cloud.appeals.lifecycle import AppealStatus, log
from cloud.db import models as m
from cloud.errors import Invalid

INTAKE = Counter(
    "mb_appeals_intake_total",
    "appeals received, by outcome (stored, throttled, invalid, too_large, wrong_type)",
    ["outcome"],
)

_lock = threading.Lock()
_loaded: list[tuple[AppealCategories, AppealClassifier]] = []


def classifier() -> tuple[AppealCategories, AppealClassifier]:
    """The shipped categories and their classifier, made once per process."""
    if not _loaded:
        with _lock:
            if not _loaded:
                categories = load_categories()
                _loaded.append((categories, AppealClassifier(categories)))
    return _loaded[0]


class Throttled(Exception):
    """The contact has used up its appeals for now (the API answers 429)."""

    def __init__(self, limited: throttle.Limited) -> None:
        super().__init__(limited.message)
        self.limited = limited


@dataclass(frozen=True, slots=True)
class AppealIn:
    """What a resident (or the hotline) reports."""

    community: str
    compound: str
    text: str
    building: str | None = None
    category: str | None = None  # the resident's own choice; None: from the text
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Taken:
    """A stored appeal and the key that opens it (shown once; None for an import)."""

    appeal: m.Appeal
    access_key: str | None
    photos: list[str] = field(default_factory=list)


def find_place(
    session: Session, community: str, compound: str, building: str | None
) -> m.Building | None:
    """The building (None when none is named), or Invalid naming what does not exist."""
    found = session.scalar(
        select(m.Compound.pk).where(m.Compound.community == community, m.Compound.id == compound)
    )
    if found is None:
        raise Invalid(f"compound: {community}/{compound} does not exist")
    if building is None:
        return None
    row = session.scalars(
        select(m.Building).where(
            m.Building.community == community,
            m.Building.compound == compound,
            m.Building.id == building,
        )
    ).one_or_none()
    if row is None:
        raise Invalid(f"building: {building} is not a building of {community}/{compound}")
    return row


def classify(text: str, chosen: str | None) -> tuple[Classification, str | None]:
    """The category (the resident's choice wins) and its department hint."""
    categories, model = classifier()
    try:
        result = model.classify(text, chosen or None)
    except ValueError:
        raise Invalid(f"category: {chosen!r} is not one of {', '.join(model.ids)}") from None
    hint = next(c.department for c in categories.categories if c.id == result.category)
    return result, hint


def _text(value: str, settings: AppealSettings) -> str:
    text = value.strip()
    if not text:
        raise Invalid("text: say what the problem is")
    if len(text) > settings.max_text_chars:
        raise Invalid(f"text: at most {settings.max_text_chars} characters, got {len(text)}")
    return text


def make(
    session: Session,
    data: AppealIn,
    *,
    settings: AppealSettings,
    secret: str,
    now: datetime,
    origin: str = "resident",
    external_id: str | None = None,
    actor: str = "resident",
) -> tuple[m.Appeal, str | None]:
    """The appeal row, flushed and logged (no photos, no rate limit: :func:`submit`'s and
    the import's business). Returns it with its access key (residents' appeals only)."""
    text = _text(data.text, settings)
    phone = tokens.normalise_phone(data.phone) if data.phone else None
    building = find_place(session, data.community, data.compound, data.building)
    result, hint = classify(text, data.category)
    party = routing.route(session, result.category, hint, compound=data.compound, building=building)
    key = tokens.new_access_key() if origin == "resident" else None
    appeal = m.Appeal(
        ticket=tokens.new_ticket(now),
        access_sha256=tokens.digest(key) if key else None,
        origin=origin,
        external_id=external_id,
        community=data.community,
        compound=data.compound,
        building=data.building,
        category=result.category,
        category_source=result.source,
        matched=list(result.matched),
        text=text,
        contact=phone,
        contact_sha256=tokens.contact_key(secret, phone) if phone else None,
        status=AppealStatus.SUBMITTED,
        responsible_kind=party.kind,
        responsible_id=party.id,
        due_at=now + settings.deadline(result.category),
        alert_id=linking.matching_alert(
            session,
            result.category,
            community=data.community,
            compound=data.compound,
            building=data.building,
        ),
        created_at=now,
        updated_at=now,
    )
    session.add(appeal)
    session.flush()
    note = f"{result.category} ({result.source}); to {party.kind} {party.id}"
    if appeal.alert_id is not None:
        note += f"; linked to alert {appeal.alert_id}"
    log(session, appeal, "submit", None, actor=actor, now=now, note=note)
    return appeal, key


def submit(
    session: Session,
    data: AppealIn,
    received: list[photos.PhotoIn],
    *,
    settings: AppealSettings,
    photo_root: Path,
    secret: str,
    now: datetime,
) -> Taken:
    """A resident's appeal, whole: checks (text, phone, place, photos), then the
    contact's rate limit (Throttled), then the row and its photos. The caller commits;
    if that fails it calls :func:`photos.discard` with the ticket."""
    if not data.phone:
        raise Invalid("phone: a contact phone is required (the answer may need a call)")
    phone = tokens.normalise_phone(data.phone)
    _text(data.text, settings)
    find_place(session, data.community, data.compound, data.building)
    checked = photos.check(received, settings)
    limited = throttle.take(
        session,
        tokens.contact_key(secret, phone),
        limit=settings.max_per_contact,
        window_s=settings.contact_window_s,
        now=now,
    )
    if limited is not None:
        raise Throttled(limited)
    appeal, key = make(session, data, settings=settings, secret=secret, now=now)
    try:
        paths = photos.store(photo_root, appeal.ticket, checked)
        for photo, path in zip(checked, paths, strict=True):
            session.add(
                m.AppealPhoto(
                    appeal_id=appeal.id,
                    n=photo.n,
                    sha256=photo.sha256,
                    content_type=photo.content_type,
                    bytes=len(photo.data),
                    path=path,
                )
            )
        session.flush()
    except BaseException:
        photos.discard(photo_root, appeal.ticket)
        raise
    return Taken(appeal, key, paths)
