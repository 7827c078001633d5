"""Read a Chinese question into what to ask the analysis: ``parse(question, vocabulary,
now) -> Interpretation | Refusal``. Deterministic and offline: regular expressions for
times and question forms, then jieba (its own tokenizer, with every place alias and
topic word added whole) for the rest; every word is either understood or reported.

Question forms: how many (几起, 多少), which place most (哪个小区 / 哪栋楼 … 最多),
whether any (有没有, 是否), a sensor's state (…压力怎么样). A question with neither a
topic nor a place nor a question form, or with words not understood and nothing else, is
refused, naming the words.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import jieba

from cloud.assistant import timewords
from cloud.assistant.config import Topic, normalise
from cloud.assistant.vocabulary import PlaceEntry, Vocabulary

logging.getLogger("jieba").setLevel(logging.WARNING)

Intent = Literal["count", "which", "whether", "sensor"]
MAX_QUESTION = 200
_WORD_FREQ = 2_000_000  # above jieba's largest entries: an added word is always cut whole

_WHICH = re.compile(r"哪(?:个|一个|些|几个|一)?(小区|社区|栋楼|号楼|楼栋|栋|幢|座|楼|里|儿|家)")
_WHICH_LEVEL = {"小区": "compound", "社区": "community", "家": "compound", "里": "compound",
                "儿": "compound"}  # fmt: skip
_MOST = re.compile(r"最多|最频繁|最高|排第一|最严重")
_WHETHER = re.compile(r"有没有|有无|是否有?|有过吗|有吗")
_COUNT = re.compile(r"(?:几|多少)(?:起|次|个|件|宗|条|回)?|数量|总数")
_SENSOR = re.compile(
    r"怎么样|怎样|如何|正常吗|正不正常|什么情况|啥情况|情况|状态|读数|数值|压力|是多少"
)
_STOP = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "嘛",
        "么",
        "有",
        "是",
        "在",
        "里",
        "内",
        "中",
        "上",
        "下",
        "和",
        "与",
        "及",
        "跟",
        "或",
        "还",
        "都",
        "也",
        "就",
        "那",
        "这",
        "该",
        "各",
        "请问",
        "请",
        "帮",
        "帮我",
        "查",
        "查查",
        "查一下",
        "看看",
        "看",
        "一下",
        "我",
        "我们",
        "想",
        "知道",
        "告诉",
        "共",
        "一共",
        "总共",
        "总计",
        "发生",
        "出现",
        "过",
        "告警",
        "报警",
        "事件",
        "问题",
        "事",
        "情况",
        "最",
        "多",
        "现在",
        "目前",
        "当前",
        "起",
        "次",
        "个",
        "件",
        "宗",
        "条",
        "回",
        "里面",
        "期间",
        "时候",
        "时",
        "那边",
        "这边",
        "一次",
        "小区",
        "社区",
        "楼",
        "栋",
        "情形",
        "记录",
        "统计",
        "所有",
        "全部",
        "辖区",
        "全",
        "哦",
        "嗯",
        "哪",
        "哪个",
        "哪些",
        "哪里",
    ]
)
PLACE_SUFFIXES = (
    "小区",
    "花园",
    "家园",
    "社区",
    "公寓",
    "新村",
    "大厦",
    "广场",
    "号楼",
    "栋",
    "幢",
    "苑",
)
_JUNK = re.compile(r"^[\s\W_]+$")


@dataclass(frozen=True, slots=True)
class Interpretation:
    """What the question asks: the form, the places (any of them; empty: the user's
    whole area), the topic (None: every kind), the period, the level ranked by a
    "which" question, and the words that were not understood (answered anyway)."""

    question: str
    intent: Intent
    places: tuple[PlaceEntry, ...]
    topic: Topic | None
    period: timewords.Period
    rank_level: str = "compound"
    not_understood: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A question not answered: why, in Chinese, and the words not understood."""

    question: str
    reason: str
    not_understood: tuple[str, ...] = ()


class _Cutter:
    """One jieba tokenizer per process (its dictionary takes about a second to load);
    words are added as vocabularies bring them, under a lock (jieba's add_word is not
    safe beside a cut)."""

    def __init__(self) -> None:
        self._tokenizer: jieba.Tokenizer | None = None
        self._added: set[str] = set()
        self._lock = threading.Lock()

    def cut(self, text: str, added: list[str]) -> list[str]:
        with self._lock:
            if self._tokenizer is None:
                fresh = jieba.Tokenizer()
                fresh.initialize()
                self._tokenizer = fresh
            for word in added:
                if word not in self._added:
                    self._tokenizer.add_word(word, freq=_WORD_FREQ)
                    self._added.add(word)
            words: list[str] = self._tokenizer.lcut(text, HMM=False)
            return words


CUTTER = _Cutter()


def warm_up() -> None:
    """Load jieba now rather than on the first question."""
    CUTTER.cut("预热", [])


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for a, b in spans:
        for i in range(a, b):
            chars[i] = " "
    return "".join(chars)


def _narrow(entries: list[PlaceEntry]) -> tuple[tuple[PlaceEntry, ...], str | None]:
    """The places named: the deepest level named, inside the higher ones named (西苑小区
    3号楼 is one building); a problem when nothing is left."""
    by_level: dict[str, list[PlaceEntry]] = {}
    for e in entries:
        by_level.setdefault(e.level, [])
        if e not in by_level[e.level]:
            by_level[e.level].append(e)
    chosen: list[PlaceEntry] = []
    for level in ("community", "compound", "building"):
        if level not in by_level:
            continue
        here = by_level[level]
        if chosen:
            inside = [
                e
                for e in here
                if any(
                    e.place.community == c.place.community
                    and (c.place.compound is None or e.place.compound == c.place.compound)
                    for c in chosen
                )
            ]
            if not inside:
                names = "、".join(c.name for c in chosen)
                return (), f"{names}没有{here[0].name.split()[-1]}"
            here = inside
        chosen = here
    return tuple(chosen), None


def parse(question: str, vocabulary: Vocabulary, now: datetime) -> Interpretation | Refusal:
    """Read ``question`` with ``vocabulary`` (the user's places and the topics) at
    ``now`` (aware; "today" is its local day)."""
    raw = question
    text = normalise(question).strip()
    if not text:
        return Refusal(raw, "请输入一个问题，例如：本周有几起违停？")
    if len(text) > MAX_QUESTION:
        return Refusal(raw, f"问题太长了（最多{MAX_QUESTION}个字），请简短地问一件事。")
    times = timewords.find(text, now)
    spans = list(times.spans)
    intent: Intent | None = None
    rank_level = "compound"
    which = _WHICH.search(text)
    if which:  # 哪个小区…最多, or 哪个小区有…: both rank the places
        intent = "which"
        rank_level = _WHICH_LEVEL.get(which.group(1), "building")
        spans += [which.span(), *(m.span() for m in _MOST.finditer(text))]
    sensor_words = [m.span() for m in _SENSOR.finditer(text)]
    whether = [m.span() for m in _WHETHER.finditer(text)]
    count = [m.span() for m in _COUNT.finditer(text)]
    if intent is None and whether:
        intent = "whether"
    if intent is None and count:
        intent = "count"
    spans += whether + count + sensor_words
    words = CUTTER.cut(_blank(text, spans), vocabulary.words())
    places: list[PlaceEntry] = []
    topic: Topic | None = None
    unknown: list[str] = []
    pending = ""  # consecutive words not understood, reported as one
    for word in words:
        key = word.strip()
        known = True
        if pending and key.endswith(PLACE_SUFFIXES) and key not in vocabulary.places:
            pending += key  # 9 + 号楼, 北苑 + 小区: one name the area does not have
            continue
        if not key or _JUNK.match(key) or key in _STOP:
            pass
        elif key in vocabulary.places:
            places += vocabulary.places[key]
        elif key in vocabulary.topics:
            found = vocabulary.topics[key]
            if topic is not None and found.id != topic.id:
                unknown.append(f"{key}（只能按一类问题）")
            topic = topic or found
        else:
            known = False
            pending += key
        if known and pending:
            unknown.append(pending)
            pending = ""
    if pending:
        unknown.append(pending)
    if times.problems:
        return Refusal(raw, f"没有听懂时间：{'、'.join(times.problems)}。", tuple(times.problems))
    # a word shaped like a place the user's area does not have: never answered for the
    # whole area instead (and a name outside the area is not told apart from none)
    strangers = [w for w in unknown if w.endswith(PLACE_SUFFIXES)]
    if strangers:
        return Refusal(
            raw, f"没有这个地方：{'、'.join(strangers)}（不在您的辖区）。", tuple(strangers)
        )
    if intent is None and sensor_words and topic is not None and topic.sensor is not None:
        intent = "sensor"
    if topic is None and not places and (unknown or intent is None):
        return Refusal(raw, "没有听懂这个问题。", tuple(unknown or [text]))
    narrowed, problem = _narrow(places)
    if problem:
        return Refusal(raw, f"没有这个地方：{problem}。", tuple(unknown))
    return Interpretation(
        question=raw,
        intent=intent or "count",
        places=narrowed,
        topic=topic,
        period=times.period or timewords.default_period(now),
        rank_level=rank_level,
        not_understood=tuple(unknown),
    )
