"""The station's Ed25519 signing key: create it, say which keys the ledger vouches for, and
rotate it.

A rotation is a ledger entry signed by the old key naming the new one. The new key is staged
beside the old one (``station.key.new``) and put in place by one rename once the entry has
committed, so no retired private key stays on the station; a rotation stopped between the two
is finished by the next one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..domain.canonical import format_time
from ..domain.models import EventKind
from ..errors import IntegrityError
from ..integrity.hashing import fsync_dir
from ..integrity.ledger import ProvenKey
from ..integrity.signing import PRIVATE_NAME, PUBLIC_NAME, StationKey
from ..station import Station

#: Where a rotation keeps its new key until the ledger vouches for it.
STAGED_NAME = f"{PRIVATE_NAME}.new"


def create_key(folder: Path) -> StationKey:
    """A new station key in ``folder``; never replaces one (IntegrityError)."""
    if (folder / PRIVATE_NAME).exists():
        raise IntegrityError(f"a station key exists already in {folder}; use `keys rotate`")
    key = StationKey.generate()
    key.save(folder)
    return key


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    """A key the ledger vouches for: from entry ``since_seq``, up to ``retired_seq`` (the
    entry that retired it; None while in use). ``station`` None: trusted from outside."""

    key_id: str
    station: str | None
    public_key: str
    fingerprint: str
    since_seq: int
    retired_seq: int | None
    retired_at: datetime | None

    @classmethod
    def of(cls, key: ProvenKey) -> TrustedKey:
        return cls(key_id=key.key_id, station=key.station, public_key=key.public.hex,
                   fingerprint=key.public.fingerprint, since_seq=key.since,
                   retired_seq=key.until, retired_at=key.retired_at)

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "station": self.station, "public_key": self.public_key,
                "fingerprint": self.fingerprint, "since_seq": self.since_seq,
                "retired_seq": self.retired_seq,
                "retired_at": format_time(self.retired_at) if self.retired_at else None}


@dataclass(frozen=True, kw_only=True)
class KeyReport:
    """The station's key, the pinned fingerprint of the ledger's first key, whether the
    ledger vouches for the station's key (``vouched``), and every key it vouches for."""

    station: str
    key_id: str
    public_key: str
    fingerprint: str
    pinned_fingerprint: str | None
    vouched: bool
    #: by station, then from the oldest
    trusted: tuple[TrustedKey, ...]

    def to_json(self) -> dict[str, Any]:
        return {"station": self.station, "key_id": self.key_id, "public_key": self.public_key,
                "fingerprint": self.fingerprint, "pinned_fingerprint": self.pinned_fingerprint,
                "vouched": self.vouched, "trusted": [k.to_json() for k in self.trusted]}


def key_report(station: Station) -> KeyReport:
    """What the ledger proves of the station's keys, read from one catalog snapshot."""
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)
    current = keys.current(station.name)
    proven = sorted(keys.keys.values(), key=lambda k: (k.station or "", k.since))
    return KeyReport(
        station=station.name, key_id=station.key.key_id, public_key=station.key.public.hex,
        fingerprint=station.key.public.fingerprint, pinned_fingerprint=station.custody.pin,
        vouched=current is not None and current.key_id == station.key.key_id,
        trusted=tuple(TrustedKey.of(k) for k in proven),
    )


@dataclass(frozen=True, kw_only=True)
class Rotation:
    """A rotation done: the key retired and the key now in place. ``resumed``: a rotation
    stopped after its entry committed was finished (its key, which the ledger vouched for
    already, put in place); no new key was made."""

    old_key_id: str
    new_key_id: str
    resumed: bool = False


def rotate_key(station: Station, *, actor: str) -> Rotation:
    """Replace the station key. The change is a ledger entry signed by the old key; the old
    private key is deleted, and an entry signed with it afterwards is a discrepancy."""
    folder = station.settings.keys_path
    staged = folder / STAGED_NAME
    if staged.exists():
        # Left by a rotation stopped after its entry committed and before the rename: the
        # ledger may vouch for this key already, and then it is the only one that may sign.
        left = StationKey.load(folder, name=staged.name)
        if _vouched(station, left):
            _put_in_place(folder, staged)
            return Rotation(old_key_id=station.key.key_id, new_key_id=left.key_id,
                            resumed=True)
        staged.unlink()  # from a rotation that never reached the ledger
        staged.with_suffix(".pub").unlink(missing_ok=True)
    new = StationKey.generate()
    new.save(folder, name=staged.name)
    try:
        with station.custody.transaction() as tx:
            station.custody.record(tx, kind=EventKind.KEY_ROTATED, actor=actor,
                                   data={"old_key_id": station.key.key_id,
                                         "new_key_id": new.key_id,
                                         "new_public_key": new.public.hex})
            tx.add_key(key_id=new.key_id, station=station.name,
                      public_hex=new.public.hex, at=station.clock())
            tx.retire_key(station.key.key_id, station.clock())
    except BaseException:
        # Only a rotation that did not commit loses its new key; once committed (even if the
        # mirror then fails), the new key is the one the ledger vouches for and must stay.
        if not _vouched(station, new):
            staged.unlink(missing_ok=True)
            staged.with_suffix(".pub").unlink(missing_ok=True)
        raise
    _put_in_place(folder, staged)
    return Rotation(old_key_id=station.key.key_id, new_key_id=new.key_id)


def _vouched(station: Station, key: StationKey) -> bool:
    """Whether the ledger's chain names ``key`` as this station's key now."""
    with station.catalog.read() as tx:
        current = station.custody.trusted_keys(tx).current(station.name)
    return current is not None and current.key_id == key.key_id


def _put_in_place(folder: Path, staged: Path) -> None:
    # One rename puts the new key in place and drops the old one: no retired private key
    # stays on the station.
    os.replace(staged, folder / PRIVATE_NAME)
    os.replace(staged.with_suffix(".pub"), folder / PUBLIC_NAME)
    fsync_dir(folder)
