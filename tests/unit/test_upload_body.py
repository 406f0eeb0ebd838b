"""A request body an upload sends from its pooled pieces: every read, from every place (a
retried request starts again from the start), gives the bytes of the part, across pieces."""

from __future__ import annotations

import mmap
import os
import random

import pytest

from ingestd.targets import s3


def test_reads_from_anywhere_give_the_parts_bytes() -> None:
    piece = s3.UPLOAD_PIECE
    size = 2 * piece + 12345
    data = os.urandom(size)
    pieces = [mmap.mmap(-1, piece) for _ in range(s3._piece_count(size))]
    views = s3._views(pieces, size)
    assert [len(v) for v in views] == [piece, piece, 12345]
    done = 0
    for view in views:
        view[:] = data[done:done + len(view)]
        done += len(view)
    body = s3._Body(views, None)
    assert len(body) == size
    draw = random.Random(13)
    for _ in range(500):
        where = draw.randrange(0, size + 2)
        amount = draw.choice([-1, 0, 1, 16384, piece, piece + 7, draw.randrange(1, 3 * piece)])
        assert body.seek(where) == min(where, size)
        got = bytes(body.read(amount))
        start = min(where, size)
        assert got == (data[start:] if amount < 0 else data[start:start + amount])
        assert body.tell() == start + len(got)
    body.seek(0)
    assert b"".join(bytes(body.read(16384)) for _ in range(-(-size // 16384))) == data
    assert body.read() == b""


def test_a_part_size_is_raised_to_what_s3_takes() -> None:
    from ingestd.errors import TargetError
    from ingestd.targets.s3 import MAX_PARTS, MIN_PART, MiB, part_size

    assert part_size(16 * MiB, 100 * MiB) == 16 * MiB
    assert part_size(1 * MiB, 100 * MiB) == MIN_PART
    huge = 200 * 1024 * MiB  # 200 GiB: 16 MiB parts would need 12,800 of them
    chunk = part_size(16 * MiB, huge)
    assert -(-huge // chunk) <= MAX_PARTS and chunk > 16 * MiB
    with pytest.raises(TargetError, match="10000 parts of 5 GiB"):
        part_size(16 * MiB, 60 * 1024 * 1024 * MiB)
