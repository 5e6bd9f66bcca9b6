"""The visitor's language and the formats of each."""

from __future__ import annotations

import pytest

from registry.ui.i18n import Formats, load_translations, negotiate, translator


@pytest.mark.parametrize(
    ("cookie", "header", "language"),
    [
        (None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        (None, "zh", "zh_CN"),
        (None, "zh-Hans-SG", "zh_CN"),
        (None, "ZH-cn", "zh_CN"),
        (None, "fr-FR,zh;q=0.3", "zh_CN"),  # French is not spoken here: the next choice
        (None, "en;q=0.5,zh-CN;q=0.9", "zh_CN"),  # by weight, not by order
        (None, "zh-TW,en;q=0.5", "en"),  # Traditional Chinese is not Simplified
        (None, "zh-Hant", "en"),
        (None, "zh-HK", "en"),
        (None, "zh-CN;q=0", "en"),  # q=0: not acceptable
        (None, "*", "en"),
        (None, "garbage;;q=x,,", "en"),
        (None, "x" * 5000, "en"),
        ("zh_CN", "en-US", "zh_CN"),  # the switch's choice wins over the browser
        ("en", "zh-CN", "en"),
        ("klingon", "zh-CN", "zh_CN"),  # a cookie naming no language of ours is ignored
    ],
)
def test_negotiate(cookie: str | None, header: str | None, language: str) -> None:
    assert negotiate(cookie, header) == language


def test_sizes_numbers_and_dates_per_language() -> None:
    en, zh = Formats("en"), Formats("zh_CN")
    assert en.size(512) == "512 B" and en.size(24_000) == "23.4 KiB"
    assert en.size(3 * 1024**3) == "3.0 GiB" and en.size(1234 * 1024**4) == "1,234.0 TiB"
    assert en.number(1234567) == "1,234,567" and zh.number(1234567) == "1,234,567"
    assert en.when("2026-11-20T08:30:00Z") == "Nov 20, 2026, 8:30:00\u202fAM UTC"
    assert zh.when("2026-11-20T08:30:00Z") == "2026年11月20日 08:30:00 UTC"
    assert zh.when("2026-11-20T16:30:00+08:00") == "2026年11月20日 08:30:00 UTC"  # shown in UTC
    assert en.when("not a time") == "not a time" and en.when(None) == ""


def test_translator_formats_after_translating() -> None:
    _ = translator(load_translations("zh_CN"))
    assert _("Search") == "搜索"
    assert _("There is no repository %(name)s.", name="team/app") == "没有仓库 team/app。"
    en = translator(load_translations("en"))
    assert en("There is no repository %(name)s.", name="a") == "There is no repository a."
