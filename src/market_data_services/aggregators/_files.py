"""Input files shared by every ingester: finding them, opening them, sniffing their head.

Files may be plain text, gzip or a single-member zip; the compression is told from the
bytes, not the name. A file that is not of the kind being loaded raises a subclass of
``WrongFileKindError`` naming the file and the reason, before anything is written.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, ClassVar, cast

#: Bytes read to tell a file's layout.
SNIFF_BYTES = 8192


class WrongFileKindError(ValueError):
    """A file that is not of the kind being loaded (as opposed to one with some bad rows)."""

    kind: ClassVar[str] = "data"

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: not {self.kind} file: {reason}")
        self.path = str(path)
        self.reason = reason


def find_files(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    """The files named, and the files under the directories named whose names end with
    one of ``suffixes`` (any case), sorted by path within each directory."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def open_binary(path: Path, error: type[WrongFileKindError]) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip or a single-member zip."""
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    if magic == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise error(path, f"a broken zip archive ({exc})") from None
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            archive.close()
            raise error(
                path, f"a zip archive with {len(members)} files; expected exactly one data file"
            )
        return _ZipMember(archive, members[0])
    return path.open("rb")


class _ZipMember(io.BufferedReader):
    """A zip member that closes its archive with it."""

    def __init__(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
        super().__init__(archive.open(member))  # type: ignore[arg-type]
        self._archive = archive

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._archive.close()


def open_text(path: Path, error: type[WrongFileKindError]) -> IO[str]:
    """The file as UTF-8 text (decompressed), newlines left as they are for ``csv``."""
    return io.TextIOWrapper(
        open_binary(path, error), encoding="utf-8", errors="replace", newline=""
    )


def read_head(path: Path, error: type[WrongFileKindError], size: int = SNIFF_BYTES) -> str:
    """The first ``size`` bytes of the (decompressed) file as text, without a BOM.

    Raises ``error`` for a file that cannot be read, holds binary content or is not UTF-8.
    """
    try:
        with open_binary(path, error) as stream:
            head = stream.read(size)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise error(path, f"cannot be read ({exc})") from None
    if b"\x00" in head:
        raise error(path, "binary content, not text")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            raise error(path, "not UTF-8 text") from None
        text = head[: exc.start].decode("utf-8")
    return text.lstrip("\ufeff")


def first_line(text: str) -> str:
    """The first line of ``text`` that is not blank, stripped; '' when there is none."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


__all__ = [
    "SNIFF_BYTES",
    "WrongFileKindError",
    "find_files",
    "first_line",
    "open_binary",
    "open_text",
    "read_head",
]
