"""Off-site targets: S3-compatible buckets and directories on a mounted NAS, behind one protocol.

A target stores each item's bytes under ``<prefix>/sha256/<hash>``, its signed manifest under
``<prefix>/manifests/<hash>.json``, ledger checkpoints under ``<prefix>/checkpoints/`` and case
archives (one tar a closed case) under ``<prefix>/archives/<station>/``.
Targets never trust the server: after an upload they check size and whole-file SHA-256 from
what the server answers, and report a mismatch rather than count the copy. Such a copy is only
*sent*; it is *proven* once its bytes were read back and hashed (``RemoteObject.read_back``,
``Target.rehash_item``), at the place the target proved it is (``location``, ``identify``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ..domain.models import is_sha256
from ..domain.policy import WormAttempt

CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


#: A checkpoint's RFC 3161 time-stamp token is kept beside it as ``<checkpoint name>.tsr``,
#: stored (and locked) like a checkpoint; listings of checkpoints never include one.
TOKEN_SUFFIX = ".tsr"


def token_name(checkpoint: str) -> str:
    """The name of the time-stamp token kept beside the checkpoint named ``checkpoint``."""
    return checkpoint + TOKEN_SUFFIX


def is_checkpoint_name(name: str, *, tokens: bool = False) -> bool:
    """Whether ``name`` is a checkpoint's (with ``tokens``: a checkpoint's token's)."""
    return bool(CHECKPOINT_NAME.match(name)) and name.endswith(TOKEN_SUFFIX) is tokens


def require_sha256(sha256: str) -> None:
    if not is_sha256(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")


def require_checkpoint_name(name: str) -> str:
    """A checkpoint name is one plain file name: it never becomes a path that escapes."""
    if not CHECKPOINT_NAME.match(name):
        raise ValueError(f"not a valid checkpoint name: {name!r}")
    return name


def require_archive_name(name: str) -> str:
    """An archive's name is a relative path of plain names (``<station>/<case>-<id>.tar``):
    never one that escapes, nor one with a control character."""
    parts = name.split("/")
    if (not name or len(name) > 400 or any(p in ("", ".", "..") for p in parts)
            or any(ord(ch) < 32 or ch in "\\\x7f" for ch in name)):
        raise ValueError(f"not a valid archive name: {name!r}")
    return name


@dataclass(frozen=True, kw_only=True)
class RemoteObject:
    """What a target says it holds for an item.

    ``sha256`` equals the item's hash only when every hash the target reports agrees with it;
    it comes from metadata (or a file name), which whoever can write the target could forge:
    only ``Target.rehash_item`` proves the bytes. ``retain_until`` is the COMPLIANCE retention
    in force (a directory target only records it and cannot enforce it).
    """

    key: str
    size: int
    sha256: str | None  # the whole-file SHA-256 the target reports (metadata or recomputed)
    retain_until: datetime | None = None
    legal_hold: bool = False
    version_id: str | None = None
    #: the target read the stored bytes back and hashed them to the item before answering
    read_back: bool = False
    #: where a bad copy found at the key was kept (directory targets move it aside)
    set_aside: str | None = None


@dataclass(frozen=True, kw_only=True)
class Lock:
    """WORM protection wanted for an object: COMPLIANCE until ``retain_until``, and legal hold.

    ``retain_until`` must be timezone-aware; targets round it up to a whole second and only
    ever extend an existing retention (``None`` asks for none and keeps what is there).
    ``legal_hold`` is the wanted state: a target sets or clears it to match.
    """

    retain_until: datetime | None
    legal_hold: bool = False


@dataclass(frozen=True, kw_only=True)
class CheckpointVersion:
    """One stored version of a checkpoint object. A bucket with versioning keeps every body
    ever written under a name (a delete only hides them behind a marker); a directory holds
    one version a name (``version_id`` None)."""

    name: str
    version_id: str | None = None
    latest: bool = True


def s3_location(endpoint_url: str | None, bucket: str, prefix: str) -> str:
    """Where an S3 target keeps its copies, as recorded with each replica."""
    return f"s3:{(endpoint_url or 'aws').rstrip('/')}/{bucket}/{prefix.strip('/')}"


def directory_location(path: Path, prefix: str) -> str:
    """Where a directory target keeps its copies, as recorded with each replica."""
    parts = [p for p in prefix.split("/") if p]
    return f"dir:{Path(path).joinpath(*parts)}"


@dataclass(frozen=True, kw_only=True)
class LockSample:
    """A real copy whose lock a WORM check reads back: the item, and the lock the catalog
    recorded for its copy on the target."""

    sha256: str
    lock: Lock


class Sink(Protocol):
    """Where ``Target.read_item`` writes an item's bytes: a file open for writing."""

    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def truncate(self, size: int | None = None, /) -> int: ...


class WormTarget(Protocol):
    """A target that promises WORM (``object_lock = true``) and can be asked to prove it."""

    name: str
    location: str

    def check_worm(self, samples: Sequence[LockSample], now: datetime) -> list[WormAttempt]:
        """Write (once, then reuse) a COMPLIANCE-locked canary, its lock renewed as
        ``policy.canary_lock_due`` says; try to delete its locked version and to shorten its
        retention; read back the lock of each sample. Returns what was tried and what
        happened; raises TargetUnreachable if the server could not be asked."""


class Target(Protocol):
    name: str
    required: bool
    #: where the copies are (``s3_location`` / ``directory_location``): a replica counts only
    #: at the location it was made at
    location: str

    def identify(self, known: str | None) -> str:
        """Prove this is the place first used: ``known`` is the identity recorded then (None at
        first use, when one is made if the target keeps one). Returns the identity ("" if the
        target keeps none); raises TargetUnreachable if the place is not the one known."""

    def check(self) -> None:
        """Raise TargetError if the target cannot serve (unreachable, no Object Lock when
        required, not writable)."""

    def put_item(self, sha256: str, source: Path, size: int, lock: Lock, *,
                 rewrite: bool = False, first: bool = False,
                 taken: Callable[[], None] | None = None) -> RemoteObject:
        """Upload (or resume) the item's bytes and return what the target then reports.

        A good copy already there is not uploaded again (its lock is still brought up to
        ``lock``), unless ``rewrite``: the copy there was found not to hash to the item, even
        if what the target says of it looks right. ``first``: no copy of it was ever begun
        here, so the target need not be asked what it holds before the upload (a remote
        target then saves the round trip; what is there, if anything, is covered by the new
        copy, which is verified as always). Raises ``ObjectDamaged`` if ``source`` does
        not have ``size`` bytes hashing to ``sha256``, and ``TargetError`` if the copy cannot
        be made (``TargetUnreachable`` when the target cannot be used now) or does not verify
        (``ReplicaMismatch``). ``read_back`` in the answer says whether the stored bytes were
        read back and hashed; with ``rewrite`` they always are. ``taken`` is called (once or
        more) as soon as the target has stored some of the bytes sent, before the copy is
        done: the target takes writes. A target that writes an item in one step need not
        call it (its caller learns as much when this returns).
        """

    def head_item(self, sha256: str) -> RemoteObject | None:
        """What the target holds for this item, or None."""

    def rehash_item(self, sha256: str) -> str:
        """Read the remote copy back in full and return its SHA-256 (for audits). Raises
        ReplicaMismatch if there is no copy, TargetUnreachable if it cannot be read now."""

    def read_item(self, sha256: str, sink: Sink) -> str:
        """Write the remote copy's bytes to ``sink`` as they arrive (bounded memory) and return
        the SHA-256 of what was written; the caller compares it with the item. Raises
        ReplicaMismatch if there is no copy, TargetUnreachable if it cannot be read now."""

    def set_lock(self, sha256: str, lock: Lock) -> RemoteObject:
        """Extend retention (never shorten) and set or clear legal hold."""

    def put_manifest(self, sha256: str, manifest: bytes, lock: Lock, *,
                     first: bool = False) -> None:
        """Put the item's signed manifest next to it (``first`` as for ``put_item``)."""

    def put_checkpoint(self, name: str, body: bytes, lock: Lock | None = None) -> None:
        """Store a checkpoint, never over different bytes; under ``lock`` (COMPLIANCE), like
        evidence, so it can be neither deleted nor replaced before its date."""

    def list_checkpoints(self) -> list[str]: ...

    def checkpoint_versions(self, *, tokens: bool = False) -> list[CheckpointVersion]:
        """Every version of every checkpoint object, hidden (deleted) ones included; with
        ``tokens``, of every time-stamp token kept beside one instead."""

    def get_checkpoint(self, name: str, version_id: str | None = None) -> bytes: ...

    def put_archive(self, name: str, source: Path, lock: Lock) -> RemoteObject:
        """Store the case archive ``source`` (a tar) as ``archives/<name>``, under ``lock``
        (COMPLIANCE), never over different bytes: the same bytes again only bring the lock
        up. The file is hashed as it is sent; the answer is what the target then reports
        (its ``sha256`` that of the file). Raises ``TargetError`` as ``put_item`` does."""

    def head_archive(self, name: str) -> RemoteObject | None:
        """What the target holds as the archive ``name``, or None."""

    def read_archive(self, name: str, sink: Sink | None = None) -> str:
        """Read the archive ``name`` back in full (into ``sink`` if given) and return the
        SHA-256 of its bytes. Raises ReplicaMismatch if there is none, TargetUnreachable if
        it cannot be read now."""
