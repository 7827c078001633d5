"""Console pages: work_board (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
