"""What each reader sees of an appeal: the reporter a view without anyone's contact or
the staff's names, the staff the whole row with its log and photos."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cloud.db import models as m


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ResidentView(_Out):
    """The reporter's own appeal: its state, the answer, the rating."""

    ticket: str
    status: str
    category: str
    compound: str
    building: str | None
    text: str
    created_at: datetime
    due_at: datetime
    reply: str | None
    replied_at: datetime | None
    rating: int | None
    rating_comment: str | None
    photos: int = Field(description="how many photos were sent with it")
    may_rate: bool = Field(description="answered and not rated yet")

    @classmethod
    def of(cls, appeal: m.Appeal, photos: int) -> ResidentView:
        return cls.model_validate(
            {
                **{k: getattr(appeal, k) for k in cls.model_fields if hasattr(appeal, k)},
                "photos": photos,
                "may_rate": appeal.rating is None and appeal.status in ("answered", "closed"),
            }
        )


class AppealOut(_Out):
    """An appeal as the staff of its area see it."""

    id: int
    ticket: str
    origin: str
    external_id: str | None
    community: str
    compound: str
    building: str | None
    category: str
    category_source: str
    matched: list[str]
    text: str
    contact: str | None
    status: str
    responsible_kind: str
    responsible_id: str
    due_at: datetime
    escalated_at: datetime | None
    alert_id: int | None
    reply: str | None
    replied_by: str | None
    replied_at: datetime | None
    rating: int | None
    rating_comment: str | None
    created_at: datetime
    updated_at: datetime


class AppealTransitionOut(_Out):
    action: str
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    note: str | None


class AppealPhotoOut(_Out):
    n: int
    content_type: str
    bytes: int
    sha256: str


class AppealDetail(AppealOut):
    transitions: list[AppealTransitionOut]
    photos: list[AppealPhotoOut]


class Submitted(BaseModel):
    """The answer to an intake: the ticket, and the key that opens it (shown once)."""

    ticket: str
    access_key: str = Field(description="keep it: with the ticket it opens the appeal")
    link: str = Field(description="the private page of this appeal")
    status: str
    category: str
    category_source: str
    due_at: datetime
    photos: int
