"""The service a user starts: configuration, HTTP endpoints and the ``mds`` command."""

__all__: list[str] = []
