"""Give an appeal a category from its Chinese text: jieba's words, weighed by the file.

The text (NFKC, lower case) is cut into words by a jieba tokenizer that has every keyword
of the categories file in its dictionary, so ``飞线充电`` or ``遛狗不牵绳`` stays one word.
A keyword is found

* as a word of the cut;
* a single character also as the last character of a word, the head of a Chinese
  compound (``狗`` in 黑狗, ``树`` in 香樟树);
* two characters or more also inside the text where jieba cut differently, if it starts
  or ends where a word of the cut does (``垃圾`` in 垃圾袋, a word of jieba's own), and no
  keyword jieba did cut out straddles its start or end (not ``停电`` in 停 / 电动车: the
  cut decided between the two), nor is it astride two words (not ``停电`` in 暂停 / 电梯);

and a keyword found only inside a longer one found there does not count (``充电桩`` is
parking; the ``充电`` in it is not fire safety). Each category scores the sum of the
weights of its keywords found, each keyword once; the highest score wins, a tie going to
the higher single weight, then to the category first in the file. A resident's own
choice of category wins over the text; a text with no keyword gets the fallback.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jieba

from cloud.appeals.categories import AppealCategories, load_categories, normalise

Source = Literal["resident", "text", "fallback"]

# jieba logs "Building prefix dict ..." and "Loading model cost ..." to stderr on its own
# handler; only its warnings are worth a line in the service's output
logging.getLogger("jieba").setLevel(logging.WARNING)

# A keyword's frequency in the tokenizer's dictionary: jieba's largest entries (的, 了) are
# a few hundred thousand to a million, so at this figure a keyword is always cut whole
# where it appears as written, whatever dictionary words overlap it.
_KEYWORD_FREQ = 2_000_000


@dataclass(frozen=True, slots=True)
class Classification:
    """The category given to an appeal and why.

    ``source``: ``resident`` (the resident's own choice), ``text`` (the keywords won) or
    ``fallback`` (no keyword found). ``score`` and ``matched`` are the text's evidence for
    ``category`` (for a resident's choice too: a low score flags a choice worth a look).
    """

    category: str
    score: float
    matched: tuple[str, ...]
    source: Source


@dataclass(frozen=True, slots=True)
class _Entry:
    category: int  # index into the file's categories: the order ties are broken in
    weight: float


class AppealClassifier:
    """Classifies appeals' texts by one categories file; safe to share between threads.

    jieba's dictionary (about a second and 60 MB to build) is loaded on the first text,
    once, into a tokenizer of the classifier's own: the keywords added to it change no
    other code's ``jieba.cut``.
    """

    def __init__(self, categories: AppealCategories) -> None:
        self._ids = categories.ids()
        self._fallback = categories.fallback
        self._entries: dict[str, _Entry] = {}
        for index, category in enumerate(categories.categories):
            for keyword in category.keywords:
                # first wins: the loader refuses a word twice; a model built by hand
                # keeps the file order's meaning
                self._entries.setdefault(normalise(keyword.word), _Entry(index, keyword.weight))
        self._multi = [w for w in self._entries if len(w) > 1]
        self._single = {w for w in self._entries if len(w) == 1}
        self._tokenizer: jieba.Tokenizer | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> AppealClassifier:
        """A classifier for a categories file (the shipped one by default)."""
        return cls(load_categories(path))

    @property
    def ids(self) -> tuple[str, ...]:
        """The known category ids, in file order."""
        return tuple(self._ids)

    def _cutter(self) -> jieba.Tokenizer:
        tokenizer = self._tokenizer
        if tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    fresh = jieba.Tokenizer()
                    fresh.initialize()  # the dictionary; jieba caches it in the temp dir
                    for word in self._entries:
                        fresh.add_word(word, freq=_KEYWORD_FREQ)
                    self._tokenizer = fresh
                tokenizer = self._tokenizer
        return tokenizer

    def warm_up(self) -> None:
        """Load jieba now rather than on the first appeal (a service's start-up)."""
        self._cutter()

    def evidence(self, text: str) -> dict[str, tuple[float, tuple[str, ...]]]:
        """Each category with a keyword in ``text``: (score, keywords found, in the order
        they first appear)."""
        text = normalise(text)
        if not text.strip():
            return {}
        # no HMM: its guesses at words the dictionary lacks (names, slang) are never
        # keywords, and on a long text of odd characters it is ten times slower
        words = self._cutter().lcut(text, HMM=False)
        bounds = {0}  # where the cut's words start and end
        inside: set[int] = set()  # strictly inside a word of the cut that is a keyword
        spans: set[tuple[int, int, str]] = set()
        start = 0
        for word in words:
            stop = start + len(word)
            bounds.add(stop)
            if word in self._entries:
                spans.add((start, stop, word))
                inside.update(range(start + 1, stop))
            elif word[-1:] in self._single:
                # Chinese compounds end in their head: 黑狗 is a 狗, 香樟树 a 树, 货车 a 车
                spans.add((stop - 1, stop, word[-1]))
            start = stop
        # where jieba cut differently: a keyword that starts or ends where a word does
        # (垃圾 in 垃圾袋), unless a keyword jieba did cut out straddles its start or end
        # (停电 in 停 / 电动车: the cut decided between the two)
        for word in self._multi:
            at = text.find(word)
            while at != -1:
                stop = at + len(word)
                if (at in bounds or stop in bounds) and not (at in inside or stop in inside):
                    spans.add((at, stop, word))
                at = text.find(word, at + 1)
        # by start, the longer first at one start: a span is inside a longer one iff an
        # earlier span ends at or after its end
        found: dict[str, None] = {}  # an ordered set: first appearance
        reach = -1
        for _, stop, word in sorted(spans, key=lambda s: (s[0], -s[1])):
            if stop > reach:
                found.setdefault(word, None)
                reach = stop
        hits: dict[int, list[str]] = defaultdict(list)
        for word in found:
            hits[self._entries[word].category].append(word)
        return {
            self._ids[index]: (sum(self._entries[w].weight for w in ws), tuple(ws))
            for index, ws in sorted(hits.items())
        }

    def classify(self, text: str, chosen: str | None = None) -> Classification:
        """The category of an appeal: ``chosen`` (the resident's pick) if given, else
        the best-scoring category of ``text``, else the fallback.

        Raises ValueError for a ``chosen`` that is not a known category id.
        """
        if chosen is not None and chosen not in self._ids:
            raise ValueError(f"unknown appeal category {chosen!r}; known: {', '.join(self._ids)}")
        evidence = self.evidence(text)
        if chosen is not None:
            score, matched = evidence.get(chosen, (0.0, ()))
            return Classification(chosen, score, matched, "resident")
        if not evidence:
            return Classification(self._fallback, 0.0, (), "fallback")
        order = {category: index for index, category in enumerate(self._ids)}
        best = max(
            evidence,
            key=lambda c: (
                evidence[c][0],
                max(self._entries[w].weight for w in evidence[c][1]),
                -order[c],
            ),
        )
        score, matched = evidence[best]
        return Classification(best, score, matched, "text")
