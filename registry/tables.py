"""The whole schema: the core's tables and every feature's, on one ``MetaData``.

Each feature defines its tables in its own ``tables`` module on the core's ``metadata``
(``registry/meta/tables.py``); importing them all gives the schema the migrations must
make (Alembic's autogenerate in ``registry/meta/migrations/env.py``, and the tests that
compare the two). A new feature with tables adds its module here.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from registry.meta.tables import metadata

FEATURE_TABLES = (
    "registry.accounts.tables",
    "registry.audit.tables",
    "registry.events.tables",
    "registry.gc.tables",
    "registry.immutability.tables",
    "registry.projects.tables",
    "registry.quotas.tables",
    "registry.retention.tables",
    "registry.scrub.tables",
    "registry.search.tables",
    "registry.ui.tables",
    "replicator.tables",
)


def full_metadata() -> MetaData:
    """The shared ``MetaData`` with every feature's tables defined on it."""
    for module in FEATURE_TABLES:
        importlib.import_module(module)
    return metadata
