"""O_DIRECT as the kernel sees it, and file systems that refuse it: what the store's copies
and the uploads' reads are checked against."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def is_direct(fd: int) -> bool:
    """Is ``fd`` open with O_DIRECT? Read from the kernel's own account of it, not fcntl."""
    text = Path(f"/proc/self/fdinfo/{fd}").read_text(encoding="ascii")
    flags = next(line for line in text.splitlines() if line.startswith("flags:"))
    return bool(int(flags.split()[1], 8) & os.O_DIRECT)


def refuse_direct_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the file system refuses O_DIRECT, as tmpfs did before Linux 6.6 and some
    FUSE file systems do: fcntl answers EINVAL to turning it on."""
    real = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)


def refuse_direct_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the file system takes the O_DIRECT flag and answers EINVAL to each read
    made with it (``os.readv``), as some do."""
    real = os.readv

    def readv(fd: int, buffers: list[memoryview]) -> int:
        if is_direct(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers)

    monkeypatch.setattr(os, "readv", readv)


def evict(path: Path) -> None:
    """Write the file's pages out and drop them from the page cache: its next read is from
    the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_through_the_cache(path: Path, size: int) -> bool:
    """Whether most of the file's ``size`` bytes are in the page cache after a read through it.
    Not all of them: the kernel may reclaim pages at any moment (DAMON's proactive reclaim
    runs on this kind of machine, and took two pages of a file read a moment before), while a
    read that bypassed the cache leaves at most a block."""
    return cached_bytes(path) > size // 2


def cached_bytes(path: Path) -> int:
    """How much of the file the page cache holds, by util-linux's ``fincore``."""
    fincore = shutil.which("fincore")
    if fincore is None:
        raise RuntimeError("needs fincore (Debian package util-linux)")
    out = subprocess.run([fincore, "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())
