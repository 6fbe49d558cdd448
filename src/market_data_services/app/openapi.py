"""The OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written beside the code it describes and built from the same constants (routes, limits,
timeframes, columns); ``tests/app/test_api.py`` checks every route and parameter of
``app/api.py`` against it, and schemathesis checks the live server's answers.
"""

from __future__ import annotations

from typing import Any

from market_data_services._version import __version__
from market_data_services.market.timeframes import TIMEFRAMES
from market_data_services.storage.derived import KINDS, Kind

API_PREFIX = "/api/v1/"
#: Rows per page when ``limit`` is not given, and the most one page may hold.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
FORMATS = ("json", "csv")

#: The query parameters of each data route (``timeframe`` is the candles' only).
DATA_PARAMETERS = {
    "candles": ("symbol", "timeframe", "from", "to", "limit", "cursor", "format"),
    "book": ("symbol", "from", "to", "limit", "cursor", "format"),
    "sentiment": ("symbol", "from", "to", "limit", "cursor", "format"),
}


def field_names(kind: Kind) -> list[str]:
    """The fields of one row as the API writes them, in order."""
    return [kind.time_column, "time", *kind.columns]


_TIME_TEXT = "ISO-8601 (2026-11-30T04:00:00Z; no offset: UTC) or UTC epoch milliseconds"

_PARAMETERS: dict[str, dict[str, Any]] = {
    "symbol": {
        "in": "query",
        "required": True,
        "description": "The symbol, e.g. EUR/USD (GET /api/v1/symbols lists them).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 32},
    },
    "timeframe": {
        "in": "query",
        "required": True,
        "description": "The candle timeframe.",
        "schema": {"type": "string", "enum": list(TIMEFRAMES)},
    },
    "from": {
        "in": "query",
        "description": f"Earliest time, inclusive: {_TIME_TEXT}. Without it, the page is "
        "the newest rows up to `to` and next_cursor leads to older rows.",
        "schema": {"type": "string"},
    },
    "to": {
        "in": "query",
        "description": f"Latest time, exclusive: {_TIME_TEXT}. Default: no limit.",
        "schema": {"type": "string"},
    },
    "limit": {
        "in": "query",
        "description": f"Rows per page, 1 to {MAX_LIMIT}; default {DEFAULT_LIMIT}.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    "cursor": {
        "in": "query",
        "description": "The next_cursor of the previous page (same other parameters).",
        "schema": {"type": "string"},
    },
    "format": {
        "in": "query",
        "description": "json (default) or csv; also `Accept: text/csv`.",
        "schema": {"type": "string", "enum": list(FORMATS)},
    },
}

_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "tick_count": {"type": "integer"},
    "complete": {"type": "boolean"},
    "signal": {"type": "integer", "enum": [-1, 0, 1]},
}
_NUMBER = {"type": ["number", "null"]}


def _row_schema(kind: Kind) -> dict[str, Any]:
    properties: dict[str, Any] = {
        kind.time_column: {"type": "integer", "description": "UTC epoch milliseconds"},
        "time": {"type": "string", "description": "the same moment, ISO-8601 UTC"},
    }
    for name in kind.columns:
        properties[name] = _VALUE_SCHEMAS.get(name, _NUMBER)
    return {
        "type": "object",
        "properties": properties,
        "required": field_names(kind),
        "additionalProperties": False,
    }


def _page_schema(route: str) -> dict[str, Any]:
    kind = KINDS[route]
    properties: dict[str, Any] = {
        "symbol": {"type": "string"},
        kind.name: {"type": "array", "items": {"$ref": f"#/components/schemas/{route}_row"}},
        "next_cursor": {"type": ["string", "null"]},
    }
    if kind.has_timeframe:
        properties["timeframe"] = {"type": "string", "enum": list(TIMEFRAMES)}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_ERROR = {
    "description": "An error, with the parameter at fault and its valid choices when any.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}},
}


def _data_operation(route: str) -> dict[str, Any]:
    kind = KINDS[route]
    return {
        "get": {
            "operationId": f"get_{route}",
            "summary": f"{kind.name.capitalize()} of one symbol, oldest first",
            "parameters": [{"name": name, **_PARAMETERS[name]} for name in DATA_PARAMETERS[route]],
            "responses": {
                "200": {
                    "description": "One page. CSV: the same fields as columns, and the next "
                    "cursor in the X-Next-Cursor header.",
                    "headers": {
                        "X-Next-Cursor": {
                            "description": "CSV only: the next page's cursor.",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{route}_page"}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": _ERROR,
                "401": {"description": "Credentials required (basic auth configured)."},
                "404": _ERROR,
                "503": _ERROR,
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    schemas: dict[str, Any] = {
        "error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "parameter": {"type": "string"},
                "valid": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["error"],
        },
        "symbols": {
            "type": "object",
            "properties": {name: {"type": "array", "items": {"type": "string"}} for name in KINDS},
            "required": list(KINDS),
            "additionalProperties": False,
        },
    }
    paths: dict[str, Any] = {}
    for route in DATA_PARAMETERS:
        schemas[f"{route}_row"] = _row_schema(KINDS[route])
        schemas[f"{route}_page"] = _page_schema(route)
        paths[f"{API_PREFIX}{route}"] = _data_operation(route)
    paths[f"{API_PREFIX}symbols"] = {
        "get": {
            "operationId": "get_symbols",
            "summary": "The symbols stored per kind of derived data",
            "responses": {
                "200": {
                    "description": "Sorted symbols per kind; candles include symbols with "
                    "ticks whose first candle is still open.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/symbols"}}
                    },
                },
                "401": {"description": "Credentials required (basic auth configured)."},
                "503": _ERROR,
            },
        }
    }
    paths[f"{API_PREFIX}openapi.json"] = {
        "get": {
            "operationId": "get_openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": {"description": "Credentials required (basic auth configured)."},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "market-data-services API",
            "version": __version__,
            "description": "Derived data (candles, book metrics, sentiment) as stored by the "
            "services. Times are UTC epoch milliseconds and ISO-8601.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
    }


__all__ = [
    "API_PREFIX",
    "DATA_PARAMETERS",
    "DEFAULT_LIMIT",
    "FORMATS",
    "MAX_LIMIT",
    "field_names",
    "openapi_document",
]
