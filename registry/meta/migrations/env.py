"""Alembic environment: runs on the connection that registry.meta.migrate hands over."""

import importlib

from alembic import context

from registry.meta.tables import metadata

# every feature's tables, on the same metadata, so that autogenerate sees the whole schema
for module in (
    "registry.accounts.tables",
    "registry.events.tables",
    "registry.gc.tables",
    "registry.projects.tables",
    "registry.quotas.tables",
    "registry.search.tables",
    "registry.ui.tables",
    "replicator.tables",
):
    importlib.import_module(module)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
