"""The local copy as an upload reads it, part after part, into the upload pieces: straight
from the disk with O_DIRECT where the file system takes it (the page cache is left alone),
buffered where it refuses the flag or its reads. Either way the bytes handed over are the
file's, and a copy that is short, long or other bytes is refused by the read that would hand
over its last bytes, with a message naming the file and what is wrong."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingestd.errors import ObjectDamaged
from ingestd.integrity.hashing import ALIGN
from ingestd.targets import s3
from tests.support.damage import flip_bit
from tests.support.direct import (
    cached_bytes,
    evict,
    read_through_the_cache,
    refuse_direct_flag,
    refuse_direct_reads,
)

PIECE = s3.UPLOAD_PIECE
PART = 2 * PIECE  # parts of two pieces: a part's views cross pieces
SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, PIECE - 1, PIECE, PART + ALIGN + 3,
         2 * PART + 12345]


@pytest.fixture(params=["direct", "flag refused", "reads refused"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "flag refused":
        refuse_direct_flag(monkeypatch)
    elif request.param == "reads refused":
        refuse_direct_reads(monkeypatch)
    return str(request.param)


def stored(tmp_path: Path, data: bytes) -> Path:
    """A copy as the store leaves it: on the disk, not in the page cache."""
    path = tmp_path / "object"
    path.write_bytes(data)
    evict(path)
    return path


@contextmanager
def pieces_for(length: int) -> Iterator[list[memoryview]]:
    pieces = s3.UPLOAD_BUFFERS.take(PIECE, s3._piece_count(length))
    try:
        yield s3._views(pieces, length)
    finally:
        s3.UPLOAD_BUFFERS.give(pieces)


def upload_read(path: Path, sha256: str, size: int, part: int = PART) -> bytes:
    """Read ``path`` as an upload does, ``part`` bytes at a time; the bytes handed over."""
    sent = bytearray()
    with s3._VerifyingReader(path, sha256, size) as reader:
        done = 0
        while True:
            length = min(part, size - done)
            with pieces_for(length) as views:
                reader.fill(views)
                sent += b"".join(bytes(v) for v in views)
            done += length
            if done == size:
                return bytes(sent)


@pytest.mark.parametrize("size", SIZES)
def test_the_bytes_handed_over_are_the_files(tmp_path: Path, mode: str, size: int) -> None:
    data = os.urandom(size)
    path = stored(tmp_path, data)
    assert upload_read(path, hashlib.sha256(data).hexdigest(), size) == data
    # with O_DIRECT only a tail shorter than a block goes through the page cache
    if mode == "direct":
        assert cached_bytes(path) <= ALIGN
    elif size >= 2 * ALIGN:
        assert read_through_the_cache(path, size)


def test_parts_that_are_not_whole_blocks_are_read_on_buffered(tmp_path: Path) -> None:
    """A part size such as "5MB" (not whole 4 KiB blocks): O_DIRECT cannot go on past the
    first part's end, so the rest is read buffered, byte-exact."""
    size = 3 * 5_000_000 + 17
    data = os.urandom(size)
    path = stored(tmp_path, data)
    assert upload_read(path, hashlib.sha256(data).hexdigest(), size, part=5_000_000) == data
    assert 0 < cached_bytes(path) < size


@pytest.mark.parametrize("size", [ALIGN, PIECE + 1, PART + ALIGN + 3])
def test_a_copy_short_long_or_other_is_refused_naming_the_file(
        tmp_path: Path, mode: str, size: int) -> None:
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    expected = f"expected {size} bytes with {sha}: not replicating a damaged copy"
    path = tmp_path / "object"

    path.write_bytes(data[:-1])
    evict(path)
    with pytest.raises(ObjectDamaged) as caught:
        upload_read(path, sha, size)
    assert str(caught.value) == f"{path} ends after {size - 1} bytes, {expected}"

    path.write_bytes(data + b"\0")
    evict(path)
    with pytest.raises(ObjectDamaged) as caught:
        upload_read(path, sha, size)
    assert str(caught.value) == f"{path} has more than {size} bytes, {expected}"

    path.write_bytes(data)
    flip_bit(path, size // 2)
    evict(path)
    other = hashlib.sha256(path.read_bytes()).hexdigest()
    evict(path)
    with pytest.raises(ObjectDamaged) as caught:
        upload_read(path, sha, size)
    assert str(caught.value) == f"{path} is {size} bytes with SHA-256 {other}, {expected}"


def test_the_last_bytes_of_a_damaged_copy_are_never_handed_over(tmp_path: Path) -> None:
    """The refusal comes from the read of the last part: every part before it was handed
    over (and sent), the last one never is, so the upload cannot be completed."""
    size = 2 * PART + 12345
    data = bytearray(os.urandom(size))
    sha = hashlib.sha256(data).hexdigest()
    data[-1] ^= 1
    path = stored(tmp_path, bytes(data))
    handed: list[int] = []
    with s3._VerifyingReader(path, sha, size) as reader, pytest.raises(ObjectDamaged):
        done = 0
        while done < size:
            length = min(PART, size - done)
            with pieces_for(length) as views:
                reader.fill(views)
            handed.append(length)
            done += length
    assert handed == [PART, PART]
