"""The station's Ed25519 key: created once, private half 0600, public half shared freely.

The cryptography library is imported only when a key signs, is made or is checked: a command
that only reports opens the station (and so reads its key) without it.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IntegrityError
from .hashing import atomic_write

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVATE_NAME = "station.key"
PUBLIC_NAME = "station.pub"
#: The fingerprint of the ledger's first key, kept beside the key and outside the catalog: the
#: anchor from which every key the ledger uses is proven.
PIN_NAME = "station.pin"


def fingerprint_of(public_raw: bytes) -> str:
    """The SHA-256 of a raw public key, in hex: what a bureau writes down."""
    return hashlib.sha256(public_raw).hexdigest()


def key_id_of(public_raw: bytes) -> str:
    return fingerprint_of(public_raw)[:16]


def read_pin(folder: Path) -> str | None:
    """The pinned fingerprint in ``folder``, or None when this home has none yet."""
    path = folder / PIN_NAME
    try:
        text = path.read_text(encoding="ascii").strip().lower()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"cannot read the pinned key fingerprint {path}: {exc}") from None
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise IntegrityError(f"{path} does not hold a SHA-256 fingerprint (64 hex digits)")
    return text


def write_pin(folder: Path, fingerprint: str) -> Path:
    """Pin ``fingerprint``; a pin is never replaced by another."""
    path = folder / PIN_NAME
    existing = read_pin(folder)
    if existing is not None and existing != fingerprint:
        raise IntegrityError(f"{path} pins {existing} already; refusing to replace it")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Not secret, but nothing in a home is for other users (R11); the bureau keeps its copy.
    atomic_write(path, (fingerprint + "\n").encode("ascii"), mode=0o640)
    return path


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        raw = bytes.fromhex(text)
        return cls(key_id=key_id_of(raw), raw=raw)

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.raw)

    def verify(self, signature_hex: str, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = Ed25519PublicKey.from_public_bytes(self.raw)
            key.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError):
            return False
        return True


#: A PKCS #8 Ed25519 private key in DER (RFC 8410), as :meth:`StationKey.save` writes it: these
#: 16 bytes, then the key's 32-byte seed.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"


def _plain_seed(pem: bytes) -> bytes | None:
    """The seed of an Ed25519 key in exactly the PEM form :meth:`StationKey.save` writes, read
    without the cryptography library; None for anything else (which that library then reads,
    and says what is wrong with)."""
    lines = pem.strip().split(b"\n")
    if len(lines) < 3 or lines[0] != _PEM_BEGIN or lines[-1] != _PEM_END:
        return None
    try:
        der = binascii.a2b_base64(b"".join(lines[1:-1]), strict_mode=True)
    except binascii.Error:
        return None
    if len(der) != len(_PKCS8_ED25519) + 32 or not der.startswith(_PKCS8_ED25519):
        return None
    return der[len(_PKCS8_ED25519):]


class StationKey:
    """The private key that signs every ledger entry, manifest and checkpoint of this station."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private: Ed25519PrivateKey | None = private
        self._seed = b""
        self._public: PublicKey | None = None

    @classmethod
    def _from_seed(cls, seed: bytes) -> StationKey:
        """A key known by its seed, made into a cryptography key when it is first used."""
        key = cls.__new__(cls)
        key._private, key._seed, key._public = None, seed, None
        return key

    def _key(self) -> Ed25519PrivateKey:
        if self._private is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self._private = Ed25519PrivateKey.from_private_bytes(self._seed)
        return self._private

    @property
    def public(self) -> PublicKey:
        if self._public is None:
            from cryptography.hazmat.primitives import serialization

            raw = self._key().public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self._public = PublicKey(key_id=key_id_of(raw), raw=raw)
        return self._public

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> str:
        return self._key().sign(message).hex()

    @classmethod
    def generate(cls) -> StationKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def save(self, folder: Path, *, name: str = PRIVATE_NAME) -> Path:
        from cryptography.hazmat.primitives import serialization

        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        private = folder / name
        if private.exists():
            raise IntegrityError(f"{private} exists already; refusing to overwrite a station key")
        pem = self._key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(private, pem, mode=0o600)
        atomic_write(private.with_suffix(".pub"), (self.public.hex + "\n").encode(), mode=0o640)
        return private

    @classmethod
    def load(cls, folder: Path, *, name: str = PRIVATE_NAME) -> StationKey:
        path = folder / name
        try:
            st = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"no station key at {path}: run `ingestd keys init` (or `ingestd init`)"
            ) from None
        except PermissionError:
            raise IntegrityError(f"cannot read station key {path}: permission denied") from None
        if st.st_mode & 0o077:
            raise IntegrityError(
                f"station key {path} is readable by others (mode {st.st_mode & 0o777:o}); "
                "it must be 0600"
            )
        seed = _plain_seed(data)
        if seed is not None:
            return cls._from_seed(seed)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            private = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise IntegrityError(f"station key {path} is not a valid key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise IntegrityError(f"station key {path} is not an Ed25519 key")
        return cls(private)
