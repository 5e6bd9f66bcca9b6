"""The scrub's rate as operators write it, and the options of ``POST /api/scrub/runs``."""

from __future__ import annotations

from typing import Any

import pytest

from registry.config import Settings, parse_rate
from registry.scrub.api import options_from_request
from registry.scrub.errors import ScrubInvalid


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("50MiB", 50 * 1024**2),
        ("50MiB/s", 50 * 1024**2),
        ("200MB", 200_000_000),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("4000", 4000),
        (4000, 4000),
        ("0", 0),
        ("unlimited", 0),
        ("", 0),
    ],
)
def test_rates(text: Any, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "-5", "10 parsecs", True, -1])
def test_bad_rates(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_the_config_default_and_a_bad_schedule() -> None:
    assert Settings().scrub.rate == 50 * 1024**2
    assert Settings.model_validate({"scrub": {"rate": "1MiB"}}).scrub.rate == 1024**2
    with pytest.raises(ValueError):
        Settings.model_validate({"scrub": {"schedule": "every tuesday"}})


def test_request_options() -> None:
    assert options_from_request({}) == (None, False)
    assert options_from_request({"rate": "1MiB", "resume": True}) == (1024**2, True)
    with pytest.raises(ScrubInvalid) as e:
        options_from_request({"rate": "fast", "resume": 1, "extra": 2})
    assert set(e.value.detail) == {"rate", "resume", "extra"}
    assert e.value.http_status == 400
    with pytest.raises(ScrubInvalid):
        options_from_request([1])
