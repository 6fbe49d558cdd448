"""Alembic migrations of the schema, shipped in the package (no alembic.ini needed).

Run them with ``market_data_services.storage.migrate.upgrade(engine)`` or
``mds db upgrade``. Add a revision as a new file in ``versions/`` whose
``down_revision`` is the current head, so the chain stays linear.
"""
