"""Alembic environment: runs on the connection ``migrate.upgrade`` hands over.

There is no alembic.ini and no URL here: ``market_data_services.storage.migrate`` builds
the configuration in code and passes an open connection in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from market_data_services.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by running alembic by hand
    raise RuntimeError(
        "run the migrations with `mds db upgrade` or "
        "market_data_services.storage.migrate.upgrade(engine)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
