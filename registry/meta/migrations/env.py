"""Alembic environment: runs on the connection that registry.meta.migrate hands over."""

import importlib

from alembic import context

# every feature's tables, on the same metadata, so that autogenerate sees the whole schema
metadata = importlib.import_module("registry.tables").full_metadata()

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
