"""Hash once, while copying; atomic, fsynced writes; read-back from disk, not from the cache.

Where the file system takes it, a large file is read, and a copy written and read back, with
``O_DIRECT``: the bytes go from the device into the copy's own (page-aligned, reused, on huge
pages where the kernel gives them) buffers, from them to the device and back, with no page-cache
copy on the way and no chance that the read-back is answered from memory. Where it refuses
(``EINVAL``), the same file is read buffered, the copy written buffered with writeback started
as it goes, and its pages dropped before the read-back.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import hashlib
import mmap
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
# O_DIRECT wants offsets, lengths and buffer addresses in multiples of the device's logical
# block; 4 KiB covers 512-byte and 4 KiB devices alike (and is the page size mmap aligns to).
ALIGN = 4096


@dataclass(frozen=True, kw_only=True)
class Digest:
    sha256: str
    size: int


def aligned(size: int) -> int:
    """``size`` rounded up to a whole number of ``ALIGN`` blocks."""
    return -(-size // ALIGN) * ALIGN


#: How often a copy waiting for buffers looks whether it was told to stop (seconds).
_ABORT_POLL = 0.1


class BufferPool:
    """The copy and hash buffers of the whole process, within ``budget`` bytes.

    Allocating (and zeroing) megabytes for every file costs more than copying a small photo, so
    buffers are kept and handed on. Each is an anonymous mapping (:func:`anonymous_buffer`): it
    starts on a page and is whole blocks long, as ``O_DIRECT`` takes it. A station serving many
    recorders at once runs many copies at once; the budget keeps their memory flat: a copy gets
    up to the buffers it asks for, at least the few it needs, and waits (first come, first
    served) while the others hold the rest. A thread holds one lease at a time, so waiting
    cannot deadlock; one lease larger than the budget is still granted when nothing else is
    held. Buffers are kept for the next copy up to ``keep`` spare ones; the rest are unmapped."""

    def __init__(self, budget: int, *, keep: int) -> None:
        self.budget = budget
        self.keep = keep
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()
        self._spare: list[mmap.mmap] = []
        self._held = 0  # bytes leased out
        self._peak = 0

    @contextlib.contextmanager
    def lease(self, size: int, *, want: int, least: int = 1,
              abort: threading.Event | None = None) -> Iterator[list[mmap.mmap]]:
        """Up to ``want`` buffers (at least ``least``) for the ``with`` block. Setting
        ``abort`` while waiting for them ends the wait with ``ShutdownRequested`` (a cold
        stop does not wait for another copy to give some back)."""
        buffers = self._take(aligned(size), want, least, abort)
        try:
            yield buffers
        finally:
            self._give(buffers)

    def take(self, size: int, count: int) -> list[mmap.mmap]:
        """``count`` buffers of ``size`` bytes (rounded up to whole blocks), waiting their turn,
        to be handed back with :meth:`give`, possibly by another thread: an upload reads a
        part into them and the part's sender gives them back once it is sent. Waiting cannot
        deadlock while what a thread holds is on its way back without waiting on the pool."""
        return self._take(aligned(size), count, count)

    def give(self, buffers: list[mmap.mmap]) -> None:
        """Hand back buffers from :meth:`take`."""
        self._give(buffers)

    @property
    def held(self) -> int:
        """Bytes leased out now."""
        with self._cond:
            return self._held

    @property
    def peak(self) -> int:
        """The most bytes ever leased out at once."""
        with self._cond:
            return self._peak

    def _take(self, size: int, want: int, least: int,
              abort: threading.Event | None = None) -> list[mmap.mmap]:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (self._queue[0] is ticket
                           and (not self._held or self._held + least * size <= self.budget)):
                    if abort is not None and abort.is_set():
                        raise ShutdownRequested(0, abort=True)
                    # an abort is not a notification: look at it a few times a second
                    self._cond.wait(_ABORT_POLL if abort is not None else None)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            count = max(least, min(want, (self.budget - self._held) // size))
            self._held += count * size
            self._peak = max(self._peak, self._held)
            same = [b for b in self._spare if len(b) == size][:count]
            for buf in same:
                self._spare.remove(buf)
        return same + [anonymous_buffer(size) for _ in range(count - len(same))]

    def _give(self, buffers: list[mmap.mmap]) -> None:
        with self._cond:
            self._held -= sum(len(b) for b in buffers)
            self._spare[:0] = buffers
            extra, self._spare = self._spare[self.keep:], self._spare[:self.keep]
            self._cond.notify_all()
        for buf in extra:
            with contextlib.suppress(BufferError):  # a view still open: the GC unmaps it
                buf.close()


#: What the copy buffers ask of the kernel: huge pages, and no place in a forked child.
_BUFFER_ADVICE = (mmap.MADV_HUGEPAGE, mmap.MADV_DONTFORK)


def anonymous_buffer(size: int) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes for direct I/O, backed by transparent
    huge pages where the kernel has them for the asking (``madvise`` mode, Debian's default).

    A 4 MiB buffer then spans two 2 MiB pages instead of 1024 small ones: each ``O_DIRECT``
    read or write pins two pages, not a thousand, and hands the device a few long segments,
    so fewer and larger requests reach the disk. A shared mapping (``mmap``'s default) would
    be shmem, which takes huge pages only where the system says so for all shmem; private
    memory is the buffer's own. ``MADV_DONTFORK`` keeps it out of a forked child, so a fork
    during a direct read can never leave the read's bytes in the child's copy of a page.
    A kernel without either advice keeps the buffer as it is: both only change speed."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    for advice in _BUFFER_ADVICE:
        with contextlib.suppress(OSError):
            buf.madvise(advice)
    return buf


# 32 buffers of the default size: a recorder alone copies two files with four each; two dozen
# recorders at once share them instead of holding 16 MiB for every file being copied.
BUFFERS = BufferPool(32 * DEFAULT_BUFFER, keep=2 * _POOL)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _fill(fd: int, buf: mmap.mmap) -> int:
    """Read into ``buf`` until it is full or the file ends: every buffer but the last is then
    whole blocks, as ``O_DIRECT`` needs, whatever short reads the file system gives. A file
    system that took ``O_DIRECT`` but refuses the read itself (``EINVAL``) is read on without
    it, from the device still (its cached pages dropped first)."""
    got = 0
    with memoryview(buf) as view:
        while got < len(view):
            try:
                n = os.readv(fd, [view[got:]])
            except OSError as exc:
                if exc.errno != errno.EINVAL or not _drop_direct(fd):
                    raise
                continue
            if not n:
                break
            got += n
    return got


def _drop_direct(fd: int) -> bool:
    """Turn ``O_DIRECT`` off for a file that has it, dropping its cached pages so that what
    is read next still comes from the device; False if it did not have it."""
    if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
        return False
    set_direct(fd, False)
    drop_cache(fd)
    return True


def _fill_source(fd: int, buf: mmap.mmap, offset: int) -> int:
    """:func:`_fill` from a recorder: a read error is the source's fault, not the store's.
    Say so, so the caller can tell a pulled recorder or a bad sector from a broken store."""
    try:
        return _fill(fd, buf)
    except OSError as exc:
        raise source_read_error(fd, exc, offset) from exc


def source_read_error(fd: int, exc: OSError, offset: int = 0) -> SourceReadError:
    """The error for a failed read of a recorder file, naming where the read that failed
    began (the file's position: the buffer's offset and what was read into it)."""
    try:
        at = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        at = offset
    return SourceReadError(f"cannot read at byte {at}: {exc.strerror or exc}")


def set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for an open file; False if its file system refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    want = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    if want == flags:
        return True
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, want)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


class _Sink:
    """Where a copy's bytes go, buffer after buffer, at increasing offsets.

    With ``direct``, each whole-block buffer is written with ``O_DIRECT`` from the buffer it
    was read into: no page-cache copy, and nothing left dirty for the fsync to find. The tail
    that is not a whole block (only the last buffer can have one) is written after ``O_DIRECT``
    is turned off again: a few bytes through the page cache, which the fsync then writes. That
    keeps the file its exact size at every moment (padding the last block and truncating it
    after would leave, between the two, a file longer than its source). A file system that
    takes the flag but refuses the I/O (``EINVAL``) gets the rest buffered. Without
    ``direct``, writeback is started every ``WRITEBACK_STEP`` so the final fsync has little
    left to do."""

    def __init__(self, fd: int, *, direct: bool) -> None:
        self.fd = fd
        self.offset = 0
        self.flushed = 0
        self.direct = direct and set_direct(fd, True)
        self.checker: _ReadBack | None = None  # reads back what is made durable, as it goes
        self.checked = 0  # bytes handed to it

    def make_durable(self) -> None:
        """fdatasync what was written, and hand it to the read-back."""
        if self.checker is not None and self.offset > self.checked:
            os.fdatasync(self.fd)
            self.checked = self.offset
            self.checker.durable(self.offset)

    def write(self, view: memoryview) -> None:
        self._write(view)
        if self.checker is not None and self.offset - self.checked >= CHECK_STEP:
            self.make_durable()

    def _write(self, view: memoryview) -> None:
        if self.direct:
            whole = len(view) - len(view) % ALIGN
            if whole:
                try:
                    _pwrite_all(self.fd, view[:whole], self.offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._buffered()
                    _pwrite_all(self.fd, view[:whole], self.offset)
                self.offset += whole
                view = view[whole:]
            if not view:
                return
            self._buffered()
        _pwrite_all(self.fd, view, self.offset)
        self.offset += len(view)
        if self.offset - self.flushed >= WRITEBACK_STEP:
            start_writeback(self.fd, self.flushed, self.offset - self.flushed)
            self.flushed = self.offset

    def _buffered(self) -> None:
        set_direct(self.fd, False)
        self.direct = False
        self.flushed = self.offset  # what went direct is not in the page cache


class _ReadAhead:
    """Reads a file on a helper thread into a small pool of buffers, so the next read overlaps
    hashing (and writing) of the last one. Iterate for ``(buffer, length)``; hand every buffer
    back with :meth:`release`. Read errors surface as :class:`SourceReadError`."""

    def __init__(self, fd: int, buffers: list[mmap.mmap],
                 abort: threading.Event | None = None) -> None:
        # Read with O_DIRECT where the file system takes it: the device writes straight into
        # the (page-aligned, whole-block) buffers, where a buffered read fills the page cache
        # and then copies every byte out of it, the largest CPU cost of a copy after its two
        # hashes. Each buffer is filled whole, so every read starts on a block; a read the file
        # system refuses (EINVAL: any, or one at the unaligned end of the file after its short
        # last read) turns the flag off and goes on buffered (``_fill``).
        set_direct(fd, True)
        self._fd = fd
        self._abort = abort
        self._free: queue.Queue[mmap.mmap | None] = queue.Queue()
        self._full: queue.Queue[tuple[mmap.mmap, int] | BaseException] = queue.Queue()
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
                n = _fill_source(self._fd, buf, offset)
                self._full.put((buf, n))
                if n < len(buf):
                    if n:
                        self._full.put((buf, 0))
                    return
                offset += n
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._full.put(exc)

    def __iter__(self) -> Iterator[tuple[mmap.mmap, int]]:
        while True:
            got = self._full.get()
            if isinstance(got, BaseException):
                raise got
            if not got[1]:
                return
            yield got

    def release(self, buf: mmap.mmap) -> None:
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


def _copy_in_place(src_fd: int, sink: _Sink, *, buffer_size: int,
                   abort: threading.Event | None, on_bytes: OnBytes | None) -> Digest:
    """The same for a file smaller than one buffer: threads would cost more than they save."""
    digest = hashlib.sha256()
    with BUFFERS.lease(buffer_size, want=1, abort=abort) as (buf,):
        return _copy_small(src_fd, sink, buf, digest, abort=abort, on_bytes=on_bytes)


def _copy_small(src_fd: int, sink: _Sink, buf: mmap.mmap, digest: hashlib._Hash, *,
                abort: threading.Event | None, on_bytes: OnBytes | None) -> Digest:
    total = 0
    while True:
        if abort is not None and abort.is_set():
            raise ShutdownRequested(0, abort=True)
        n = _fill_source(src_fd, buf, total)
        if not n:
            return Digest(sha256=digest.hexdigest(), size=total)
        with memoryview(buf) as whole:
            view = whole[:n]
            digest.update(view)
            sink.write(view)
            view.release()
        total += n
        if on_bytes is not None:
            on_bytes(n)
        if n < len(buf):
            return Digest(sha256=digest.hexdigest(), size=total)


class _ReadBack:
    """Reads a copy back from the device while the copy goes on: each stretch of it, once an
    ``fdatasync`` has made it durable, is read with ``O_DIRECT`` (never from memory) on a
    thread of its own and hashed in order. A large object is then proven about when its last
    byte is written, where reading it back after the copy took as long again.

    ``check_fd`` is the copy opened a second time, for reading, with ``O_DIRECT`` on; ``buf``
    is a buffer of the copy's own lease (a second lease, waited for while the copy holds its
    first, could deadlock the pool). The writer calls :meth:`durable` after an ``fdatasync``
    with the length written so far, and :meth:`finish` for the digest of what the device gave
    back (None if it could not be read back with ``O_DIRECT``: the caller then reads it back
    the slow way). A read error is raised to the writer at its next :meth:`durable`."""

    def __init__(self, check_fd: int, buf: mmap.mmap) -> None:
        self._fd = check_fd
        self._buf = buf
        self._ranges: queue.Queue[int | None] = queue.Queue()  # durable lengths, in order
        self._digest = hashlib.sha256()
        self._total = 0
        self._given_up = False  # O_DIRECT reads refused
        self._stop = False  # abandoned: read no more
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ingestd-readback", daemon=True)
        self._thread.start()

    def durable(self, length: int) -> None:
        if self.failure is not None:
            raise self.failure  # no use copying on to a store that cannot be read back
        self._ranges.put(length)

    def _run(self) -> None:
        while (upto := self._ranges.get()) is not None:
            if self._given_up or self._stop or self.failure is not None:
                continue  # drained to the end, so the writer is never kept waiting
            try:
                self._read_to(upto)
            except BaseException as exc:  # noqa: BLE001 - handed to the copying thread
                self.failure = exc

    def _read_to(self, upto: int) -> None:
        with memoryview(self._buf) as view:
            while self._total < upto and not self._stop:
                want = aligned(min(len(view), upto - self._total))
                try:
                    n = read_back(self._fd, view[:want], self._total)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._given_up = True  # the file system refuses O_DIRECT reads
                    return
                if not n:
                    return  # shorter on the device than written: the digests will differ
                n = min(n, upto - self._total)
                self._digest.update(view[:n])
                self._total += n

    def finish(self) -> Digest | None:
        """Wait for the read-back: the digest of what the device gave back, or None if the
        file system refused the ``O_DIRECT`` reads."""
        self._ranges.put(None)
        self._thread.join()
        if self.failure is not None:
            raise self.failure
        if self._given_up:
            return None
        return Digest(sha256=self._digest.hexdigest(), size=self._total)

    def abandon(self) -> None:
        """Stop reading (the copy failed or was stopped) and wait for the thread."""
        self._stop = True
        self._ranges.put(None)
        self._thread.join()


def read_back(fd: int, view: memoryview, offset: int) -> int:
    """One read of a copy, from the device (``fd`` has ``O_DIRECT``)."""
    return os.preadv(fd, [view], offset)


def open_for_read_back(path: Path, written: int) -> int | None:
    """``path`` opened a second time, to be read back from the device with ``O_DIRECT``
    while it is written through ``written``; None where the file system refuses the flag.
    It must be the very file ``written`` is open on, not one put in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mine, theirs = os.fstat(fd), os.fstat(written)
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            raise OSError(errno.ESTALE, "the copy being written was replaced", str(path))
        if set_direct(fd, True):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


#: How much of a large copy is made durable (``fdatasync``) at a time, to be read back while
#: the rest is written.
CHECK_STEP = 32 * 2**20


def copy_hash_and_check(src_fd: int, dst_fd: int, dst_path: Path, *,
                        buffer_size: int = DEFAULT_BUFFER,
                        abort: threading.Event | None = None,
                        on_bytes: OnBytes | None = None) -> tuple[Digest, Digest | None]:
    """:func:`copy_and_hash` with ``direct`` into ``dst_fd`` (open on ``dst_path``), and the
    copy read back from the device as it is made durable: the digest of the bytes copied, and
    that of the bytes the device gave back (None where that was not done: a copy smaller than
    one buffer, or a file system that refused the ``O_DIRECT`` reads; read it back after the
    fsync then). However the copy was written (a tail shorter than a block, or all of it on a
    file system that refuses ``O_DIRECT`` writes, goes through the page cache), an
    ``O_DIRECT`` read after the ``fdatasync`` is answered by the device."""
    check_fd = None if _small(src_fd, buffer_size) else open_for_read_back(dst_path, dst_fd)
    if check_fd is None:
        return copy_and_hash(src_fd, dst_fd, buffer_size=buffer_size, abort=abort,
                             on_bytes=on_bytes, direct=True), None
    try:
        sink = _Sink(dst_fd, direct=True)
        # One lease for the copy and its read-back: a thread group never holds one lease
        # while waiting for another, so the pool cannot deadlock however many copies run.
        with BUFFERS.lease(buffer_size, want=_POOL + 1, least=3, abort=abort) as buffers:
            # The lease's own list is left whole: it is what goes back to the pool.
            checker = _ReadBack(check_fd, buffers[-1])
            sink.checker = checker
            try:
                digest = _copy_large(src_fd, sink, buffers[:-1], abort=abort,
                                     on_bytes=on_bytes)
                sink.make_durable()
            except BaseException:
                checker.abandon()
                raise
            return digest, checker.finish()
    finally:
        os.close(check_fd)


def copy_and_hash(src_fd: int, dst_fd: int, *, buffer_size: int = DEFAULT_BUFFER,
                  abort: threading.Event | None = None,
                  on_bytes: OnBytes | None = None, direct: bool = False) -> Digest:
    """Read ``src_fd`` to its end, writing every byte to ``dst_fd`` (a new, empty file) and
    hashing it, in one pass.

    The hash is taken of exactly the bytes handed to the writer. Reading, hashing and writing
    run on three threads (all three release the GIL), so a large file costs about the slowest
    of the three rather than their sum; a file smaller than one buffer is done in place. Memory
    stays at ``_POOL`` buffers at most whatever the file size, leased from :data:`BUFFERS`.
    With ``direct`` the copy is written with ``O_DIRECT`` where the file system takes it (see
    :class:`_Sink`); the caller's fsync is still what makes it durable. Setting ``abort``
    stops the copy between two buffers with :class:`ShutdownRequested`. ``on_bytes`` hears
    of every buffer hashed (a progress bar).
    """
    sink = _Sink(dst_fd, direct=direct)
    if _small(src_fd, buffer_size):
        return _copy_in_place(src_fd, sink, buffer_size=buffer_size, abort=abort,
                              on_bytes=on_bytes)
    with BUFFERS.lease(buffer_size, want=_POOL, least=2, abort=abort) as buffers:
        return _copy_large(src_fd, sink, buffers, abort=abort, on_bytes=on_bytes)


def _copy_large(src_fd: int, sink: _Sink, buffers: list[mmap.mmap], *,
                abort: threading.Event | None, on_bytes: OnBytes | None) -> Digest:
    digest = hashlib.sha256()
    reader = _ReadAhead(src_fd, buffers, abort)
    pending: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def writer() -> None:
        while True:
            job = pending.get()
            if job is None:
                return
            buf, n = job
            try:
                if not failure:
                    with memoryview(buf) as view:
                        sink.write(view[:n])
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
            with memoryview(buf) as view:
                digest.update(view[:n])
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
    """Hash a file from its start, reading ahead on a helper thread for large files. Reads
    fill whole buffers, so a file opened with ``O_DIRECT`` is read at aligned offsets."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    if _small(fd, buffer_size):
        with BUFFERS.lease(buffer_size, want=1) as (buf,):
            return _hash_small(fd, buf, digest, on_bytes)
    with BUFFERS.lease(buffer_size, want=2) as buffers:
        return _hash_large(fd, buffers, digest, on_bytes)


def _hash_small(fd: int, buf: mmap.mmap, digest: hashlib._Hash,
                on_bytes: OnBytes | None) -> Digest:
    total = 0
    while n := _fill(fd, buf):
        with memoryview(buf) as view:
            digest.update(view[:n])
        total += n
        if on_bytes is not None:
            on_bytes(n)
        if n < len(buf):
            break
    return Digest(sha256=digest.hexdigest(), size=total)


def _hash_large(fd: int, buffers: list[mmap.mmap], digest: hashlib._Hash,
                on_bytes: OnBytes | None) -> Digest:
    total = 0
    reader = _ReadAhead(fd, buffers)
    try:
        for buf, n in reader:
            with memoryview(buf) as view:
                digest.update(view[:n])
            total += n
            reader.release(buf)
            if on_bytes is not None:
                on_bytes(n)
    finally:
        reader.close()
    return Digest(sha256=digest.hexdigest(), size=total)


def hash_file(path: Path, *, buffer_size: int = DEFAULT_BUFFER, from_disk: bool = False) -> Digest:
    """Hash a regular file. ``from_disk``: read it from the device, not from the page cache,
    with ``O_DIRECT`` where the file system takes it, else after dropping its cached pages."""
    # Not blocking on open: a FIFO put where a file should be must not hang the reader.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        if not from_disk:
            return hash_fd(fd, buffer_size=buffer_size)
        if not set_direct(fd, True):
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
