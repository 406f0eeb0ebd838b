"""Walking a recorder's files: names are data, never paths to follow.

Paths are kept as the exact bytes the file system holds. Symbolic links are not followed,
a directory reached twice (a bind-mount or file-system loop) is walked once, folders deeper
than ``MAX_DEPTH`` are not entered, and only regular files whose names match the configured
patterns are offered. Everything else the walk meets is yielded as :class:`Skipped` with its
kind, so that a session can account for every file it did not take.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..domain.canonical import display_path
from ..errors import NotRegularFile

log = logging.getLogger(__name__)

#: Folders nested deeper than this are not entered (recorders use two or three levels; a
#: deeper tree is a fault or a trap, and is reported rather than walked).
MAX_DEPTH = 16


class SkipKind(StrEnum):
    """Why the walk did not take something it saw."""

    SYMLINK = "symlink"
    FIFO = "fifo"
    DEVICE = "device"
    SOCKET = "socket"
    UNREADABLE = "unreadable"
    LOOP = "loop"
    TOO_DEEP = "too_deep"
    UNMATCHED = "unmatched"  # a name no pattern matches: perhaps footage with another extension
    IGNORED = "ignored"  # unmatched, at a path [ingest] ignore names: the recorder's own files


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    path: bytes  # absolute, as the OS holds it
    rel: bytes  # relative to the recorder's root
    size: int
    mtime_ns: int
    ino: int
    dev: int

    @property
    def display(self) -> str:
        return display_path(self.rel)


@dataclass(frozen=True, kw_only=True)
class Skipped:
    rel: bytes
    kind: SkipKind
    reason: str

    @property
    def display(self) -> str:
        return display_path(self.rel)


def _matcher(patterns: Sequence[str]) -> list[str]:
    return [p.lower() for p in patterns]


def matches(name: bytes, patterns: Sequence[str]) -> bool:
    text = os.fsdecode(name).lower()
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


def walk(root: Path, patterns: Sequence[str], *, ignore: Sequence[str] = (),
         max_depth: int = MAX_DEPTH) -> Iterator[SourceFile | Skipped]:
    """Yield matching regular files under ``root`` in a stable order, and what was skipped.
    ``ignore``: case-insensitive shell patterns on the path from ``root`` (``/`` between
    folders: ``SYSTEM/*``) of the recorder's own files; a regular file no pattern takes at such
    a path is skipped as ``ignored``, not ``unmatched``. Nothing else is ever ignored: a file a
    pattern takes is taken wherever it lies, and a link, a pipe or an unreadable folder may
    stand for footage."""
    wanted, own = _matcher(patterns), _matcher(ignore)
    base = os.fsencode(root)
    try:
        top = os.stat(base)
    except OSError as exc:
        yield Skipped(rel=b".", kind=SkipKind.UNREADABLE,
                      reason=f"cannot open recorder root: {exc.strerror}")
        return
    seen: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    stack: list[tuple[bytes, int]] = [(b"", 0)]
    while stack:
        rel_dir, depth = stack.pop()
        here = os.path.join(base, rel_dir) if rel_dir else base
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(rel=rel_dir or b".", kind=SkipKind.UNREADABLE,
                          reason=f"cannot list folder: {exc.strerror}")
            continue
        subdirs = []
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                yield Skipped(rel=rel, kind=SkipKind.UNREADABLE,
                              reason=f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    yield Skipped(rel=rel, kind=SkipKind.LOOP,
                                  reason="folder already walked (loop)")
                elif depth + 1 > max_depth:
                    yield Skipped(rel=rel, kind=SkipKind.TOO_DEEP,
                                  reason=f"folder nested deeper than {max_depth} levels "
                                         "(not walked)")
                else:
                    seen.add((st.st_dev, st.st_ino))
                    subdirs.append((rel, depth + 1))
                continue
            skipped = _not_taken(rel, entry.name, st.st_mode, wanted, own)
            if skipped is not None:
                yield skipped
                continue
            yield SourceFile(path=os.path.join(base, rel), rel=rel, size=st.st_size,
                             mtime_ns=st.st_mtime_ns, ino=st.st_ino, dev=st.st_dev)
        stack.extend(reversed(subdirs))


def _not_taken(rel: bytes, name: bytes, mode: int, wanted: Sequence[str],
               own: Sequence[str]) -> Skipped | None:
    """Why a non-folder entry is not offered, or None when it is. The type comes first,
    whatever the name: a link or a pipe may stand for recordings."""
    if stat.S_ISLNK(mode):
        return Skipped(rel=rel, kind=SkipKind.SYMLINK, reason="symbolic link (not followed)")
    if not stat.S_ISREG(mode):
        kind, what = special_kind(mode)
        return Skipped(rel=rel, kind=kind, reason=f"{what}, not a regular file (not read)")
    if not matches(name, wanted):
        if matches(rel, own):
            return Skipped(rel=rel, kind=SkipKind.IGNORED,
                           reason="known not to be footage ([ingest] ignore)")
        return Skipped(rel=rel, kind=SkipKind.UNMATCHED,
                       reason="name matches no configured pattern")
    return None


def special_kind(mode: int) -> tuple[SkipKind, str]:
    """The kind and a name for a file that is not a regular file, a folder or a link."""
    if stat.S_ISFIFO(mode):
        return SkipKind.FIFO, "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return SkipKind.SOCKET, "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return SkipKind.DEVICE, "device"
    return SkipKind.UNREADABLE, f"file of unknown type {stat.S_IFMT(mode):o}"


def open_source(path: bytes) -> int:
    """Open a recorder file read-only, never through a symbolic link, without touching atime.

    The file may have been replaced since the walk saw it: it is opened without blocking (a
    FIFO would otherwise wait for a writer for ever) and its type is checked on the open
    descriptor; anything but a regular file is refused with :class:`NotRegularFile`."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, flags)  # O_NOATIME needs ownership; the mount is read-only anyway
    return regular_or_refuse(fd, display_path(path))


def regular_or_refuse(fd: int, shown: str) -> int:
    """``fd`` in blocking mode if it is a regular file; otherwise closed, and refused."""
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = special_kind(mode)[1] if not stat.S_ISDIR(mode) else "folder"
            raise NotRegularFile(f"{shown} is a {what}, not a regular file: not read")
        os.set_blocking(fd, True)  # reads of a regular file wait for the disk, as they should
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path | bytes) -> int:
    """Open any file to be hashed (``verify FILE``) the same careful way: without blocking on
    a FIFO, and refused unless it is a regular file."""
    raw = os.fsencode(path)
    fd = os.open(raw, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    return regular_or_refuse(fd, display_path(raw))
