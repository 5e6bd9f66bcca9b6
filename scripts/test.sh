#!/usr/bin/env bash
# Install everything the tests need, run the linters and the import contracts, then the
# whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the architecture's import contracts ([tool.importlinter])
mkdir -p test-artifacts
.venv/bin/pytest -ra "$@"
