"""Alembic environment: runs on the connection that registry.meta.migrate hands over."""

from alembic import context

import registry.events.tables  # noqa: F401  (the events tables, for autogenerate)
import replicator.tables  # noqa: F401  (replication's and the mirror's tables)
from registry.meta.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
