"""The evidence store and single-pass copy: content-addressed, read-only, verified by read-back;
a flipped bit is found; temp files never pass for objects."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from ingestd.errors import ObjectDamaged, StoreError
from ingestd.integrity.hashing import copy_and_hash, hash_file
from ingestd.store import TMP_SUFFIX, Store
from tests.support.damage import flip_bit

SMALL_BUFFER = 64 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store", buffer_size=SMALL_BUFFER)
    s.create()
    return s


def put_bytes(store: Store, tmp_path: Path, data: bytes, name: str = "src.bin") -> tuple:
    src = tmp_path / name
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        written = store.put_from_fd(fd)
    finally:
        os.close(fd)
    return written, src


@pytest.mark.parametrize("size", [0, 1, SMALL_BUFFER - 1, SMALL_BUFFER, SMALL_BUFFER + 1,
                                  5 * SMALL_BUFFER + 17])
def test_copy_and_hash_writes_and_hashes_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        digest = copy_and_hash(sfd, dfd, buffer_size=SMALL_BUFFER)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.size == size
    assert dst.read_bytes() == data


def test_copy_and_hash_reports_a_write_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x" * 1000)
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(src, os.O_RDONLY)  # cannot be written to
    try:
        with pytest.raises(OSError):
            copy_and_hash(sfd, dfd, buffer_size=SMALL_BUFFER)
    finally:
        os.close(sfd)
        os.close(dfd)


def test_put_stores_under_its_hash_read_only(store: Store, tmp_path: Path) -> None:
    data = os.urandom(3 * SMALL_BUFFER + 5)
    sha = hashlib.sha256(data).hexdigest()
    written, _ = put_bytes(store, tmp_path, data)
    assert written.new
    assert written.digest.sha256 == sha and written.digest.size == len(data)
    path = store.root / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    assert store.path_of(sha) == path
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, "stored objects must be read-only"
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, "not world-readable"
    assert store.has(sha)
    assert list(store.iter_objects()) == [sha]
    assert list(store.tmp.iterdir()) == []


def test_put_of_known_bytes_copies_nothing(store: Store, tmp_path: Path) -> None:
    data = b"the same recording" * 1000
    first, _ = put_bytes(store, tmp_path, data, "one")
    path = store.path_of(first.digest.sha256)
    before = path.stat()
    second, _ = put_bytes(store, tmp_path, data, "two")
    assert not second.new
    assert second.digest == first.digest
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list(store.tmp.iterdir()) == []


def test_empty_file_is_stored(store: Store, tmp_path: Path) -> None:
    written, _ = put_bytes(store, tmp_path, b"")
    assert written.new and written.digest.size == 0
    assert store.path_of(written.digest.sha256).read_bytes() == b""


def test_verify_finds_a_flipped_bit(store: Store, tmp_path: Path) -> None:
    data = os.urandom(2 * SMALL_BUFFER)
    written, _ = put_bytes(store, tmp_path, data)
    sha = written.digest.sha256
    assert store.verify(sha, len(data)).sha256 == sha
    flip_bit(store.path_of(sha), offset=SMALL_BUFFER + 7, bit=3)
    with pytest.raises(ObjectDamaged) as caught:
        store.verify(sha, len(data))
    assert sha in caught.value.message and "damaged" in caught.value.message
    assert caught.value.exit_code == 51  # its own code, not the 5 of a full disk


def test_verify_finds_a_missing_or_truncated_object(store: Store, tmp_path: Path) -> None:
    written, _ = put_bytes(store, tmp_path, b"abc" * 100)
    sha = written.digest.sha256
    path = store.path_of(sha)
    os.chmod(path, 0o640)
    with path.open("r+b") as fh:
        fh.truncate(10)
    with pytest.raises(ObjectDamaged, match="damaged"):
        store.verify(sha)
    path.unlink()
    with pytest.raises(ObjectDamaged, match="missing"):
        store.verify(sha)


def test_a_fresh_copy_repairs_a_damaged_object(store: Store, tmp_path: Path) -> None:
    data = os.urandom(SMALL_BUFFER)
    first, _ = put_bytes(store, tmp_path, data, "one")
    sha = first.digest.sha256
    flip_bit(store.path_of(sha), offset=100)
    again, _ = put_bytes(store, tmp_path, data, "two")
    assert again.digest.sha256 == sha
    assert store.verify(sha, len(data)).sha256 == sha
    assert store.path_of(sha).read_bytes() == data


@pytest.mark.parametrize("name", ["../../../etc/passwd", "ABCDEF" * 10 + "ABCD", "", "xyz",
                                  "a" * 63, "a" * 65])
def test_store_paths_only_for_sha256(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.path_of(name)


def test_clean_tmp_removes_only_leftover_partials(store: Store) -> None:
    leftover = store.tmp / f"deadbeef{TMP_SUFFIX}"
    leftover.write_bytes(b"half a copy")
    other = store.tmp / "notes.txt"
    other.write_text("not ours")
    removed = store.clean_tmp()
    assert removed == [leftover]
    assert not leftover.exists()
    assert other.exists()


def test_clean_tmp_leaves_a_copy_in_progress_alone(store: Store, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Another ingest (a session of the daemon, or a second process) starts and cleans up after
    # a crash while this copy is being written: the copy must survive.
    import ingestd.store as store_mod

    seen: list[list[str]] = []
    source = tmp_path / "src"
    source.write_bytes(os.urandom(4 * SMALL_BUFFER))
    real = store_mod.copy_hash_and_check

    def copy_then_clean(src_fd: int, dst_fd: int, dst_path: Path,
                        **kw: object) -> object:
        digests = real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]
        store.clean_tmp()
        seen.append(sorted(p.name for p in store.tmp.iterdir()))
        return digests

    monkeypatch.setattr(store_mod, "copy_hash_and_check", copy_then_clean)
    fd = os.open(source, os.O_RDONLY)
    try:
        written = store.put_from_fd(fd)
    finally:
        os.close(fd)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].endswith(TMP_SUFFIX)
    assert store.verify(written.digest.sha256).sha256 == hashlib.sha256(
        source.read_bytes()).hexdigest()
    assert list(store.tmp.iterdir()) == []


def test_hash_file_does_not_follow_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError):
        hash_file(tmp_path / "link")


@pytest.mark.parametrize("bad", [0, 3 * SMALL_BUFFER + 8192])
def test_a_read_error_names_the_byte_it_failed_at_and_stores_nothing(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: int) -> None:
    """A recorder's bad sector, as the kernel gives it: a read that reaches it returns the
    bytes before it, and the next read fails with EIO (no device here can be made to fail,
    so the failure is put at the system call). The error names that byte, not the start of
    the buffer it fell in, and nothing is stored or left behind."""
    from ingestd.errors import SourceReadError

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(8 * SMALL_BUFFER))
    fd = os.open(src, os.O_RDONLY)
    real_readv = os.readv

    def readv(fd_: int, buffers: list[memoryview]) -> int:
        if fd_ != fd:
            return real_readv(fd_, buffers)
        at = os.lseek(fd_, 0, os.SEEK_CUR)
        if at >= bad:
            raise OSError(5, "Input/output error")
        room = sum(len(b) for b in buffers)
        if at + room > bad:
            return real_readv(fd_, [buffers[0][: bad - at]])
        return real_readv(fd_, buffers)

    monkeypatch.setattr(os, "readv", readv)
    try:
        with pytest.raises(SourceReadError, match=f"cannot read at byte {bad}: "
                                                  "Input/output error"):
            store.put_from_fd(fd)
    finally:
        os.close(fd)
    assert [p for p in store.objects.rglob("*") if p.is_file()] == []
    assert list(store.tmp.iterdir()) == []
