#!/usr/bin/env bash
# The web pages' message catalogs (docs/ui.md): extract every marked string from the
# templates and registry/ui's Python, and merge it into the English and Simplified Chinese
# catalogs (new strings arrive untranslated; tests/unit/registry/ui/test_catalogs.py fails
# until each has its Chinese translation).
set -euo pipefail
cd "$(dirname "$0")/../registry/ui"
PYBABEL=${PYBABEL:-../../.venv/bin/pybabel}
pot=$(mktemp --suffix=.pot)
trap 'rm -f "$pot"' EXIT
"$PYBABEL" extract -F babel.cfg -o "$pot" --no-location --sort-output --project=Wharf .
for lang in en zh_CN; do
  "$PYBABEL" update -i "$pot" -d locales -l "$lang" --no-fuzzy-matching \
    --ignore-obsolete --width=100
done
