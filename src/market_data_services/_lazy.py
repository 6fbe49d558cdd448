"""Re-exporting names on first use (PEP 562), for the package and its subpackages.

A command that needs one service (``mds backfill --kind candles``) should not import the
others, nor everything a package's ``__init__`` re-exports. Such a package lists its
names in ``_EXPORTS`` (name -> the module it comes from), spells them out again under
``if TYPE_CHECKING:`` for type checkers, and ends with::

    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module_name: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``module_name``: a name of
    ``exports`` is imported from its module when first asked for, then kept in the
    module's namespace, so later lookups do not come here."""

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module_name])) | set(exports))

    return __getattr__, __dir__
