"""The station key: Ed25519, private half 0600, never overwritten, refused when exposed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ingestd.errors import IntegrityError
from ingestd.integrity.signing import PublicKey, StationKey


def test_sign_and_verify(tmp_path: Path) -> None:
    key = StationKey.generate()
    signature = key.sign(b"message")
    assert key.public.verify(signature, b"message")
    assert not key.public.verify(signature, b"messagE")
    assert not StationKey.generate().public.verify(signature, b"message")
    assert not key.public.verify("zz" * 64, b"message")  # not hex: refused, not raised


def test_saved_key_is_private_and_loads_back(tmp_path: Path) -> None:
    key = StationKey.generate()
    path = key.save(tmp_path / "keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    public = (tmp_path / "keys" / "station.pub").read_text().strip()
    assert PublicKey.from_hex(public) == key.public
    loaded = StationKey.load(tmp_path / "keys")
    assert loaded.key_id == key.key_id
    assert key.public.verify(loaded.sign(b"x"), b"x")


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    first = StationKey.generate()
    first.save(tmp_path)
    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        StationKey.generate().save(tmp_path)
    assert StationKey.load(tmp_path).key_id == first.key_id


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = StationKey.generate().save(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(IntegrityError, match="must be 0600"):
        StationKey.load(tmp_path)


def test_missing_or_garbled_key(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="ingestd keys init"):
        StationKey.load(tmp_path)
    (tmp_path / "station.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    os.chmod(tmp_path / "station.key", 0o600)
    with pytest.raises(IntegrityError, match="not a valid key"):
        StationKey.load(tmp_path)
