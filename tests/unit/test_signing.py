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


def _write_key(folder: Path, pem: bytes) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "station.key").write_bytes(pem)
    os.chmod(folder / "station.key", 0o600)


def test_a_key_in_any_form_openssl_writes_loads_as_the_same_key(tmp_path: Path) -> None:
    """The key as ``save`` writes it is read without the cryptography library; any other PEM
    of the same key (CRLF line ends, the public key carried along) still loads, and is the
    same key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    canonical = private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    original = StationKey(private)
    for n, pem in enumerate([canonical, canonical.replace(b"\n", b"\r\n"),
                             canonical.replace(b"\n", b"\n\n")]):
        _write_key(tmp_path / str(n), pem)
        loaded = StationKey.load(tmp_path / str(n))
        assert loaded.public == original.public
        assert original.public.verify(loaded.sign(b"entry"), b"entry")


def test_a_key_garbled_past_its_armour_or_not_ed25519_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

    pem = StationKey.generate().save(tmp_path / "good").read_bytes()
    body = pem.splitlines()[1]
    for n, bad in enumerate([pem.replace(body, body[:12]),  # too short to be a key
                             pem.replace(body, b"!" * len(body))]):  # not base64
        _write_key(tmp_path / str(n), bad)
        with pytest.raises(IntegrityError, match="not a valid key"):
            StationKey.load(tmp_path / str(n))
    _write_key(tmp_path / "ed448", Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(IntegrityError, match="not an Ed25519 key"):
        StationKey.load(tmp_path / "ed448")
