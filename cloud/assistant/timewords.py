"""Time expressions of a Chinese question, read against an injected ``now`` (local time,
Asia/Shanghai): 今天, 昨天, 前天, 本周, 上周, 本月, 上月, 最近N天, 3月, 3月5日, and the parts
of a day 夜里 (22:00-06:00) and 凌晨 (00:00-06:00).

A period is ``[start, end)`` in UTC with the label the answer shows; a period that
reaches past ``now`` ends at ``now``. 夜里 of one day is that evening to the next
morning (昨天夜里: yesterday 22:00 to today 06:00); of a longer period it keeps the
night hours of each day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_DAYS = 7
MAX_DAYS = 366
NIGHT = (22, 23, 0, 1, 2, 3, 4, 5)
EARLY = (0, 1, 2, 3, 4, 5)
_CN = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2}
_NUM = r"(\d{1,3}|[零一二三四五六七八九十两]{1,3})"


def number(text: str) -> int | None:
    """ "7" → 7, "七" → 7, "十二" → 12, "二十" → 20, "两" → 2; None if not a number."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        head, _, tail = text.partition("十")
        tens = _CN.get(head, -1) if head else 1
        ones = _CN.get(tail, -1) if tail else 0
        return None if tens < 0 or ones < 0 else tens * 10 + ones
    if len(text) == 1 and text in _CN:
        return _CN[text]
    return None


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` (aware UTC), the label the answer shows, and the local hours of
    each day kept (empty: all)."""

    start: datetime
    end: datetime
    label: str
    hours: tuple[int, ...] = ()
    default: bool = False


@dataclass(frozen=True, slots=True)
class TimeWords:
    """What :func:`find` read: the period (None: none named), the spans it used, and
    time words it could not use (a second period, a date that does not exist)."""

    period: Period | None
    spans: tuple[tuple[int, int], ...]
    problems: tuple[str, ...]


_DAY_PART = re.compile(r"夜里|夜间|晚上|半夜|深夜|夜晚|晚间|凌晨")
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("md", re.compile(_NUM + r"月" + _NUM + r"[日号]")),
    ("recent", re.compile(r"(?:最近|近|过去)" + _NUM + r"[天日]")),
    ("month", re.compile(_NUM + r"月份?")),
    (
        "word",
        re.compile(
            r"今天|今日|今晚|昨天|昨日|昨晚|前天|本周|这周|这个星期|本星期|这星期|"
            r"这礼拜|上周|上个星期|上星期|上礼拜|本月|这个月|上月|上个月"
        ),
    ),
)


def _local(d: date, hh: int = 0) -> datetime:
    return datetime.combine(d, time(hh), tzinfo=SHANGHAI)


def _md(d: date) -> str:
    return f"{d.month}月{d.day}日"


def _base(kind: str, m: re.Match[str], today: date) -> tuple[date, date, str] | str:
    """(first day, last day, label), or a problem."""
    if kind == "md":
        mo, dd = number(m.group(1)), number(m.group(2))
        year = today.year
        try:
            d = date(year, mo or 0, dd or 0)
            if d > today:
                d = date(year - 1, d.month, d.day)
        except ValueError:
            return f"{m.group(0)}（没有这一天）"
        return d, d, _md(d)
    if kind == "recent":
        n = number(m.group(1))
        if n is None or not 1 <= n <= MAX_DAYS:
            return f"{m.group(0)}（1至{MAX_DAYS}天）"
        first = today - timedelta(days=n - 1)
        return first, today, f"最近{n}天（{_md(first)}至今）"
    if kind == "month":
        mo = number(m.group(1))
        if mo is None or not 1 <= mo <= 12:
            return f"{m.group(0)}（没有这个月）"
        year = today.year if mo <= today.month else today.year - 1
        first = date(year, mo, 1)
        last = date(year + mo // 12, mo % 12 + 1, 1) - timedelta(days=1)
        label = f"{mo}月" if year == today.year else f"{year}年{mo}月"
        return first, last, label
    word = m.group(0)
    monday = today - timedelta(days=today.weekday())
    month_first = today.replace(day=1)
    if word in ("今天", "今日", "今晚"):
        return today, today, "今天"
    if word in ("昨天", "昨日", "昨晚"):
        d = today - timedelta(days=1)
        return d, d, f"昨天（{_md(d)}）"
    if word == "前天":
        d = today - timedelta(days=2)
        return d, d, f"前天（{_md(d)}）"
    if word in ("本周", "这周", "这个星期", "本星期", "这星期", "这礼拜"):
        return monday, today, "本周一至今"
    if word in ("上周", "上个星期", "上星期", "上礼拜"):
        first = monday - timedelta(days=7)
        last = monday - timedelta(days=1)
        return first, last, f"上周（{_md(first)}至{_md(last)}）"
    if word in ("本月", "这个月"):
        return month_first, today, "本月1日至今"
    prev_last = month_first - timedelta(days=1)
    return prev_last.replace(day=1), prev_last, f"上月（{prev_last.month}月）"


def find(text: str, now: datetime) -> TimeWords:
    """The period named in ``text`` (None if none), read at ``now`` (aware)."""
    now_local = now.astimezone(SHANGHAI)
    today = now_local.date()
    spans: list[tuple[int, int]] = []
    problems: list[str] = []
    base: tuple[date, date, str] | None = None
    taken = [False] * len(text)
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start() : m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            spans.append(m.span())
            got = _base(kind, m, today)
            if isinstance(got, str):
                problems.append(got)
            elif base is None:
                base = got
            else:
                problems.append(f"{m.group(0)}（只能按一个时间）")
    part: str | None = None
    evening = any(w in text for w in ("今晚", "昨晚"))
    for m in _DAY_PART.finditer(text):
        spans.append(m.span())
        part = "凌晨" if m.group(0) == "凌晨" else "夜里"
    if evening and part is None:
        part = "夜里"
    if base is None and part is None:
        return TimeWords(None, tuple(spans), tuple(problems))
    if base is None:
        # a night alone is the latest one; 凌晨 alone is this morning's
        if part == "夜里":
            d = today if now_local.hour >= 22 else today - timedelta(days=1)
            label = "今天夜里" if d == today else f"昨天夜里（{_md(d)}）"
            period = _night(d, now, label)
        else:
            period = _early(today, now, "今天凌晨")
        return TimeWords(period, tuple(spans), tuple(problems))
    first, last, label = base
    if part is not None and first == last:
        if part == "夜里":
            period = _night(first, now, f"{label}夜里")
        else:
            period = _early(first, now, f"{label}凌晨")
        return TimeWords(period, tuple(spans), tuple(problems))
    start = _local(first).astimezone(UTC)
    end = min(
        _local(last + timedelta(days=1)).astimezone(UTC), max(now, start + timedelta(seconds=1))
    )
    hours: tuple[int, ...] = ()
    if part == "夜里":
        hours, label = NIGHT, f"{label} · 夜里（22:00-06:00）"
    elif part == "凌晨":
        hours, label = EARLY, f"{label} · 凌晨（00:00-06:00）"
    return TimeWords(Period(start, end, label, hours), tuple(spans), tuple(problems))


def _capped(start: datetime, end: datetime, now: datetime) -> datetime:
    return min(end, now) if now > start else end


def _night(d: date, now: datetime, label: str) -> Period:
    start = _local(d, 22).astimezone(UTC)
    end = _local(d + timedelta(days=1), 6).astimezone(UTC)
    return Period(start, _capped(start, end, now), f"{label}（22:00至次日06:00）")


def _early(d: date, now: datetime, label: str) -> Period:
    start = _local(d).astimezone(UTC)
    end = _local(d, 6).astimezone(UTC)
    return Period(start, _capped(start, end, now), f"{label}（00:00-06:00）")


def default_period(now: datetime) -> Period:
    """No time named: the last :data:`DEFAULT_DAYS` local days, today included."""
    today = now.astimezone(SHANGHAI).date()
    first = today - timedelta(days=DEFAULT_DAYS - 1)
    start = _local(first).astimezone(UTC)
    return Period(start, now, f"最近{DEFAULT_DAYS}天（{_md(first)}至今，未说时间）", default=True)
