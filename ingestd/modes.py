"""File modes of a station's home: the catalog holds party names and case numbers, the store
the footage itself. Nothing in a home is for other users, whatever the umask of whoever runs
``init``, the daemon or a command.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Folders: the owner, and a group of operators who may read (``ingestd`` and its admins).
DIR_MODE = 0o750
#: Files that change (configuration, catalog, mirror, locks).
FILE_MODE = 0o640


def make_dir(path: Path, mode: int = DIR_MODE) -> None:
    """``mkdir -p`` whose every new level gets ``mode`` (``Path.mkdir(parents=True)`` gives
    parents the umask's mode)."""
    missing: list[Path] = []
    at = path
    while not at.is_dir():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by another process
        os.chmod(folder, mode)  # mkdir's mode is cut by the umask; this one is not


def tighten(path: Path, mode: int) -> None:
    """Take away whatever bits of ``path`` go beyond ``mode`` (a home made before modes were
    set, or by hand); never adds any."""
    try:
        current = os.lstat(path).st_mode & 0o7777
    except FileNotFoundError:
        return
    if current & ~mode:
        os.chmod(path, current & mode)


def write_private(path: Path, text: str) -> None:
    """Create a new text file with :data:`FILE_MODE` (fails if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
