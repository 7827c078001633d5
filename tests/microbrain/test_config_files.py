"""The one strict YAML loader (microbrain/config_files.py): duplicate keys, NaN and bad
values are refused with the file, the line and the key's path; merges and aliases work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from microbrain.cli.up import _load_secrets
from microbrain.config_files import ConfigFileError, load_yaml, read_yaml


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "a:\n  - x: 1\n    x: 2\n",
            ["line 3: a[0].x: duplicate key 'x' (first at line 2); keep one of them"],
        ),
        # every duplicate, in line order, each under its own path
        (
            "a: 1\nb: {c: 1, c: 2}\na: 3\n",
            [
                "line 2: b.c: duplicate key 'c' (first at line 2); keep one of them",
                "line 3: a: duplicate key 'a' (first at line 1); keep one of them",
            ],
        ),
        ("a: .nan\n", ["line 1: a: .nan is not a number a config may hold; write a finite number"]),
        (
            "a:\n  b: [1, -.inf]\n",
            ["line 2: a.b[1]: -.inf is not a number a config may hold; write a finite number"],
        ),
        ("a: [1, 2\n", ["line 2: not valid YAML: expected ',' or ']', but got '<stream end>'"]),
    ],
)
def test_refusals_name_the_line_and_the_path(
    tmp_path: Path, text: str, problems: list[str]
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigFileError) as err:
        read_yaml(path)
    assert [str(p) for p in err.value.problems] == problems
    assert str(err.value).startswith(f"{path}: {len(problems)} problem(s)\n")


def test_keys_equal_once_built_are_duplicates_too(tmp_path: Path) -> None:
    # YAML 1.1: yes and true are both the key True
    with pytest.raises(
        ConfigFileError, match=r"line 2: not valid YAML: duplicate key True \(first at line 1\)"
    ):
        read_yaml(_file(tmp_path, "yes: 1\ntrue: 2\n"))


def test_merges_may_override_and_aliases_share(tmp_path: Path) -> None:
    doc = read_yaml(_file(tmp_path, "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\nagain: *b\n"))
    assert doc.data == {
        "base": {"x": 1, "y": 2},
        "use": {"x": 3, "y": 2},
        "again": {"x": 1, "y": 2},
    }
    assert doc.line_of(["use", "x"]) == 4


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    port: int


def test_validation_problems_carry_lines(tmp_path: Path) -> None:
    path = _file(tmp_path, "name: cloud\nport: eighty\nextra: 1\n")
    with pytest.raises(ConfigFileError) as err:
        load_yaml(path, _Model)
    assert [str(p) for p in err.value.problems] == [
        "line 2: port: Input should be a valid integer, unable to parse string as an integer",
        "line 3: extra: Extra inputs are not permitted",
    ]
    assert load_yaml(_file(tmp_path, "name: cloud\nport: 80\n"), _Model) == _Model(
        name="cloud", port=80
    )


def test_the_secrets_file_of_up_is_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    first = _load_secrets(path, ["MB_A"])
    assert _load_secrets(path, ["MB_A", "MB_B"])["MB_A"] == first["MB_A"]  # kept across restarts
    path.write_text("MB_A: one\nMB_A: two\n", encoding="utf-8")
    with pytest.raises(ConfigFileError, match="line 2: MB_A: duplicate key 'MB_A'"):
        _load_secrets(path, ["MB_A"])
