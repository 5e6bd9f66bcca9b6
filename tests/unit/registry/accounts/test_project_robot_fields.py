"""Checking a project robot's fields: every problem reported at once, patterns inside
the project only."""

from __future__ import annotations

import pytest

from registry.accounts.project_robots import check_permissions, full_name, pattern_problem
from registry.accounts.records import Permission


@pytest.mark.parametrize(
    "pattern", ["app", "tools/*", "*", "app-[ab]", "svc?", "a.b_c-d/e__f", "team/app"]
)
def test_good_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize(
    "pattern", ["", "/app", "../other/app", "tools/../../x", "a//b", "App", "a b", "a:b", "a[b", 3]
)
def test_bad_patterns(pattern: object) -> None:
    assert pattern_problem(pattern) is not None


def test_every_problem_is_named() -> None:
    problems: dict[str, str] = {}
    found = check_permissions(
        [
            {"repositories": ["app", "../x"], "actions": ["push", "pull"]},
            {"repositories": [], "actions": ["fly"]},
            {"repositories": ["ok"], "actions": ["pull"], "extra": 1},
            "pull",
        ],
        problems,
    )
    assert set(problems) == {
        "permissions[0].repositories[1]",
        "permissions[1].repositories",
        "permissions[1].actions",
        "permissions[2].extra",
        "permissions[3]",
    }
    assert found == (Permission(("ok",), ("pull",)),)


def test_actions_kept_in_order_and_once() -> None:
    problems: dict[str, str] = {}
    found = check_permissions(
        [{"repositories": ["app", "app"], "actions": ["push", "pull"]}], problems
    )
    assert problems == {}
    assert found == (Permission(("app",), ("pull", "push")),)


def test_names() -> None:
    assert full_name("team", "ci") == "robot$team+ci"
    assert full_name("team", "robot$team+ci") == "robot$team+ci"
    for bad in ("CI", "robot$other+ci", "a+b", "", "x" * 64):
        with pytest.raises(ValueError):
            full_name("team", bad)
    with pytest.raises(ValueError, match="longer than 100"):
        full_name("p" * 60, "c" * 40)
