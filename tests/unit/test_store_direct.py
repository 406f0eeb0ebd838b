"""The store's proof, whichever way its file system lets it write: byte-exact objects, fsynced
(file and folder) before they are read back, a read-back that comes from the device (with
O_DIRECT where the file system takes it, after dropping the cached pages where it refuses),
and a copy whose read-back differs from what was hashed never stored."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ingestd.store as store_mod
from ingestd.errors import ObjectDamaged, StoreError
from ingestd.integrity import hashing
from ingestd.store import Store
from tests.support.damage import flip_bit
from tests.support.direct import (
    cached_bytes,
    evict,
    is_direct,
    read_through_the_cache,
    refuse_direct_flag,
    refuse_direct_reads,
)

BUFFER = 64 * 1024
BLOCK = hashing.ALIGN
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, BUFFER - 1, BUFFER + 1, 3 * 2**20 + 777]


@dataclass
class Seen:
    """What the store did to its files, in order: ``(what, inode, O_DIRECT?, offset, bytes)``
    (offset and bytes for writes and reads of the copy as it is written)."""

    events: list[tuple[str, int, bool, int, int]] = field(default_factory=list)

    def of(self, what: str) -> list[tuple[str, int, bool, int, int]]:
        return [e for e in self.events if e[0] == what]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Record every write, fsync, fdatasync, folder fsync and read-back, with the O_DIRECT
    flag each file had at that moment."""
    record = Seen()
    real_write, real_fsync, real_datasync = hashing._pwrite_all, os.fsync, os.fdatasync
    real_hash, real_dir, real_drop = hashing.hash_fd, store_mod.fsync_dir, hashing.drop_cache
    real_back, real_open = hashing.read_back, hashing.open_for_read_back

    def write(fd: int, view: memoryview, offset: int) -> None:
        record.events.append(("write", os.fstat(fd).st_ino, is_direct(fd), offset, len(view)))
        real_write(fd, view, offset)

    def fsync(fd: int) -> None:
        record.events.append(("fsync", os.fstat(fd).st_ino, is_direct(fd), 0, 0))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        record.events.append(("datasync", os.fstat(fd).st_ino, is_direct(fd), 0, 0))
        real_datasync(fd)

    def readback(fd: int, **kwargs: object) -> hashing.Digest:
        record.events.append(("read", os.fstat(fd).st_ino, is_direct(fd), 0, 0))
        return real_hash(fd, **kwargs)  # type: ignore[arg-type]

    def read_back(fd: int, view: memoryview, offset: int) -> int:
        n = real_back(fd, view, offset)
        record.events.append(("read_back", os.fstat(fd).st_ino, is_direct(fd), offset, n))
        return n

    def open_for_read_back(path: Path, written: int) -> int | None:
        record.events.append(("open_check", os.fstat(written).st_ino, False, 0, 0))
        return real_open(path, written)

    def fsync_dir(path: Path) -> None:
        record.events.append(("fsync_dir", path.stat().st_ino, False, 0, 0))
        real_dir(path)

    def drop_cache(fd: int) -> None:
        record.events.append(("drop", os.fstat(fd).st_ino, is_direct(fd), 0, 0))
        real_drop(fd)

    monkeypatch.setattr(hashing, "_pwrite_all", write)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(hashing, "hash_fd", readback)
    monkeypatch.setattr(hashing, "read_back", read_back)
    monkeypatch.setattr(hashing, "open_for_read_back", open_for_read_back)
    monkeypatch.setattr(store_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(hashing, "drop_cache", drop_cache)
    yield record


def read_as_written(mode: str, size: int) -> bool:
    """Is this copy read back while it is written? With O_DIRECT, when it is at least a
    buffer long (a smaller one is copied in place and read back once stored)."""
    return mode == "direct" and size >= BUFFER


@pytest.fixture(params=["direct", "buffered"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``buffered``: the store's file system refuses O_DIRECT, as tmpfs did before Linux 6.6
    and some FUSE file systems do: fcntl answers EINVAL to turning it on."""
    if request.param == "buffered":
        refuse_direct_flag(monkeypatch)
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store", buffer_size=BUFFER)
    s.create()
    return s


def put(store: Store, tmp_path: Path, data: bytes) -> store_mod.Written:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        return store.put_from_fd(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", SIZES)
def test_an_object_is_stored_byte_exact_fsynced_then_read_back_from_the_device(
        store: Store, tmp_path: Path, mode: str, seen: Seen, size: int) -> None:
    data = os.urandom(size)
    written = put(store, tmp_path, data)
    assert written.new and written.digest.size == size
    assert written.digest.sha256 == hashlib.sha256(data).hexdigest()
    final = store.path_of(written.digest.sha256)
    assert final.read_bytes() == data
    assert list(store.tmp.iterdir()) == []

    ino, folder = final.stat().st_ino, final.parent.stat().st_ino
    writes = seen.of("write")
    assert sum(n for *_x, n in writes) == size
    assert all(i == ino for _w, i, *_x in writes)
    if mode == "direct":
        # Whole blocks go straight from the buffer to the device; only a tail shorter than a
        # block goes through the page cache, and the read-back bypasses it entirely.
        assert all(d == (n % BLOCK == 0) for _w, _i, d, _o, n in writes), writes
        assert sum(n for _w, _i, d, _o, n in writes if not d) == size % BLOCK
    else:
        assert not any(d for _w, _i, d, *_x in writes)
    if read_as_written(mode, size):
        assert len(seen.of("open_check")) == 1
        assert_read_back_as_made_durable(seen, ino, size)
        # Only once every byte is proven are the object's size and then its name made durable.
        tail = [(what, i) for what, i, *_x in seen.events
                if (what, i) in {("fsync", ino), ("fsync_dir", folder), ("read", ino)}]
        assert tail == [("fsync", ino), ("fsync_dir", folder)]
        last_read = max(n for n, e in enumerate(seen.events) if e[0] == "read_back")
        first_fsync = min(n for n, e in enumerate(seen.events) if e[:2] == ("fsync", ino))
        assert first_fsync > last_read
        return
    order = [(what, i) for what, i, *_x in seen.events
             if (what, i) in {("fsync", ino), ("fsync_dir", folder), ("drop", ino),
                              ("read", ino)}]
    # The object's bytes reach the disk, then its name does, and only then is it read back:
    # with O_DIRECT, or once its cached pages are dropped where the file system refuses that.
    dropped = [("drop", ino)] if mode == "buffered" else []
    assert order == [("fsync", ino), ("fsync_dir", folder), *dropped, ("read", ino)]
    assert seen.of("read_back") == []
    if size < BUFFER:  # copied in place: no second descriptor is opened for it
        assert seen.of("open_check") == []
    (_r, _i, read_direct, *_x), = seen.of("read")
    assert read_direct == (mode == "direct")


def assert_read_back_as_made_durable(seen: Seen, ino: int, size: int) -> None:
    """Every byte was read back once, in order, with O_DIRECT, and only after an fdatasync
    that followed its write."""
    reads = seen.of("read_back")
    assert reads and all(i == ino and d for _r, i, d, _o, _n in reads), reads
    offset = 0
    for _r, _i, _d, at, n in reads:
        assert at == offset
        offset += n
    assert offset >= size  # the last read may give back the block's padding past the end
    synced = 0  # bytes written before the latest fdatasync
    written = 0
    for what, _i, _d, at, n in seen.events:
        if what == "write":
            written = max(written, at + n)
        elif what == "datasync":
            synced = written
        elif what == "read_back":
            assert min(at + n, size) <= synced, (at, n, synced)


@pytest.mark.parametrize("size", [1, BLOCK + 1, 3 * 2**20 + 777])
def test_a_read_back_that_differs_from_what_was_hashed_stores_nothing(
        store: Store, tmp_path: Path, mode: str, seen: Seen, monkeypatch: pytest.MonkeyPatch,
        size: int) -> None:
    """A bad disk: the bytes on the device are not those that were hashed and written."""
    real_dir, real_datasync = store_mod.fsync_dir, os.fdatasync
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()

    def damage_then_fsync_dir(path: Path) -> None:
        real_dir(path)
        if path == store.path_of(sha).parent:
            flip_bit(store.path_of(sha), offset=size - 1, bit=5)

    def damage_once_durable(fd: int) -> None:
        os.fdatasync = real_datasync  # once: the first stretch made durable is changed
        real_datasync(fd)
        (copy,) = store.tmp.iterdir()
        flip_bit(copy, offset=0, bit=5)

    monkeypatch.setattr(store_mod, "fsync_dir", damage_then_fsync_dir)
    monkeypatch.setattr(os, "fdatasync", damage_once_durable)
    with pytest.raises(ObjectDamaged, match=f"the copy being stored as {sha} did not read back "
                       f"as written: the store's disk gave back {size} bytes hashing to "
                       "[0-9a-f]{64}; nothing was stored"):
        put(store, tmp_path, data)
    assert not store.has(sha)
    assert not store.path_of(sha).exists()
    assert list(store.tmp.iterdir()) == []
    if read_as_written(mode, size):
        assert seen.of("read_back") and not seen.of("fsync_dir")  # never named
    else:
        assert len(seen.of("read")) == 1


def test_a_file_system_that_takes_the_flag_but_refuses_the_io_gets_it_buffered(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems accept O_DIRECT at open and answer EINVAL to the I/O itself."""
    real_write = hashing._pwrite_all

    def write(fd: int, view: memoryview, offset: int) -> None:
        if is_direct(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_write(fd, view, offset)

    monkeypatch.setattr(hashing, "_pwrite_all", write)
    refuse_direct_reads(monkeypatch)
    for size in (BLOCK + 1, 3 * 2**20 + 777):  # done in place, and on the copy's threads
        data = os.urandom(size)
        written = put(store, tmp_path, data)
        assert written.new
        assert store.path_of(written.digest.sha256).read_bytes() == data
        assert store.verify(written.digest.sha256, size).size == size


@dataclass
class SourceReads:
    """Every ``readv`` of the source: ``(O_DIRECT?, bytes asked, bytes got)``."""

    ino: int
    reads: list[tuple[bool, int, int]] = field(default_factory=list)


def record_reads(path: Path, monkeypatch: pytest.MonkeyPatch) -> SourceReads:
    """From now on, every ``readv`` of ``path`` is recorded."""
    seen = SourceReads(ino=path.stat().st_ino)
    real = os.readv

    def readv(fd: int, buffers: list[memoryview]) -> int:
        direct = is_direct(fd)
        n = real(fd, buffers)  # a refused read raises before it is counted
        if os.fstat(fd).st_ino == seen.ino:
            seen.reads.append((direct, sum(len(b) for b in buffers), n))
        return n

    monkeypatch.setattr(os, "readv", readv)
    return seen


def put_evicted(store: Store, tmp_path: Path, data: bytes,
                monkeypatch: pytest.MonkeyPatch) -> tuple[store_mod.Written, Path, SourceReads]:
    """Store ``data`` from a source file that is on the disk and not in the page cache, as a
    docked recorder's files are, recording every read of it."""
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    evict(src)
    seen = record_reads(src, monkeypatch)
    fd = os.open(src, os.O_RDONLY)
    try:
        return store.put_from_fd(fd), src, seen
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [BUFFER, BUFFER + 1, 4 * BUFFER + BLOCK, 3 * 2**20 + 777])
def test_a_large_source_is_read_from_the_device_straight_into_the_copy_s_buffers(
        store: Store, tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch,
        size: int) -> None:
    """A file of a buffer or more is read with O_DIRECT: the device fills the copy's buffers,
    no page of it is cached, and no byte is copied out of the page cache. Every read that
    gives bytes asks for whole blocks; only the last one, past the end, asks for less."""
    data = os.urandom(size)
    written, src, seen = put_evicted(store, tmp_path, data, monkeypatch)
    assert written.new and written.digest.sha256 == hashlib.sha256(data).hexdigest()
    assert store.path_of(written.digest.sha256).read_bytes() == data
    assert sum(got for _d, _a, got in seen.reads) == size
    if mode == "buffered":  # the file system refuses O_DIRECT: every byte went through the cache
        assert not any(direct for direct, _a, _g in seen.reads)
        assert read_through_the_cache(src, size)
        return
    direct_bytes = sum(got for direct, _a, got in seen.reads if direct)
    assert direct_bytes == size, seen.reads
    assert cached_bytes(src) <= BLOCK
    assert all(asked % BLOCK == 0 for direct, asked, got in seen.reads if direct and got)
    assert seen.reads[-1][2] == 0  # read to its end


def test_a_source_whose_file_system_refuses_direct_reads_is_read_through_the_cache_whole(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes the flag and refuses each read made with it: the copy reads
    on buffered, from where it stood, and stores every byte."""
    refuse_direct_reads(monkeypatch)
    size = 3 * 2**20 + 777
    data = os.urandom(size)
    written, src, seen = put_evicted(store, tmp_path, data, monkeypatch)
    assert written.new and written.digest.sha256 == hashlib.sha256(data).hexdigest()
    assert store.path_of(written.digest.sha256).read_bytes() == data
    assert sum(got for _d, _a, got in seen.reads) == size
    assert not any(direct for direct, _a, _g in seen.reads)
    assert read_through_the_cache(src, size)


def test_a_file_written_moments_ago_and_not_yet_on_disk_hashes_to_what_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file another program has just written (or changed) and not yet synced is hashed with
    O_DIRECT as it now reads, not as the disk held it before: the kernel writes its dirty pages
    out before the direct read. ``verify FILE`` and the copy of a folder dock rely on it."""
    path = tmp_path / "fresh.bin"
    data = bytearray(os.urandom(3 * BUFFER + 123))
    path.write_bytes(data)
    assert hashing.hash_file(path, buffer_size=BUFFER).sha256 == hashlib.sha256(data).hexdigest()
    with path.open("r+b") as fh:  # changed in place, not synced
        fh.seek(BUFFER + 5)
        fh.write(b"changed")
    data[BUFFER + 5:BUFFER + 12] = b"changed"
    seen = record_reads(path, monkeypatch)
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = hashing.hash_fd(fd, buffer_size=BUFFER)
    finally:
        os.close(fd)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.size == len(data)
    # every byte was read with O_DIRECT, the changed ones among them
    assert sum(got for direct, _a, got in seen.reads if direct) == len(data), seen.reads


def test_copies_and_their_read_backs_never_deadlock_a_pool_smaller_than_they_want(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy and its read-back lease their buffers together: were the read-back to take a
    buffer of its own first, a pool of two buffers would hold one copy forever."""
    monkeypatch.setattr(hashing, "BUFFERS", hashing.BufferPool(2 * BUFFER, keep=0))
    datas = [os.urandom(40 * BUFFER + n) for n in range(3)]
    results: list[store_mod.Written] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        src = tmp_path / f"src{n}.bin"
        src.write_bytes(datas[n])
        fd = os.open(src, os.O_RDONLY)
        try:
            results.append(store.put_from_fd(fd))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a copy waits for buffers forever"
    assert errors == []
    assert sorted(w.digest.sha256 for w in results) == sorted(
        hashlib.sha256(d).hexdigest() for d in datas)
    for data in datas:
        assert store.path_of(hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_a_copy_replaced_before_it_is_named_is_not_stored(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Something that can write to the store's tmp folder swaps the copy, once read back,
    for other bytes: they must not be stored under the proven copy's name."""
    real_replace = os.replace
    data = os.urandom(3 * BUFFER)
    sha = hashlib.sha256(data).hexdigest()

    def swap_then_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        source = Path(src)
        if source.parent == store.tmp:
            source.unlink()
            source.write_bytes(b"other bytes")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", swap_then_replace)
    with pytest.raises(StoreError, match="was replaced"):
        put(store, tmp_path, data)
    assert not store.path_of(sha).exists()
    assert list(store.tmp.iterdir()) == []
    (kept,) = store.quarantine_dir.iterdir()  # never deleted: kept aside, out of the store
    assert kept.read_bytes() == b"other bytes"


def test_the_same_bytes_stored_at_the_same_moment_by_another_session_are_taken(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two recorders (or sessions) holding the same clip: the other's proven copy is named
    just after this one; both sessions have the object stored."""
    real_replace = os.replace
    data = os.urandom(3 * BUFFER)

    def other_session_names_its_copy_too(src: str | os.PathLike[str],
                                         dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        if Path(src).parent == store.tmp:
            other = store.tmp / "other-session.tmp"
            other.write_bytes(data)
            real_replace(other, dst)

    monkeypatch.setattr(os, "replace", other_session_names_its_copy_too)
    written = put(store, tmp_path, data)
    assert written.new
    assert store.path_of(written.digest.sha256).read_bytes() == data
    assert not store.quarantine_dir.exists() or list(store.quarantine_dir.iterdir()) == []
