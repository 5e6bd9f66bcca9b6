"""The web pages' catalogs are complete: every string marked in the templates and in
registry/ui's Python is in the English and the Simplified Chinese catalog, translated into
Chinese with the same placeholders, and neither catalog holds strings nothing uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import registry.ui
from registry.ui.i18n import LANGUAGES, catalog_path

UI = Path(registry.ui.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _key(message_id: str | tuple[str, ...]) -> str:
    return message_id[0] if isinstance(message_id, tuple) else message_id


def marked() -> dict[str, str | tuple[str, ...]]:
    """What the templates and the Python of registry/ui mark for translation."""
    with (UI / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[str, str | tuple[str, ...]] = {}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(UI), method_map, options_map
    ):
        found[_key(message)] = message
    return found


def catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as f:
        return read_po(f, locale=language)


def test_the_sources_mark_strings() -> None:
    found = marked()
    # a template string and a Python one: the extraction reads both kinds of source
    assert "Find images" in found and "Wrong user name or password." in found
    assert len(found) > 100


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_marked_string_is_in_the_catalog(language: str) -> None:
    held = {_key(m.id) for m in catalog(language) if m.id}
    missing = sorted(set(marked()) - held)
    assert not missing, f"not in {language}'s catalog (run scripts/ui-catalogs.sh): {missing}"
    unused = sorted(held - set(marked()))
    assert not unused, f"{language}'s catalog holds strings nothing marks: {unused}"


def _strings(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple | list) else [message.string]


def test_chinese_translates_everything_with_the_same_placeholders() -> None:
    untranslated, wrong = [], []
    for message in catalog("zh_CN"):
        if not message.id:
            continue
        strings = _strings(message)
        if message.fuzzy or not all(strings):
            untranslated.append(_key(message.id))
            continue
        wanted = set(PLACEHOLDER.findall(_key(message.id)))
        if any(set(PLACEHOLDER.findall(s)) != wanted for s in strings):
            wrong.append(_key(message.id))
    assert not untranslated, f"no Chinese translation: {untranslated}"
    assert not wrong, f"placeholders differ from the English: {wrong}"


def test_english_is_the_source() -> None:
    # English shows the message itself: a translation there would be a second source text
    translated = [_key(m.id) for m in catalog("en") if m.id and any(_strings(m))]
    assert not translated


JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)
TEXT_ATTRIBUTES = re.compile(r'\b(?:aria-label|placeholder|title|alt)="([^"]*)"')
# the product's name, and example values a visitor types as they are (search.html)
NOT_WORDS = {"Wharf", "latest", "linux", "arm"}


@pytest.mark.parametrize("template", sorted(p.name for p in (UI / "templates").glob("*.html")))
def test_templates_show_no_text_outside_the_catalogs(template: str) -> None:
    source = JINJA.sub(" ", (UI / "templates" / template).read_text())
    texts = re.findall(r">([^<]+)<", source) + TEXT_ATTRIBUTES.findall(source)
    words = {w for text in texts for w in re.findall(r"[A-Za-z]{2,}", text)} - NOT_WORDS
    assert not words, f"{template} shows text no catalog holds: {sorted(words)}"
