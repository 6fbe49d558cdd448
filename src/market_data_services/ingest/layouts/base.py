"""File layouts as registered objects: what a layout is, the registry, and telling a
file's layout from its first line.

A layout (``Layout``) names its kind (``ticks``, ``dom``, ``sentiment``), describes itself
for ``mds ingest --help``, tells from a file's first line whether the file is its own
(``sniff``), checks the file's head and first time (``inspect``) and reads it into chunks
(``read``). ``register`` adds one; the first registered layout whose ``sniff`` accepts a
file's first line reads it. ``mds ingest``, ``inspect_*_files`` and ``ingest_*`` all ask
this registry, so adding a layout is one module plus one ``register`` call. A layout from
outside the package is an entry point of the group ``market_data_services.layouts``
whose object is the ``Layout``; installed plugins are registered before the first file
is inspected (``load_plugins``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, tzinfo
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

from market_data_services.ingest.files import (
    WrongFileKindError,
    check_time_unit,
    first_line,
    read_head,
)

#: The kinds of raw data, as ``mds ingest`` names them.
KINDS = ("ticks", "dom", "sentiment")
#: The entry-point group through which an installed package adds file layouts.
PLUGIN_GROUP = "market_data_services.layouts"


class LayoutPluginError(ValueError):
    """A layout plugin could not be loaded or registered; the message names it."""


class DataFile(Protocol):
    """An inspected file: its path and the name of its layout."""

    @property
    def path(self) -> Path: ...

    @property
    def layout(self) -> str: ...


F = TypeVar("F", bound=DataFile)
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """What a reader may need besides the file; a layout uses the fields it knows."""

    zone: tzinfo = UTC  # the zone of times written without an offset
    symbol: str | None = None  # ticks: the symbol of files without a symbol column
    source: str | None = None  # sentiment: the source of readings without a source column
    chunk_rows: int = 250_000  # rows per chunk, at most about


class Layout(ABC, Generic[F, R]):
    """One vendor's file layout of one kind."""

    #: The ``--layout`` value.
    name: ClassVar[str]
    #: ``ticks``, ``dom`` or ``sentiment``.
    kind: ClassVar[str]
    #: One sentence for ``mds ingest KIND --help``.
    description: ClassVar[str]
    #: What its first line looks like, for the error naming what a file is not.
    signature: ClassVar[str]
    #: The error raised for a file that is not of this kind.
    error: ClassVar[type[WrongFileKindError]]

    @abstractmethod
    def sniff(self, first: str) -> bool:
        """Whether a file whose first non-blank line is ``first`` has this layout."""

    @abstractmethod
    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> F:
        """The file, checked: its header, and its first time in ``time_unit`` (raising
        ``self.error`` or ``ImplausibleTimeError`` before anything is written)."""

    @abstractmethod
    def empty(self, path: Path) -> F:
        """An empty file with this layout (nothing to load, not an error)."""

    @abstractmethod
    def read(self, data_file: F, options: ReadOptions) -> Iterator[R]:
        """The rows of ``data_file`` in chunks, with the rows that could not be parsed."""

    def refuse(self, path: Path, first: str, found: Layout[F, R]) -> str:
        """Why a file that looks like ``found`` cannot be read with this (forced) layout."""
        return f"it looks like the {found.name} layout, not {self.name} (try --layout {found.name})"


# Registration happens at import time, usually on one thread; the lock makes a late
# register() from another thread safe. Readers copy what they need.
_lock = threading.Lock()
#: Registered layouts by kind, then by name, in registration (= sniffing) order.
LAYOUTS: dict[str, dict[str, Layout[DataFile, object]]] = {kind: {} for kind in KINDS}


def register(layout: Layout[F, R]) -> Layout[F, R]:
    """Add ``layout`` to the registry of its kind (it is sniffed after those before it)."""
    if layout.kind not in LAYOUTS:
        raise ValueError(f"unknown kind {layout.kind!r}; valid kinds: {', '.join(KINDS)}")
    with _lock:
        known = LAYOUTS[layout.kind]
        if layout.name in known:
            raise ValueError(f"a {layout.kind} layout named {layout.name!r} is registered already")
        known[layout.name] = layout  # type: ignore[assignment]
    return layout


_plugin_lock = threading.Lock()
#: What went wrong loading the plugins; None until they are loaded. Guarded by _plugin_lock.
_plugin_problems: list[str] | None = None


def load_plugins() -> None:
    """Register the layouts of installed plugins, once; raise ``LayoutPluginError`` (each
    time) when one could not be loaded or registered."""
    global _plugin_problems  # noqa: PLW0603 - the registry is process-wide, like LAYOUTS
    with _plugin_lock:
        if _plugin_problems is None:
            _plugin_problems = _load_plugins()
        problems = list(_plugin_problems)
    if problems:
        raise LayoutPluginError("; ".join(problems))


def _load_plugins() -> list[str]:
    problems = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        where = f"layout plugin {point.name!r} ({point.value})"
        try:
            layout = point.load()
        except Exception as exc:  # a broken plugin is reported, not raised from here
            problems.append(f"{where}: cannot load: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(layout, Layout):
            problems.append(
                f"{where}: is a {type(layout).__name__}, not a market_data_services Layout"
            )
            continue
        try:
            register(layout)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def layouts(kind: str) -> tuple[Layout[DataFile, object], ...]:
    """The layouts of ``kind``, in sniffing order."""
    with _lock:
        return tuple(LAYOUTS[kind].values())


def layout_names(kind: str) -> tuple[str, ...]:
    return tuple(layout.name for layout in layouts(kind))


def check_layout(kind: str, layout: str | None) -> None:
    """Raise ValueError for a forced layout that is not registered, listing the valid ones."""
    names = layout_names(kind)
    if layout is not None and layout not in names:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(names)}")


def inspect_layout(
    kind: str,
    path: Path,
    layout: str | None = None,
    *,
    time_unit: str = "auto",
    latest_ms: int | None = None,
) -> DataFile:
    """Tell the layout of ``path`` from its first line (or check the forced one), then let
    that layout check the file's head and first time."""
    load_plugins()
    check_layout(kind, layout)
    check_time_unit(time_unit)
    candidates = layouts(kind)
    error = candidates[0].error
    first = first_line(read_head(path, error))
    forced = None if layout is None else LAYOUTS[kind][layout]
    if not first:
        return (forced or candidates[0]).empty(path)
    found = next((candidate for candidate in candidates if candidate.sniff(first)), None)
    if found is None:
        raise error(path, f"the first line {first[:60]!r} is {_none_of(candidates)}")
    if forced is not None and forced is not found:
        raise error(path, forced.refuse(path, first, found))
    return found.inspect(path, first, time_unit=time_unit, latest_ms=latest_ms)


def _none_of(candidates: tuple[Layout[DataFile, object], ...]) -> str:
    named = [f"{c.signature} ({c.name})" for c in candidates]
    if len(named) == 1:
        return f"not {named[0]}"
    if len(named) == 2:
        return f"neither {named[0]} nor {named[1]}"
    return f"none of these: expected {', '.join(named[:-1])} or {named[-1]}"


def read_file(kind: str, data_file: DataFile, options: ReadOptions) -> Iterator[object]:
    """The chunks of an inspected file, read by its layout."""
    with _lock:
        layout = LAYOUTS[kind][data_file.layout]
    return layout.read(data_file, options)


__all__ = [
    "KINDS",
    "LAYOUTS",
    "PLUGIN_GROUP",
    "DataFile",
    "Layout",
    "LayoutPluginError",
    "ReadOptions",
    "check_layout",
    "inspect_layout",
    "layout_names",
    "layouts",
    "load_plugins",
    "read_file",
    "register",
]
