"""Hash once, while copying; atomic, fsynced writes; read-back from disk, not from the cache."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ShutdownRequested, SourceReadError

DEFAULT_BUFFER = 4 * 2**20
_POOL = 4  # buffers in flight: being read, being hashed, being written, one spare
WRITEBACK_STEP = 32 * 2**20  # a large copy's bytes start for the disk in steps of this


@dataclass(frozen=True, kw_only=True)
class Digest:
    sha256: str
    size: int


_local = threading.local()


def _buffers(size: int, count: int) -> list[bytearray]:
    """This thread's reusable buffers: allocating (and zeroing) megabytes for every file costs
    more than copying a small photo. A thread does one copy or one hash at a time, so they
    all draw on one set: a file thread holds ``_POOL`` buffers at most."""
    pools: dict[int, list[bytearray]] = _local.__dict__.setdefault("pools", {})
    pool = pools.setdefault(size, [])
    while len(pool) < count:
        pool.append(bytearray(size))
    return pool[:count]


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _ReadAhead:
    """Reads a file on a helper thread into a small pool of buffers, so the next read overlaps
    hashing (and writing) of the last one. Iterate for ``(buffer, length)``; hand every buffer
    back with :meth:`release`. Read errors surface as :class:`SourceReadError`."""

    def __init__(self, fd: int, buffers: list[bytearray],
                 abort: threading.Event | None = None) -> None:
        self._fd = fd
        self._abort = abort
        self._free: queue.Queue[bytearray | None] = queue.Queue()
        self._full: queue.Queue[tuple[bytearray, int] | BaseException] = queue.Queue()
        for buf in buffers:
            self._free.put(buf)
        self._thread = threading.Thread(target=self._run, name="ingestd-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        offset = 0
        try:
            while True:
                if self._abort is not None and self._abort.is_set():
                    raise ShutdownRequested(0, abort=True)
                buf = self._free.get()
                if buf is None:
                    return
                try:
                    n = os.readv(self._fd, [buf])
                except OSError as exc:
                    # The source's fault, not the store's: say so, so the caller can tell a
                    # pulled recorder or a bad sector from a full or broken store.
                    raise SourceReadError(
                        f"cannot read at byte {offset}: {exc.strerror or exc}") from exc
                self._full.put((buf, n))
                if not n:
                    return
                offset += n
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._full.put(exc)

    def __iter__(self) -> Iterator[tuple[bytearray, int]]:
        while True:
            got = self._full.get()
            if isinstance(got, BaseException):
                raise got
            if not got[1]:
                return
            yield got

    def release(self, buf: bytearray) -> None:
        self._free.put(buf)

    def close(self) -> None:
        self._free.put(None)  # wakes the reader if it waits for a buffer
        self._thread.join()


def _small(fd: int, buffer_size: int) -> bool:
    try:
        return os.fstat(fd).st_size < buffer_size
    except OSError:
        return False


OnBytes = Callable[[int], None]


def _copy_in_place(src_fd: int, dst_fd: int, *, buffer_size: int,
                   abort: threading.Event | None, on_bytes: OnBytes | None) -> Digest:
    """The same for a file smaller than one buffer: threads would cost more than they save."""
    digest = hashlib.sha256()
    buf = _buffers(buffer_size, 1)[0]
    total = 0
    while True:
        if abort is not None and abort.is_set():
            raise ShutdownRequested(0, abort=True)
        try:
            n = os.readv(src_fd, [buf])
        except OSError as exc:
            raise SourceReadError(f"cannot read at byte {total}: {exc.strerror or exc}") from exc
        if not n:
            return Digest(sha256=digest.hexdigest(), size=total)
        view = memoryview(buf)[:n]
        digest.update(view)
        _write_all(dst_fd, view)
        total += n
        if on_bytes is not None:
            on_bytes(n)


def copy_and_hash(src_fd: int, dst_fd: int, *, buffer_size: int = DEFAULT_BUFFER,
                  abort: threading.Event | None = None,
                  on_bytes: OnBytes | None = None) -> Digest:
    """Read ``src_fd`` to its end, writing every byte to ``dst_fd`` and hashing it, in one pass.

    The hash is taken of exactly the bytes handed to the writer. Reading, hashing and writing
    run on three threads (all three release the GIL), so a large file costs about the slowest
    of the three rather than their sum; a file smaller than one buffer is done in place. Memory
    stays at ``_POOL`` buffers whatever the file size. Setting ``abort`` stops the copy between
    two buffers with :class:`ShutdownRequested`. ``on_bytes`` hears of every buffer hashed
    (a progress bar).
    """
    if _small(src_fd, buffer_size):
        return _copy_in_place(src_fd, dst_fd, buffer_size=buffer_size, abort=abort,
                              on_bytes=on_bytes)
    digest = hashlib.sha256()
    reader = _ReadAhead(src_fd, _buffers(buffer_size, _POOL), abort)
    pending: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def writer() -> None:
        written = flushed = 0
        while True:
            job = pending.get()
            if job is None:
                return
            buf, n = job
            try:
                if not failure:
                    _write_all(dst_fd, memoryview(buf)[:n])
                    written += n
                    if written - flushed >= WRITEBACK_STEP:
                        start_writeback(dst_fd, flushed, written - flushed)
                        flushed = written
            except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread
                failure.append(exc)
            finally:
                reader.release(buf)

    thread = threading.Thread(target=writer, name="ingestd-write", daemon=True)
    thread.start()
    total = 0
    try:
        for buf, n in reader:
            if failure:
                break
            digest.update(memoryview(buf)[:n])
            total += n
            pending.put((buf, n))
            if on_bytes is not None:
                on_bytes(n)
    finally:
        pending.put(None)
        thread.join()
        reader.close()
    if failure:
        raise failure[0]
    return Digest(sha256=digest.hexdigest(), size=total)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a file to disk now, without waiting for it.

    Left alone, the kernel holds gigabytes of a large copy dirty in memory until the fsync at
    its end, which then writes them all while nothing else happens. Asked to drop the range,
    Linux starts its writeback at once (and drops the pages once clean), so the disk writes
    while the copy still reads: the final fsync has little left to do."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:  # not supported by every file system (FUSE): the fsync still writes it all
        pass


def drop_cache(fd: int) -> None:
    """Ask the kernel to forget cached pages, so the next read comes from the device."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:  # not supported by every file system (FUSE); the read is still a real read
        pass


def hash_fd(fd: int, *, buffer_size: int = DEFAULT_BUFFER,
            on_bytes: OnBytes | None = None) -> Digest:
    """Hash a file from its start, reading ahead on a helper thread for large files."""
    digest = hashlib.sha256()
    total = 0
    os.lseek(fd, 0, os.SEEK_SET)
    if _small(fd, buffer_size):
        buf = _buffers(buffer_size, 1)[0]
        while n := os.readv(fd, [buf]):
            digest.update(memoryview(buf)[:n])
            total += n
            if on_bytes is not None:
                on_bytes(n)
        return Digest(sha256=digest.hexdigest(), size=total)
    reader = _ReadAhead(fd, _buffers(buffer_size, 2))
    try:
        for buf, n in reader:
            digest.update(memoryview(buf)[:n])
            total += n
            reader.release(buf)
            if on_bytes is not None:
                on_bytes(n)
    finally:
        reader.close()
    return Digest(sha256=digest.hexdigest(), size=total)


def hash_file(path: Path, *, buffer_size: int = DEFAULT_BUFFER, from_disk: bool = False) -> Digest:
    # Not blocking on open: a FIFO put where a file should be must not hang the reader.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
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
