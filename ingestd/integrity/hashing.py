"""Hash once, while copying; atomic, fsynced writes; read-back from disk, not from the cache."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ShutdownRequested, SourceReadError

DEFAULT_BUFFER = 4 * 2**20
_POOL = 3  # buffers in flight: one being read and hashed, up to two waiting to be written


@dataclass(frozen=True, kw_only=True)
class Digest:
    sha256: str
    size: int


_local = threading.local()


def _buffers(size: int, count: int) -> list[bytearray]:
    """This thread's reusable buffers: allocating (and zeroing) megabytes for every file costs
    more than copying a small photo."""
    pool: dict[tuple[int, int], list[bytearray]] = _local.__dict__.setdefault("pools", {})
    key = (size, count)
    if key not in pool:
        pool[key] = [bytearray(size) for _ in range(count)]
    return pool[key]


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def copy_and_hash(src_fd: int, dst_fd: int, *, buffer_size: int = DEFAULT_BUFFER,
                  abort: threading.Event | None = None) -> Digest:
    """Read ``src_fd`` to its end, writing every byte to ``dst_fd`` and hashing it, in one pass.

    The hash is taken of exactly the bytes handed to the writer. Reading and hashing run on the
    calling thread and writing on a helper thread; both release the GIL, so they overlap. Memory
    stays at ``_POOL`` buffers whatever the file size. Setting ``abort`` stops the copy between
    two buffers with :class:`ShutdownRequested`.
    """
    digest = hashlib.sha256()
    free: queue.Queue[bytearray] = queue.Queue()
    for buf in _buffers(buffer_size, _POOL):
        free.put(buf)
    pending: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def writer() -> None:
        while True:
            job = pending.get()
            if job is None:
                return
            buf, n = job
            try:
                if not failure:
                    _write_all(dst_fd, memoryview(buf)[:n])
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failure.append(exc)
            finally:
                free.put(buf)

    thread = threading.Thread(target=writer, name="ingestd-copy-writer", daemon=True)
    thread.start()
    total = 0
    try:
        with os.fdopen(os.dup(src_fd), "rb", buffering=0) as src:
            while not failure:
                if abort is not None and abort.is_set():
                    raise ShutdownRequested(0, abort=True)
                buf = free.get()
                try:
                    n = src.readinto(buf)
                except OSError as exc:
                    # The source's fault, not the store's: say so, so the caller can tell a
                    # pulled recorder or a bad sector from a full or broken store.
                    raise SourceReadError(f"cannot read at byte {total}: {exc.strerror or exc}") \
                        from exc
                if not n:
                    free.put(buf)
                    break
                digest.update(memoryview(buf)[:n])
                total += n
                pending.put((buf, n))
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]
    return Digest(sha256=digest.hexdigest(), size=total)


def drop_cache(fd: int) -> None:
    """Ask the kernel to forget cached pages, so the next read comes from the device."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:  # not supported by every file system (FUSE); the read is still a real read
        pass


def hash_fd(fd: int, *, buffer_size: int = DEFAULT_BUFFER) -> Digest:
    digest = hashlib.sha256()
    buf = _buffers(buffer_size, 1)[0]
    view = memoryview(buf)
    total = 0
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        digest.update(view[:n])
        total += n
    return Digest(sha256=digest.hexdigest(), size=total)


def hash_file(path: Path, *, buffer_size: int = DEFAULT_BUFFER, from_disk: bool = False) -> Digest:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if from_disk:
            drop_cache(fd)
        return hash_fd(fd, buffer_size=buffer_size)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a small file so that a reader sees the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, memoryview(data))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
