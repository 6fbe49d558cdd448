"""Alembic revisions, one linear chain (``0001`` first)."""
