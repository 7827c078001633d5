"""The appeal categories file (``configs/appeal_categories.yaml``): its models and loader.

Each category lists the words that point to it, with a weight::

    schema: 1
    fallback: other
    categories:
      - id: elevator
        name: 电梯
        name_en: Elevators
        department: elevator
        keywords: [{word: 电梯困人, weight: 4}, 电梯]   # a plain word weighs 1

The file is read by the project's strict YAML loader (:mod:`microbrain.config_files`);
the checks one model cannot make (a duplicate id, a word under two categories, a fallback
that names no category) are reported the same way, by line and path.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from microbrain.config_files import ConfigFileError, Problem, YamlFile, parse_path, read_yaml
from microbrain.site.common import Id, Name, Strict


class AppealCategoriesError(ConfigFileError):
    """An appeal categories file that cannot be used; ``problems`` names each by line."""


def normalise(text: str) -> str:
    """The form words and texts are compared in: NFKC (full-width ``ＫＴＶ`` is ``KTV``,
    a full-width space a space) and lower case, so neither the file nor a resident's
    keyboard decides whether a word matches."""
    return unicodedata.normalize("NFKC", text).lower()


def _plain_word(value: Any) -> Any:
    """A plain string in the list is a word of weight 1."""
    return {"word": value} if isinstance(value, str) else value


class Keyword(Strict):
    """A word (or phrase) that points to its category, and how strongly."""

    # no whitespace: jieba never cuts a word across one, so such a keyword could not be whole
    word: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\S{1,20}$")]
    weight: float = Field(default=1.0, gt=0, le=10, description="added to the score once")


class Category(Strict):
    """One kind of appeal (消防安全, 电梯 …) and the words that point to it."""

    id: Id
    name: Name = Field(description="zh-CN, as the duty console shows it")
    name_en: Name
    keywords: list[Annotated[Keyword, BeforeValidator(_plain_word)]] = Field(default=[])
    department: Id | None = Field(
        default=None, description="the desk that usually takes it (a hint for routing)"
    )


class AppealCategories(Strict):
    """The whole file: the categories, in the order ties are broken, and the fallback."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    categories: list[Category] = Field(min_length=1)
    fallback: Id = Field(description="the category of a text no word points to")

    def ids(self) -> list[str]:
        """The categories' ids, in file order."""
        return [c.id for c in self.categories]


def default_categories_path() -> Path:
    """The shipped file, ``configs/appeal_categories.yaml`` in the repository.

    configs/ sits beside the packages, not inside one (like ``configs/demo/site.yaml``), and
    the project runs from its checkout (an editable install), so the file is found from
    this module's place: cloud/appeals/categories.py → two levels up. An installed wheel
    has no configs/; pass the file's path to :func:`load_categories` there.
    """
    return Path(__file__).resolve().parents[2] / "configs" / "appeal_categories.yaml"


def verify_categories(model: AppealCategories, doc: YamlFile | None = None) -> Iterator[Problem]:
    """What the models alone cannot check, each problem under its data path; with the
    file ``doc`` the model was read from, a first occurrence is named by its line."""

    def where(path: str) -> str:
        line = doc.line_of(parse_path(path)) if doc is not None else None
        return f"line {line}" if line is not None else path

    first_id: dict[str, int] = {}
    for i, category in enumerate(model.categories):
        if category.id in first_id:
            yield Problem(
                f"categories[{i}].id",
                f"duplicate category id {category.id!r} "
                f"(first at {where(f'categories[{first_id[category.id]}].id')})",
            )
        else:
            first_id[category.id] = i
    # compared normalised: ＫＴＶ and ktv are one word to the classifier
    first_word: dict[str, tuple[str, str]] = {}
    for i, category in enumerate(model.categories):
        for k, keyword in enumerate(category.keywords):
            word = normalise(keyword.word)
            path = f"categories[{i}].keywords[{k}]"
            if word in first_word:
                first, owner = first_word[word]
                also = "again" if owner == category.id else f"also under {owner!r}"
                yield Problem(
                    path,
                    f"keyword {keyword.word!r} is listed {also} (first at {where(first)}); "
                    "a word may point to one category only",
                )
            else:
                first_word[word] = (path, category.id)
    if model.fallback not in first_id:
        yield Problem(
            "fallback",
            f"fallback {model.fallback!r} is not a category; choose one of: {', '.join(first_id)}",
        )


def load_categories(path: str | Path | None = None) -> AppealCategories:
    """Read, validate and cross-check a categories file (the shipped one by default);
    raise :class:`AppealCategoriesError` naming every problem's line and path."""
    path = default_categories_path() if path is None else path
    doc = read_yaml(path, error=AppealCategoriesError)
    model = doc.validate(AppealCategories, error=AppealCategoriesError)
    problems = list(verify_categories(model, doc))
    if problems:
        raise AppealCategoriesError(doc.source, doc.located(problems))
    return model
