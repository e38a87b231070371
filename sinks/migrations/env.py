"""Alembic environment of the SQL warehouse.

Migrations run programmatically (`sinks.sql.migrate.upgrade`), which hands over an open connection in
`config.attributes["connection"]`; there is no alembic.ini and no offline mode.
"""

from __future__ import annotations

from alembic import context

from sinks.sql.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
