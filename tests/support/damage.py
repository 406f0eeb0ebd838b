"""Damage on purpose, the way a bad disk, a bad cable or a careless hand would: one bit
flipped in a file where it lies, or in a copy of some bytes."""

from __future__ import annotations

import stat
from pathlib import Path


def flip_bit(path: Path, offset: int, *, bit: int = 0) -> None:
    """Flip one bit of the file at ``path`` in place, at byte ``offset``: same size, same name.
    A read-only file (as the store and the targets keep them) is made writable for the moment
    and given its mode back. Flipping the same bit again undoes it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o640)
    try:
        with path.open("r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)[0]
            fh.seek(offset)
            fh.write(bytes([byte ^ (1 << bit)]))
    finally:
        path.chmod(mode)


def flipped(data: bytes, offset: int | None = None, *, bit: int = 0) -> bytes:
    """``data`` with one bit flipped, at byte ``offset`` (the middle one if None); empty
    bytes stay empty."""
    if not data:
        return data
    damaged = bytearray(data)
    damaged[len(damaged) // 2 if offset is None else offset] ^= 1 << bit
    return bytes(damaged)
