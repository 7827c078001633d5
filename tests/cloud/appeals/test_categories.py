"""The appeal categories file: the shipped one loads; a broken one is refused with the
line and path of each problem (configs/appeal_categories.yaml, cloud/appeals/categories.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.appeals.categories import (
    AppealCategoriesError,
    default_categories_path,
    load_categories,
    normalise,
)

# the categories the brief names; the shipped file must keep offering each
EXPECTED_IDS = {
    "fire-safety",
    "elevator",
    "parking",
    "sanitation",
    "noise",
    "pets",
    "repairs",
    "greening",
    "security",
    "property-service",
    "other",
}


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appeal_categories.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_loads() -> None:
    path = default_categories_path()
    assert path.is_file(), path
    model = load_categories()
    assert set(model.ids()) == EXPECTED_IDS
    assert model.fallback == "other"
    for category in model.categories:
        assert category.keywords, f"{category.id} has no keywords"
        assert category.name and category.name_en
    departments = {c.department for c in model.categories if c.department}
    assert departments <= {"property", "fire", "elevator", "urban-management", "police", "water"}


def test_plain_words_weigh_one_and_words_are_trimmed(tmp_path: Path) -> None:
    model = load_categories(
        _file(
            tmp_path,
            "schema: 1\nfallback: other\ncategories:\n"
            "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            "    keywords: [' 噪音 ', {word: 广场舞, weight: 3}]\n"
            "  - id: other\n    name: 其他\n    name_en: Other\n",
        )
    )
    keywords = model.categories[0].keywords
    assert [(k.word, k.weight) for k in keywords] == [("噪音", 1.0), ("广场舞", 3.0)]
    assert model.categories[1].keywords == []


_HEAD = "schema: 1\nfallback: other\ncategories:\n"
_OTHER = "  - id: other\n    name: 其他\n    name_en: Other\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n    colour: red\n"
            + _OTHER,
            "line 7: categories[0].colour: Extra inputs are not permitted",
            id="unknown key",
        ),
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            + "  - id: noise\n    name: 噪声\n    name_en: Noise again\n"
            + _OTHER,
            "line 7: categories[1].id: duplicate category id 'noise' (first at line 4)",
            id="duplicate id",
        ),
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            + "    keywords:\n      - 装修\n      - 噪音\n"
            + "  - id: repairs\n    name: 设施报修\n    name_en: Repairs\n"
            + "    keywords:\n      - 漏水\n      - {word: 装修, weight: 2}\n"
            + _OTHER,
            "line 15: categories[1].keywords[1]: keyword '装修' is listed also under "
            "'noise' (first at line 8); a word may point to one category only",
            id="keyword in two categories",
        ),
        pytest.param(
            # the classifier compares words in NFKC, lower case: these are one word
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            + "    keywords: [KTV, ｋｔｖ]\n"
            + _OTHER,
            "line 7: categories[0].keywords[1]: keyword 'ｋｔｖ' is listed again "
            "(first at line 7); a word may point to one category only",
            id="keyword twice after normalising",
        ),
        pytest.param(
            "schema: 1\ncategories:\n"
            "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            "fallback: misc\n",
            "line 6: fallback: fallback 'misc' is not a category; choose one of: noise",
            id="fallback unknown",
        ),
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n    name: 噪声\n"
            + _OTHER,
            "line 7: categories[0].name: duplicate key 'name' (first at line 5); keep one of them",
            id="duplicate YAML key",
        ),
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            + "    keywords: [广场 舞]\n"
            + _OTHER,
            "line 7: categories[0].keywords[0]: String should match pattern '^\\S{1,20}$'",
            id="space in a word",
        ),
        pytest.param(
            _HEAD
            + "  - id: noise\n    name: 噪音扰民\n    name_en: Noise\n"
            + "    keywords:\n      - {word: 噪音, weight: 0}\n"
            + _OTHER,
            "line 8: categories[0].keywords[0].weight: Input should be greater than 0",
            id="weight zero",
        ),
        pytest.param(
            _HEAD + "  - id: Noise!\n    name: 噪音扰民\n    name_en: Noise\n" + _OTHER,
            "line 4: categories[0].id: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$'",
            id="id not a slug",
        ),
        pytest.param(
            "schema: 2\nfallback: other\ncategories:\n" + _OTHER,
            "line 1: schema: Input should be 1",
            id="unknown schema",
        ),
    ],
)
def test_a_broken_file_is_refused_with_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(AppealCategoriesError) as err:
        load_categories(path)
    assert [str(p) for p in err.value.problems] == [problem]
    assert str(err.value).startswith(f"{path}: 1 problem(s)\n")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppealCategoriesError, match="no such file"):
        load_categories(tmp_path / "absent.yaml")


def test_normalise_folds_width_and_case() -> None:
    assert normalise("ＫＴＶ太吵") == "ktv太吵"
    assert normalise("电梯\u3000坏了") == "电梯 坏了"
