"""A directory on a mounted NAS as an off-site target.

Same layout as a bucket, under ``<path>/<prefix>``: ``sha256/<hash>`` (item bytes),
``manifests/<hash>.json``, ``checkpoints/<name>``, ``archives/<station>/<case>-<id>.tar``, plus
``locks/<kind>/<hash>.json`` (``locks/archives/<name>.json``) recording the protection asked for
each object.

Every write is atomic: a temp file in the destination directory, fsync, ``os.replace``, fsync of
the directory. Item bytes are hashed while they are copied and read back from the NAS (the page
cache dropped first) before the file gets its final name, so a file under ``sha256/`` is named by
a hash it was verified to have; ``head_item`` therefore reports the name as the hash, and only
``rehash_item`` (audits) rereads the bytes. Files are made read-only (0o444) and the
directories this target creates are 0o750, so the files are not readable by others (R11).

A directory cannot enforce WORM: anyone with write access to the share can delete or replace a
file. Retention and legal hold are therefore only recorded (never shortened) in the ``locks/``
sidecars, so that audits and operators can see what should hold; real immutability needs the
NAS's own snapshot or WORM feature, or an S3 target with Object Lock.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingestd.errors import (
    IngestdError,
    ObjectDamaged,
    ReplicaMismatch,
    TargetError,
    TargetUnreachable,
)
from ingestd.integrity.hashing import (
    atomic_write,
    copy_and_hash,
    drop_cache,
    fsync_dir,
    hash_fd,
    hash_file,
)
from ingestd.targets import (
    CheckpointVersion,
    Lock,
    RemoteObject,
    Sink,
    directory_location,
    is_checkpoint_name,
    require_archive_name,
    require_checkpoint_name,
    require_sha256,
)

if TYPE_CHECKING:
    from ingestd.config import DirectoryTargetSettings

log = logging.getLogger(__name__)

_DIR_MODE = 0o750
_FILE_MODE = 0o444
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW
IDENTITY_FILE = ".ingestd-target.json"


class DirectoryTarget:
    """A folder (typically an NFS or SMB mount) holding off-site copies, as its ``[[targets]]``
    table says (``DirectoryTargetSettings``; ``targets.factory`` gives it with its paths taken
    from home).

    ``path`` must already exist (it is the mount point or a folder on the share): this target
    never creates it. The ``prefix`` folders below it are created as needed.

    A share that did not mount leaves its mount point as an empty folder on the local disk,
    where copies would land, count, and later vanish under the share. So ``path`` is refused
    when it is on the same file system as ``local`` (the store) unless ``same_filesystem_ok``
    (tests and demos), and, with ``mount_point``, unless it is on the file system mounted
    there. At first use an identity file with a random id is written at the root
    (``identify``); the caller records the id and gives it back at every later use, and a root
    without it, or with another, is not the share first used.
    """

    def __init__(self, settings: DirectoryTargetSettings, *, local: Path | None = None) -> None:
        if settings.path is None:
            raise ValueError(f"target {settings.name!r}: no path")
        parts = [p for p in settings.prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"prefix must not contain '.' or '..': {settings.prefix!r}")
        self.name = settings.name
        self.required = settings.required
        self.path = Path(settings.path)
        self.prefix = "/".join(parts)
        self.root = self.path.joinpath(*parts)
        self.location = directory_location(self.path, self.prefix)
        self._mount_point = settings.mount_point
        self._local = local
        self._same_filesystem_ok = settings.same_filesystem_ok
        self._identity: str | None = None  # once identified: checked again before each write

    def __repr__(self) -> str:
        return f"DirectoryTarget(name={self.name!r}, root={str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------

    def item_path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def manifest_path(self, sha256: str) -> Path:
        return self.root / "manifests" / f"{sha256}.json"

    def checkpoint_path(self, name: str) -> Path:
        return self.root / "checkpoints" / name

    def archive_path(self, name: str) -> Path:
        return self.root.joinpath("archives", *require_archive_name(name).split("/"))

    def lock_path(self, kind: str, sha256: str) -> Path:
        return self.root / "locks" / kind / f"{sha256}.json"

    # -- the Target protocol ----------------------------------------------------------------

    def check(self) -> None:
        if not self.path.is_dir():
            raise TargetUnreachable(
                f"target {self.name!r}: {self.path} is not a directory (share not mounted?)"
            )
        self._check_file_system()
        try:
            self._ensure_dir(self.root)
            probe = self.root / f".probe.{uuid.uuid4().hex}.tmp"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise self._error("not writable", self.root, exc) from exc

    def identify(self, known: str | None) -> str:
        if not self.path.is_dir():
            raise TargetUnreachable(
                f"target {self.name!r}: {self.path} is not a directory (share not mounted?)"
            )
        self._check_file_system()
        marker = self.root / IDENTITY_FILE
        try:
            raw = _read_if_exists(marker)
            if raw is None and known is None:
                self._ensure_dir(self.root)
                identity = uuid.uuid4().hex
                atomic_write(marker, json.dumps({"identity": identity, "target": self.name},
                                                sort_keys=True).encode() + b"\n",
                             mode=_FILE_MODE)
                log.info("target %s: first use of %s, identity %s", self.name, self.root,
                         identity)
                self._identity = identity
                return identity
        except OSError as exc:
            raise self._error("cannot read or write the identity file", marker, exc) from exc
        found = _identity_of(raw)
        if known is None:
            if found is None:
                raise self._error("identity file unreadable", marker)
            self._identity = found
            return found  # made by an earlier use whose record is gone: adopted
        if found is None:
            raise TargetUnreachable(
                f"target {self.name!r}: {self.root} has no identity file {IDENTITY_FILE}: not "
                f"the share first used here (not mounted?); expected identity {known}")
        if found != known:
            raise TargetUnreachable(
                f"target {self.name!r}: {self.root} is identity {found}, not {known}: another "
                "share than the one first used")
        self._identity = found
        return found

    def _require_place(self) -> None:
        """Before any write: still on the share (it may have gone since the run began, and
        its mount point is then a folder on the local disk)."""
        self._check_file_system()
        if self._identity is not None:
            self.identify(self._identity)

    def _check_file_system(self) -> None:
        """Refuse a path that is not on the share: on the store's own file system, or (with
        ``mount_point``) not on the file system mounted there."""
        try:
            device = self.path.stat().st_dev
            if self._mount_point is not None:
                if not self.path.resolve().is_relative_to(self._mount_point.resolve()):
                    raise TargetError(f"target {self.name!r}: {self.path} is not under "
                                      f"mount_point {self._mount_point}")
                if (not os.path.ismount(self._mount_point)
                        or self._mount_point.stat().st_dev != device):
                    raise TargetUnreachable(
                        f"target {self.name!r}: {self.path} is not on a file system mounted "
                        f"at {self._mount_point} (share not mounted?)")
            if (self._local is not None and not self._same_filesystem_ok
                    and self._local.stat().st_dev == device):
                raise TargetUnreachable(
                    f"target {self.name!r}: {self.path} is on the same file system as the "
                    f"local store {self._local} (share not mounted?); same_filesystem_ok = "
                    "true allows it, for a test or a demo only")
        except OSError as exc:
            raise self._error("cannot check the file system", self.path, exc) from exc

    def put_item(self, sha256: str, source: Path, size: int, lock: Lock, *,
                 rewrite: bool = False, first: bool = False,
                 taken: Callable[[], None] | None = None) -> RemoteObject:
        # Neither ``rewrite`` nor ``first`` needs a path of its own: looking costs no round
        # trip, and an existing file is always re-hashed. ``taken`` is not called: the file
        # is written in one step, named only once it is whole and read back.
        require_sha256(sha256)
        self._require_place()
        dest = self.item_path(sha256)
        try:
            self._ensure_dir(dest.parent)
            self._remove_stale_temps(dest)
            if dest.exists():
                found = hash_file(dest, from_disk=True)
                if found.size == size and found.sha256 == sha256:
                    log.info("target %s: %s already holds a good copy", self.name, dest)
                    return dataclasses.replace(self._lock(sha256, lock), read_back=True)
                set_aside = self._set_aside(dest, sha256)
                log.warning(
                    "target %s: %s is damaged (%d bytes, sha256 %s); kept as %s, writing a "
                    "good copy",
                    self.name,
                    dest,
                    found.size,
                    found.sha256,
                    set_aside,
                )
            else:
                set_aside = None
            self._write_item(dest, source, sha256, size)
        except IngestdError:
            raise
        except OSError as exc:
            raise self._error("cannot replicate item", dest, exc) from exc
        # the file was read back from the share (cache dropped) before it got its name
        return dataclasses.replace(self._lock(sha256, lock), read_back=True,
                                   set_aside=set_aside)

    def _set_aside(self, dest: Path, sha256: str) -> str:
        """Move a bad copy out of the way, never delete it: it is kept for investigation."""
        folder = self.root / "damaged"
        self._ensure_dir(folder)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = folder / f"{sha256}.{stamp}.{uuid.uuid4().hex[:8]}"
        os.rename(dest, aside)
        fsync_dir(folder)
        fsync_dir(dest.parent)
        return self._key(aside)

    def head_item(self, sha256: str) -> RemoteObject | None:
        require_sha256(sha256)
        dest = self.item_path(sha256)
        try:
            size = dest.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("cannot stat item", dest, exc) from exc
        state = self._read_lock("sha256", sha256)
        return RemoteObject(
            key=self._key(dest),
            size=size,
            sha256=sha256,  # only a file verified to have this hash is given this name
            retain_until=state.retain_until,
            legal_hold=state.legal_hold,
        )

    def rehash_item(self, sha256: str) -> str:
        require_sha256(sha256)
        dest = self.item_path(sha256)
        try:
            return hash_file(dest, from_disk=True).sha256
        except FileNotFoundError as exc:
            raise self._error("cannot rehash: no such item", dest, exc,
                              kind=ReplicaMismatch) from exc
        except OSError as exc:
            raise self._error("cannot rehash item", dest, exc) from exc

    def read_item(self, sha256: str, sink: Sink) -> str:
        require_sha256(sha256)
        return self._read_hashed(self.item_path(sha256), "item", sink, from_disk=False)

    def set_lock(self, sha256: str, lock: Lock) -> RemoteObject:
        require_sha256(sha256)
        self._require_place()
        if not self.item_path(sha256).is_file():
            raise self._error("cannot lock: no such item", self.item_path(sha256))
        return self._lock(sha256, lock)

    def put_manifest(self, sha256: str, manifest: bytes, lock: Lock, *,
                     first: bool = False) -> None:
        require_sha256(sha256)
        self._require_place()
        dest = self.manifest_path(sha256)
        try:
            if _read_if_exists(dest) != manifest:
                self._write_small(dest, manifest)
        except OSError as exc:
            raise self._error("cannot write manifest", dest, exc) from exc
        self._record_lock("manifests", sha256, lock)

    def put_checkpoint(self, name: str, body: bytes, lock: Lock | None = None) -> None:
        """Store a ledger checkpoint. The same bytes again are a no-op; different bytes under an
        existing name are refused (checkpoints witness the ledger and are never rewritten)."""
        dest = self.checkpoint_path(require_checkpoint_name(name))
        self._require_place()
        try:
            existing = _read_if_exists(dest)
            if existing is not None and existing != body:
                raise self._error("refusing to overwrite a checkpoint with different content", dest)
            if existing is None:
                self._write_small(dest, body)
        except OSError as exc:
            raise self._error("cannot write checkpoint", dest, exc) from exc
        if lock is not None:
            self._record_lock("checkpoints", name.removesuffix(".json"), lock)

    def checkpoint_versions(self, *, tokens: bool = False) -> list[CheckpointVersion]:
        return [CheckpointVersion(name=name) for name in self._checkpoints(tokens=tokens)]

    def list_checkpoints(self) -> list[str]:
        return self._checkpoints(tokens=False)

    def _checkpoints(self, *, tokens: bool) -> list[str]:
        folder = self.root / "checkpoints"
        try:
            return sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_file(follow_symlinks=False)
                and is_checkpoint_name(entry.name, tokens=tokens)
            )
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._error("cannot list checkpoints", folder, exc) from exc

    def get_checkpoint(self, name: str, version_id: str | None = None) -> bytes:
        dest = self.checkpoint_path(require_checkpoint_name(name))
        try:
            body = _read_if_exists(dest)
        except OSError as exc:
            raise self._error("cannot read checkpoint", dest, exc) from exc
        if body is None:
            raise self._error("no such checkpoint", dest)
        return body

    def put_archive(self, name: str, source: Path, lock: Lock) -> RemoteObject:
        """Copied as an item is (hashed on the way, fsynced, read back from the share before
        it gets its name); the same bytes there already are kept, other bytes refused."""
        self._require_place()
        dest = self.archive_path(name)
        try:
            found = hash_file(source)
        except OSError as exc:
            raise ObjectDamaged(f"cannot read the archive {source}: {exc.strerror}") from exc
        try:
            self._ensure_dir(dest.parent)
            self._remove_stale_temps(dest)
            if dest.exists():
                there = hash_file(dest, from_disk=True)
                if (there.size, there.sha256) != (found.size, found.sha256):
                    raise self._error("refusing to write an archive over a different file "
                                      f"({there.size} bytes hashing to {there.sha256})", dest)
            else:
                self._write_item(dest, source, found.sha256, found.size)
        except IngestdError:
            raise
        except OSError as exc:
            raise self._error("cannot write archive", dest, exc) from exc
        self._record_lock("archives", name, lock)
        head = self.head_archive(name)
        if head is None:
            raise self._error("archive vanished once written", dest)
        return dataclasses.replace(head, sha256=found.sha256, read_back=True)

    def head_archive(self, name: str) -> RemoteObject | None:
        dest = self.archive_path(name)
        try:
            size = dest.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("cannot stat archive", dest, exc) from exc
        state = self._read_lock("archives", name)
        # a directory keeps no hash beside the file: only read_archive knows it
        return RemoteObject(key=self._key(dest), size=size, sha256=None,
                            retain_until=state.retain_until, legal_hold=state.legal_hold)

    def read_archive(self, name: str, sink: Sink | None = None) -> str:
        return self._read_hashed(self.archive_path(name), "archive", sink, from_disk=True)

    def _read_hashed(self, dest: Path, what: str, sink: Sink | None, *,
                     from_disk: bool) -> str:
        """The SHA-256 of the regular file at ``dest`` (never through a link, never a FIFO),
        its bytes written to ``sink`` as they are read (from its start, when ``from_disk``:
        a retry starts over), and read from the disk rather than the page cache if asked."""
        digest = hashlib.sha256()
        try:
            fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise self._error(f"cannot read: no such {what}", dest, exc,
                              kind=ReplicaMismatch) from exc
        except OSError as exc:
            raise self._error(f"cannot read {what}", dest, exc) from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self._error("cannot read: not a regular file", dest, kind=ReplicaMismatch)
            os.set_blocking(fd, True)
            if from_disk:
                drop_cache(fd)
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                if sink is not None:
                    sink.write(chunk)
        return digest.hexdigest()

    # -- steps ------------------------------------------------------------------------------

    def _write_item(self, dest: Path, source: Path, sha256: str, size: int) -> None:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            src_fd = os.open(source, os.O_RDONLY | _OPEN_FLAGS)
        except OSError as exc:
            raise ObjectDamaged(f"cannot read {source} for replication: {exc.strerror}") from exc
        try:
            dst_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
            try:
                written = copy_and_hash(src_fd, dst_fd)
                if written.size != size or written.sha256 != sha256:
                    raise ObjectDamaged(
                        f"{source} is {written.size} bytes with SHA-256 {written.sha256}, "
                        f"expected {size} bytes with {sha256}: not replicating a damaged copy"
                    )
                os.fsync(dst_fd)
                # read back what reached the share, not what the page cache remembers
                drop_cache(dst_fd)
                back = hash_fd(dst_fd)
                if back.size != size or back.sha256 != sha256:
                    raise self._error(
                        f"replica mismatch: written file reads back as {back.size} bytes with "
                        f"SHA-256 {back.sha256}",
                        tmp,
                        kind=ReplicaMismatch,
                    )
                os.fchmod(dst_fd, _FILE_MODE)
            finally:
                os.close(dst_fd)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(src_fd)
        log.info("target %s: wrote %s (%d bytes)", self.name, dest, size)

    def _write_small(self, dest: Path, body: bytes) -> None:
        self._ensure_dir(dest.parent)
        self._remove_stale_temps(dest)
        atomic_write(dest, body, mode=_FILE_MODE)

    def _lock(self, sha256: str, lock: Lock) -> RemoteObject:
        self._record_lock("sha256", sha256, lock)
        head = self.head_item(sha256)
        if head is None:
            raise self._error("item vanished while being locked", self.item_path(sha256))
        return head

    def _record_lock(self, kind: str, sha256: str, lock: Lock) -> None:
        """Record the wanted protection: retain-until only ever moves later."""
        current = self._read_lock(kind, sha256)
        until = current.retain_until
        if lock.retain_until is not None:
            wanted = _aware(lock.retain_until)
            if until is None or wanted > until:
                until = wanted
            elif wanted < until:
                log.debug(
                    "target %s: %s/%s already retained until %s; not shortening",
                    self.name,
                    kind,
                    sha256,
                    until.isoformat(),
                )
        if (
            until == current.retain_until
            and lock.legal_hold == current.legal_hold
            and current.saved
        ):
            return
        record: dict[str, Any] = {
            "retain_until": until.isoformat() if until else None,
            "legal_hold": lock.legal_hold,
            "enforced": False,  # a directory cannot refuse a delete; see the module docstring
        }
        dest = self.lock_path(kind, sha256)
        try:
            self._write_small(dest, json.dumps(record, sort_keys=True).encode() + b"\n")
        except OSError as exc:
            raise self._error("cannot record lock", dest, exc) from exc

    def _read_lock(self, kind: str, sha256: str) -> _LockState:
        dest = self.lock_path(kind, sha256)
        try:
            raw = _read_if_exists(dest)
            if raw is None:
                return _LockState(retain_until=None, legal_hold=False, saved=False)
            data = json.loads(raw)
            until = data.get("retain_until")
            return _LockState(
                retain_until=_aware(datetime.fromisoformat(until)) if until else None,
                legal_hold=bool(data.get("legal_hold", False)),
                saved=True,
            )
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            # never overwrite what we cannot read: it might hold a later date
            raise self._error("lock record unreadable", dest, exc) from exc

    def _ensure_dir(self, folder: Path) -> None:
        """Create missing folders below ``path`` (never ``path`` itself), each made durable by
        an fsync of its parent."""
        missing: list[Path] = []
        current = folder
        while not current.is_dir():
            if current == self.path:
                raise FileNotFoundError(errno.ENOENT, "target folder missing", str(self.path))
            missing.append(current)
            current = current.parent
        for created in reversed(missing):
            try:
                created.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                continue
            fsync_dir(created.parent)

    def _remove_stale_temps(self, dest: Path) -> None:
        """A write killed half-way leaves its temp file; one key is written by one replication
        at a time, so any temp file for it is stale."""
        for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
            log.info("target %s: removing stale temp file %s", self.name, stale)
            stale.unlink(missing_ok=True)

    def _key(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def _error(self, what: str, path: Path, exc: BaseException | None = None, *,
               kind: type[TargetError] | None = None) -> TargetError:
        detail = ""
        if isinstance(exc, OSError):
            detail = f" ({exc.strerror or type(exc).__name__})"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                detail = " (target full)"
        elif exc is not None:
            detail = f" ({type(exc).__name__}: {exc})"
        if kind is None:
            # the share could not be used (gone, full, read-only): nothing known of its copies
            kind = TargetUnreachable if isinstance(exc, OSError) else TargetError
        return kind(f"target {self.name!r}: {what}: {path}{detail}")


@dataclass(frozen=True, kw_only=True)
class _LockState:
    retain_until: datetime | None
    legal_hold: bool
    saved: bool  # a record exists on the share


def _read_if_exists(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _identity_of(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        identity = json.loads(raw).get("identity")
    except (ValueError, AttributeError):
        return None
    return identity if isinstance(identity, str) and identity else None


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    return moment.astimezone(UTC)

