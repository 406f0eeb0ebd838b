"""Deleting one file from a recorder without ever deleting anything else.

Between hashing a file and deleting it, a recorder's folder can change under us: the file
replaced or appended to, or a folder on its path swapped for a symbolic link that leads off the
recorder. So nothing here goes by path. The file's folder is reached one component at a time
from the recorder's root, each opened relative to its parent with ``O_DIRECTORY|O_NOFOLLOW`` and
required to be on the root's file system. The file is then renamed aside within that folder
(to a hidden name no one else uses), and what lies at the aside name is the only thing ever
hashed, compared and unlinked; if it is not what was stored, it is renamed back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from typing import Any

#: Names a file gets while it is being wiped. They end in the file's own name, so a file left
#: aside by a crash still matches the recording patterns and is taken again at the next dock.
ASIDE_PREFIX = ".ingestd-wipe-"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_RENAME_NOREPLACE = 1  # <linux/fs.h>


class WipeRefused(Exception):
    """The file is not safe to delete (why, in the message); nothing was deleted."""


@contextlib.contextmanager
def folder_of(root: bytes, rel: bytes) -> Iterator[tuple[int, bytes]]:
    """The descriptor of the folder holding ``rel`` (under ``root``) and the file's name.

    Every component below ``root`` -- and ``root``'s own last component -- is opened without
    following symbolic links, and must be a folder on the same file system as ``root``.
    """
    parts = [p for p in rel.split(b"/") if p]
    if not parts or any(p in (b".", b"..") for p in parts):
        raise WipeRefused(f"not a path inside the recorder: {rel!r}")
    parent, base = os.path.split(os.path.normpath(root))
    fds: list[int] = []
    try:
        fds.append(os.open(parent or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        fds.append(_open_dir(base, fds[-1]))
        device = os.fstat(fds[-1]).st_dev
        for part in parts[:-1]:
            fds.append(_open_dir(part, fds[-1]))
            if os.fstat(fds[-1]).st_dev != device:
                raise WipeRefused(f"{part!r} is another file system mounted in the recorder")
        yield fds[-1], parts[-1]
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _open_dir(name: bytes, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise WipeRefused(f"{os.fsdecode(name)!r} is not a folder (a symbolic link?)") \
                from exc
        raise


def set_aside(dir_fd: int, name: bytes) -> bytes:
    """Rename ``name`` to a fresh hidden name in the same folder; return that name."""
    aside = f"{ASIDE_PREFIX}{secrets.token_hex(6)}-".encode() + name
    _rename_noreplace(dir_fd, name, aside)
    return aside


def put_back(dir_fd: int, aside: bytes, name: bytes) -> bool:
    """Give the file its name again; False (it stays at ``aside``) if that name is taken now."""
    try:
        _rename_noreplace(dir_fd, aside, name)
    except FileExistsError:
        return False
    return True


def open_file(dir_fd: int, name: bytes) -> int:
    """Open a regular file in the folder read-only, never through a link, never a FIFO's reader."""
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WipeRefused("not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def unlink(dir_fd: int, name: bytes) -> None:
    os.unlink(name, dir_fd=dir_fd)


def _rename_noreplace(dir_fd: int, src: bytes, dst: bytes) -> None:
    """renameat2(RENAME_NOREPLACE): an existing ``dst`` is never overwritten.

    Where the file system does not support the flag (EINVAL, e.g. some FUSE drivers), the
    check and the rename are two steps; the names renamed to are ours or were ours a moment ago.
    """
    result = _renameat2(dir_fd, src, dir_fd, dst, _RENAME_NOREPLACE)
    if result == 0:
        return
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOSYS):
        raise OSError(code, os.strerror(code), os.fsdecode(src))
    try:
        os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dst))


def _renameat2(old_fd: int, old: bytes, new_fd: int, new: bytes, flags: int) -> int:
    if _libc_renameat2 is None:
        ctypes.set_errno(errno.ENOSYS)
        return -1
    return int(_libc_renameat2(old_fd, old, new_fd, new, flags))


def _load_renameat2() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_libc_renameat2 = _load_renameat2()
