"""Walking a recorder's files: names are data, never paths to follow.

Paths are kept as the exact bytes the file system holds. Symbolic links are not followed,
a directory reached twice (a bind-mount or file-system loop) is walked once, and only regular
files whose names match the configured patterns are offered.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain.canonical import display_path

log = logging.getLogger(__name__)


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
    reason: str

    @property
    def display(self) -> str:
        return display_path(self.rel)


def _matcher(patterns: Sequence[str]) -> list[str]:
    return [p.lower() for p in patterns]


def matches(name: bytes, patterns: Sequence[str]) -> bool:
    text = os.fsdecode(name).lower()
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


def walk(root: Path, patterns: Sequence[str]) -> Iterator[SourceFile | Skipped]:
    """Yield matching regular files under ``root`` in a stable order, and what was skipped."""
    wanted = _matcher(patterns)
    base = os.fsencode(root)
    try:
        top = os.stat(base)
    except OSError as exc:
        yield Skipped(rel=b".", reason=f"cannot open recorder root: {exc.strerror}")
        return
    seen: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        here = os.path.join(base, rel_dir) if rel_dir else base
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(rel=rel_dir or b".", reason=f"cannot list folder: {exc.strerror}")
            continue
        subdirs = []
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                yield Skipped(rel=rel, reason=f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISLNK(st.st_mode):
                # Reported whatever its name: a link may stand for a folder of recordings.
                yield Skipped(rel=rel, reason="symbolic link (not followed)")
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    yield Skipped(rel=rel, reason="folder already walked (loop)")
                    continue
                seen.add((st.st_dev, st.st_ino))
                subdirs.append(rel)
                continue
            if not matches(entry.name, wanted):
                continue
            if not stat.S_ISREG(st.st_mode):
                yield Skipped(rel=rel, reason="not a regular file")
                continue
            yield SourceFile(path=os.path.join(base, rel), rel=rel, size=st.st_size,
                             mtime_ns=st.st_mtime_ns, ino=st.st_ino, dev=st.st_dev)
        stack.extend(reversed(subdirs))


def open_source(path: bytes) -> int:
    """Open a recorder file read-only, never through a symbolic link, without touching atime."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        return os.open(path, flags)  # O_NOATIME needs ownership; the mount is read-only anyway
