"""The local evidence store: content-addressed, read-only files under ``objects/sha256/ab/cd/``.

An object is written to ``tmp/`` while it is hashed, made durable, read back from disk (not
from the page cache) and hashed again, fsynced, renamed into place and its directory fsynced.
Only an object that passed that read-back is *stored*. Where the file system takes
``O_DIRECT``, both the write and the read-back bypass the page cache, and a large object is
read back as it is written, each stretch once an ``fdatasync`` has made it durable (see
:mod:`ingestd.integrity.hashing`); elsewhere it is read back once renamed, its cached pages
dropped first.

Bytes are never destroyed to make room for others: a stored object found damaged when intact
bytes arrive, and an object that no item names and that does not hash to its name, are moved
to ``quarantine/`` (kept, read-only) before anything takes their place.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .domain.models import is_sha256
from .errors import ObjectDamaged, StoreError, StoreFull
from .integrity.hashing import (
    DEFAULT_BUFFER,
    Digest,
    copy_hash_and_check,
    fsync_dir,
    hash_file,
    is_disk_full,
)
from .modes import DIR_MODE, make_dir, tighten

if TYPE_CHECKING:
    # What a check finds is loaded by the checks (its families are many classes): a command
    # that only opens the store to report on it does without them.
    from .integrity.discrepancy import ObjectDiscrepancy

log = logging.getLogger(__name__)

TMP_SUFFIX = ".partial"


def presence_problem(sha256: str, size: int, found: os.stat_result | None, *,
                     where: Path) -> ObjectDiscrepancy | None:
    """What an object's file status says against the item (``found`` None: there is no
    file): missing, not a regular file, or of another size than the item's."""
    from .integrity.discrepancy import FileMissing, ObjectUnreadable, SizeMismatch

    if found is None:
        return FileMissing.of(sha256, where=where)
    if not stat.S_ISREG(found.st_mode):
        return ObjectUnreadable.of(sha256, why="it is not a regular file")
    if found.st_size != size:
        return SizeMismatch.of(sha256, expected=size, found=found.st_size)
    return None


@dataclass(frozen=True, kw_only=True)
class Usage:
    free: int
    total: int


@dataclass(frozen=True, kw_only=True)
class Repair:
    """A damaged stored object that a fresh, verified copy replaced."""

    problem: str  # what verification found
    quarantined_to: str  # where the damaged bytes are kept, relative to the store's root


@dataclass(frozen=True, kw_only=True)
class Written:
    digest: Digest
    new: bool  # False: the object was there already (and was verified again), or not kept
    kept: bool = True  # False: ``accept`` turned the copy down; nothing entered the store
    repaired: Repair | None = None  # the copy replaced a damaged object (kept in quarantine)


class Store:
    def __init__(self, root: Path, *, buffer_size: int = DEFAULT_BUFFER) -> None:
        self.root = root
        self.objects = root / "objects" / "sha256"
        self.tmp = root / "tmp"
        self.quarantine_dir = root / "quarantine"
        self.buffer_size = buffer_size

    def create(self) -> None:
        """Make the store's folders (owner and group only), and take other users' bits off
        every folder of an existing one."""
        for folder in (self.root, self.objects, self.tmp):
            make_dir(folder)
            os.chmod(folder, DIR_MODE)
        for dirpath, _dirs, _files in os.walk(self.root):
            tighten(Path(dirpath), DIR_MODE)

    def check(self, *, writable: bool = True) -> None:
        if not self.objects.is_dir() or not self.tmp.is_dir():
            raise StoreError(f"no evidence store at {self.root}: run `ingestd init`")
        if writable and not os.access(self.tmp, os.W_OK):
            raise StoreError(
                f"evidence store {self.root} is not writable by this user (or its file system "
                "is mounted read-only): this command changes the station; status, items, show, "
                "overdue, verify and ledger verify work without writing")

    def path_of(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise StoreError(f"not a SHA-256: {sha256!r}")
        return self.objects / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    # -- writing ---------------------------------------------------------------------------

    def put_from_fd(self, src_fd: int, *, abort: threading.Event | None = None,
                    accept: Callable[[Digest], bool] | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> Written:
        """Copy an open source into the store, hashing as it goes; verify by read-back.

        ``accept`` is asked once the copy is complete and before it enters the store (is the
        source still the same file?); a copy it turns down is discarded, leaving no object."""
        make_dir(self.tmp)
        tmp: Path | None = None
        repaired: Repair | None = None
        try:
            tmp, fd = self._locked_temp()
            try:
                digest, read_back = self._copy_checked(src_fd, fd, tmp, abort=abort,
                                                       on_bytes=on_bytes)
                if accept is not None and not accept(digest):
                    tmp.unlink()
                    return Written(digest=digest, new=False, kept=False)
                os.fsync(fd)
                final = self.path_of(digest.sha256)
                if final.exists():
                    try:
                        self.verify(digest.sha256, digest.size)
                    except ObjectDamaged as exc:
                        # The fresh copy is good and the old one is not: it takes the old
                        # one's place, and the damaged bytes are kept, never overwritten.
                        log.error("repairing stored object from a new copy: %s", exc)
                        moved = self.quarantine(digest.sha256)
                        if moved is not None:
                            repaired = Repair(problem=exc.message, quarantined_to=moved)
                    else:
                        tmp.unlink()
                        return Written(digest=digest, new=False)
                make_dir(final.parent)
                os.fchmod(fd, 0o440)
                os.replace(tmp, final)
                self._named_as_written(digest, fd)
                fsync_dir(final.parent)
            finally:
                os.close(fd)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise StoreFull(
                    f"evidence store {self.root} is full ({exc.strerror}); nothing partial was kept"
                ) from None
            raise StoreError(f"cannot write to evidence store {self.root}: {exc}") from None
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        if read_back is None:
            self._read_back_stored(digest)
        return Written(digest=digest, new=True, repaired=repaired)

    def _named_as_written(self, digest: Digest, fd: int) -> None:
        """The name given holds the file written and proven. Another copy of the same bytes
        stored at the same moment (a second recorder, a second session) may have taken it:
        that one was proven too, and is checked again here. A file of other bytes, put in
        the copy's place in tmp/ before it was named, is moved to quarantine, never kept."""
        final = self.path_of(digest.sha256)
        found, written = os.lstat(final), os.fstat(fd)
        if (found.st_dev, found.st_ino) == (written.st_dev, written.st_ino):
            return
        _digest, problem = self.examine(digest.sha256, digest.size)
        if problem is None:
            return
        moved = self.quarantine(digest.sha256)
        raise StoreError(f"the copy being stored as {final.name} was replaced before it was "
                         f"named ({problem.detail}); nothing was stored"
                         + (f", and what took its place was moved to {moved}" if moved else ""))

    def _copy_checked(self, src_fd: int, fd: int, tmp: Path, *,
                      abort: threading.Event | None,
                      on_bytes: Callable[[int], None] | None) -> tuple[Digest, Digest | None]:
        """Copy and hash into ``tmp``, reading it back from the device as it goes where it
        can: the digest copied, and the one read back (None: not read back yet)."""
        digest, read_back = copy_hash_and_check(src_fd, fd, tmp, buffer_size=self.buffer_size,
                                                abort=abort, on_bytes=on_bytes)
        if read_back is not None and read_back != digest:
            # The device does not hold what was hashed (a bad disk): never stored.
            raise ObjectDamaged(_not_read_back(digest, read_back.sha256, read_back.size))
        return digest, read_back

    def _read_back_stored(self, digest: Digest) -> None:
        """The read-back of an object not read back while it was copied, once renamed."""
        found, problem = self.examine(digest.sha256, digest.size)
        if problem is not None:
            # The copy on disk is not what we hashed (a bad disk): do not keep a wrong object.
            self.path_of(digest.sha256).unlink(missing_ok=True)
            raise ObjectDamaged(_not_read_back(digest, found.sha256, found.size)
                                if found is not None else problem.detail)

    def _locked_temp(self) -> tuple[Path, int]:
        """A new temp file, locked: clean_tmp (run by every ingest, and at daemon start) leaves
        a locked temp file alone. Another process's clean_tmp may remove it in the instant
        before the lock is taken: then take another."""
        for _ in range(10):
            tmp = self.tmp / f"{uuid.uuid4().hex}{TMP_SUFFIX}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    return tmp, fd
            except FileNotFoundError:
                pass
            os.close(fd)
        raise StoreError(f"cannot keep a temp file in {self.tmp}: something removes them")

    def verify(self, sha256: str, size: int | None = None) -> Digest:
        """Hash the stored object from disk; raise ObjectDamaged if it no longer matches."""
        digest, found = self.examine(sha256, size)
        if found is not None:
            raise ObjectDamaged(found.detail)
        assert digest is not None
        return digest

    def examine(self, sha256: str, size: int | None = None,
                ) -> tuple[Digest | None, ObjectDiscrepancy | None]:
        """Hash the stored object from disk (the full check): its digest, and what is wrong
        with it (None: it still hashes to its name, at ``size`` bytes when given)."""
        from .integrity.discrepancy import ChecksumMismatch, FileMissing, ObjectUnreadable

        path = self.path_of(sha256)
        try:
            digest = hash_file(path, buffer_size=self.buffer_size, from_disk=True)
        except FileNotFoundError:
            return None, FileMissing.of(sha256, where=self.objects)
        except OSError as exc:
            return None, ObjectUnreadable.of(sha256, why=str(exc.strerror))
        if digest.sha256 != sha256 or (size is not None and digest.size != size):
            return digest, ChecksumMismatch.of(sha256, found=digest.sha256, size=digest.size)
        return digest, None

    def look(self, sha256: str, size: int) -> ObjectDiscrepancy | None:
        """The fast check: is the object there, a regular file of ``size`` bytes? Its bytes
        are not read, so an object that passes may still be damaged inside."""
        try:
            found: os.stat_result | None = os.lstat(self.path_of(sha256))
        except FileNotFoundError:
            found = None
        except OSError as exc:
            from .integrity.discrepancy import ObjectUnreadable

            return ObjectUnreadable.of(sha256, why=str(exc.strerror))
        return presence_problem(sha256, size, found, where=self.objects)

    def quarantine(self, name: str) -> str | None:
        """Move the object stored under ``name`` to ``quarantine/`` (kept, never deleted).
        Returns where it went, relative to the store's root; None if it was not there."""
        source = self.path_of(name)
        self.quarantine_dir.mkdir(mode=0o750, exist_ok=True)
        target = self.quarantine_dir / f"{name}.{uuid.uuid4().hex[:12]}"
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
        fsync_dir(self.quarantine_dir)
        fsync_dir(source.parent)
        log.warning("object %s moved to quarantine as %s", name, target.name)
        return str(target.relative_to(self.root))

    def remove(self, sha256: str) -> None:
        """Only for retention: the caller has checked that off-site copies are verified."""
        path = self.path_of(sha256)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    # -- housekeeping ----------------------------------------------------------------------

    def clean_tmp(self) -> list[Path]:
        """Remove temp files left by a crash. They were never marked stored.

        A temp file that a live copy (in this or another process) holds locked is left alone.
        """
        removed = []
        if self.tmp.is_dir():
            for entry in self.tmp.iterdir():
                if not entry.name.endswith(TMP_SUFFIX) or not entry.is_file():
                    continue
                try:
                    fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # its copy finished meanwhile
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being written right now
                else:
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
                finally:
                    os.close(fd)
        return removed

    def iter_objects(self) -> Iterator[str]:
        if not self.objects.is_dir():
            return
        for first in sorted(self.objects.iterdir()):
            for second in sorted(first.iterdir()) if first.is_dir() else []:
                for obj in sorted(second.iterdir()) if second.is_dir() else []:
                    if is_sha256(obj.name):
                        yield obj.name

    def disk(self) -> Usage:
        """Free and total space of the store's file system (object counts come from the
        catalog, which knows them without walking the tree)."""
        disk = shutil.disk_usage(self.root)
        return Usage(free=disk.free, total=disk.total)


def _not_read_back(copied: Digest, found: str, size: int) -> str:
    return (f"the copy being stored as {copied.sha256} did not read back as written: the "
            f"store's disk gave back {size} bytes hashing to {found}; nothing was stored")
