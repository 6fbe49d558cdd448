"""SQLAlchemy schema, engine creation and upserts."""

__all__: list[str] = []
