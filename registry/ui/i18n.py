"""The web pages' languages: message catalogs, the visitor's language, and dates, numbers
and sizes formatted per locale (Babel; the templates use Jinja2's i18n extension).

The catalogs are the gettext ``.po`` files under ``registry/ui/locales/`` (one per
language, extracted from the templates and this package's Python with ``pybabel``:
docs/ui.md says how to add a string). They are read when the web UI is built, not at
import, and compiled in memory: nothing to build before serving.

A page's language is, first, the one the visitor chose with the language switch (the
``wharf_lang`` cookie), then the best match of the browser's ``Accept-Language``, then
English.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel.core import parse_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"
DEFAULT = "en"
# the languages the pages speak, with each one's name in itself (for the switch)
LANGUAGES: Mapping[str, str] = {"en": "English", "zh_CN": "简体中文"}
COOKIE = "wharf_lang"
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs (gettext's name for "translate later"); it is
    translated when a page is rendered."""
    return message


def catalog_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_translations(language: str) -> Translations:
    """The compiled catalog of ``language`` (English, the source language, may be empty)."""
    with catalog_path(language).open("rb") as f:
        catalog = read_po(f, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def _accepted(header: str) -> list[tuple[float, str]]:
    """The tags of an ``Accept-Language`` header with their weights, best first."""
    accepted: list[tuple[float, str]] = []
    for position, part in enumerate(header.split(",")[:30]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and 0 < weight <= 1:
            accepted.append((weight - position * 1e-6, tag.strip()))  # ties: the order given
    return sorted(accepted, reverse=True)


def _match(tag: str) -> str | None:
    """The language of ours that serves ``tag`` (``zh``, ``zh-CN``, ``zh-Hans`` -> zh_CN)."""
    if tag == "*":
        return DEFAULT
    try:
        wanted, territory, script, *_ = parse_locale(tag, sep="-")
    except ValueError:
        return None
    for language in LANGUAGES:
        if wanted.lower() != parse_locale(language)[0]:
            continue
        if wanted.lower() == "zh":  # Traditional Chinese is not Simplified
            script = script or ("Hant" if territory in ("TW", "HK", "MO") else None)
            if script == "Hant":
                continue
        return language
    return None


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language of a page: the visitor's choice, else the browser's, else English."""
    if cookie is not None and cookie in LANGUAGES:
        return cookie
    for _, tag in _accepted(accept_language or ""):
        if (language := _match(tag)) is not None:
            return language
    return DEFAULT


@dataclass(frozen=True)
class Formats:
    """Dates, numbers and sizes as ``language`` writes them."""

    language: str

    def number(self, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return format_decimal(value, locale=self.language)

    def size(self, value: object) -> str:
        size = float(value) if isinstance(value, int | float) else 0.0
        for unit in SIZE_UNITS:
            if size < 1024 or unit == SIZE_UNITS[-1]:
                if unit == "B":
                    return f"{format_decimal(int(size), locale=self.language)} {unit}"
                return f"{format_decimal(size, '#,##0.0', locale=self.language)} {unit}"
            size /= 1024
        return f"{size} B"  # not reached

    def when(self, value: object) -> str:
        """An ISO 8601 time (as the search API gives it) or epoch seconds (as the GC API
        does) in UTC, the locale's medium form."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
            return f"{format_datetime(moment, 'medium', tzinfo=UTC, locale=self.language)} UTC"
        if not isinstance(value, str) or not value:
            return ""
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return f"{format_datetime(moment, 'medium', tzinfo=UTC, locale=self.language)} UTC"


def translator(translations: Translations) -> Callable[..., str]:
    """``_(message, **values)`` for Python code (the pages' error messages): translated,
    then formatted with ``values`` (``%(name)s``), as the templates' ``_`` does."""

    def translate(message: str, **values: object) -> str:
        text = translations.gettext(message)
        return text % values if values else text

    return translate
