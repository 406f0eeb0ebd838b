"""The archive of a closed case (R9): its items exported as one package (purpose ``archive``),
placed at ``[cases] archive``, verified there, then recorded (``cases.record_archive``).

The package is ordered by whoever closed the case: it is ``approved_by`` the case's
``closed_by``, with the reason ``ARCHIVE_REASON``. Its items are those whose current label
names the case. Two destinations:

- a directory: the package is exported into ``<dir>/.pending/``, renamed to
  ``<dir>/<case>-<package id>/`` (fsynced), and checked there by the package checker
  (``integrity.package.verify_package``, what ``verify-export`` runs);
- a ``[[targets]]`` table (an S3 bucket with Object Lock, or a directory target): the package
  is exported into ``<home>/archive-staging/`` (private, on the home's disk), checked, made
  into one uncompressed tar, stored as ``archives/<station>/<case>-<package id>.tar`` locked
  COMPLIANCE until ``policy.long_term_until`` (as checkpoints are), read back in full and
  hashed against the tar, and only then is the staging copy removed.

Nothing is recorded until the package is verified where it stays. A run that stops after the
export's entry and before the record leaves an ``exported`` entry (purpose ``archive``, this
case, after its close) naming a package: the next run looks for that package (at the
destination, in ``.pending``, in the staging folder) and, if it is whole, places and records
it; only if none is found whole is a new package made, and the log says why. An archive
package is never deleted, and an archive object never written over other bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain import text
from ..domain.canonical import format_time
from ..domain.models import LedgerEntry
from ..domain.names import safe_name
from ..domain.policy import long_term_until
from ..domain.records import Case
from ..errors import (
    IngestdError,
    IntegrityError,
    NotFound,
    ReplicaMismatch,
    StoreError,
    TargetUnreachable,
    UsageError,
)
from ..integrity import verify_package as layout
from ..integrity.hashing import fsync_dir
from ..integrity.package import PackageReport, verify_package
from ..modes import make_dir
from ..station import Station
from ..targets import Lock, Target
from ..targets.factory import build_target
from . import cases
from .casework import require_text
from .export import ExportResult, case_items, export_items

log = logging.getLogger(__name__)

#: The purpose, and the reason, of an archive package's export.
PURPOSE = "archive"
ARCHIVE_REASON = "case archive (R9)"
#: Under an archive directory: where a package is exported before it is renamed into place.
PENDING = ".pending"
#: Under home: where a package for a target is exported and made a tar.
STAGING = "archive-staging"

_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Archived:
    """One case archived: its record, and what was placed where."""

    case: Case
    package: str  # the package id
    location: str  # the folder, or the target's object
    export_entry: int
    sha256: str | None  # of the tar (a target); None for a folder
    size: int  # the tar's bytes, or the items' for a folder
    resumed: bool  # an earlier run's package, completed
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case.case, "package": self.package, "location": self.location,
                "export_entry": self.export_entry, "sha256": self.sha256, "bytes": self.size,
                "resumed": self.resumed, "archive_seq": self.case.archive_seq,
                "notes": self.notes}


@dataclass(kw_only=True)
class ArchiveRun:
    """What one pass over the closed, unarchived cases did."""

    configured: bool
    archived: list[Archived] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case, what went wrong)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        if not self.configured:
            return "no archive destination ([cases] archive): nothing archived"
        said = f"{text.plural(len(self.archived), 'case')} archived"
        if self.failed:
            said += (f", {text.plural(len(self.failed), 'case')} not archived: "
                     + "; ".join(f"{case}: {why}" for case, why in self.failed[:3]))
        return said


def configured(station: Station) -> bool:
    return bool(station.settings.cases.archive)


def archive_waiting(station: Station, *, actor: str = "ingestd",
                    targets: list[Target] | None = None) -> ArchiveRun:
    """Archive every closed case without an archive (``cases.to_archive``), the earliest
    deadline first. A case that fails is logged (ERROR, naming it) and left unarchived, so it
    stays listed; the others go on."""
    run = ArchiveRun(configured=configured(station))
    if not run.configured:
        return run
    for waiting in cases.to_archive(station):
        try:
            run.archived.append(archive_case(station, waiting.case, actor=actor,
                                             targets=targets))
        except IngestdError as exc:
            log.error("case %s not archived: %s", waiting.case, exc.message,
                      extra={"event": "case_archive_failed"})
            run.failed.append((waiting.case, exc.message))
    return run


def archive_case(station: Station, case: str, *, actor: str = "ingestd",
                 targets: list[Target] | None = None) -> Archived:
    """Archive the closed case ``case`` (or complete the archive an earlier run began)."""
    case = require_text("case", case, limit=text.CASE_MAX)
    with station.catalog.read() as tx:
        closed = tx.case(case)
    if closed is None:
        raise NotFound(f"case {case!r} is not closed: close it before archiving it")
    if closed.archived_at is not None:
        raise UsageError(f"case {case!r} was archived already, at "
                         f"{format_time(closed.archived_at)} as {closed.archive_package} at "
                         f"{closed.archive_location}")
    if not configured(station):
        raise UsageError("no archive destination: set [cases] archive to a directory or a "
                         "[[targets]] name")
    with _one_at_a_time(station):
        with station.catalog.read() as tx:
            again = tx.case(case)
        if again is not None and again.archived_at is not None:
            raise UsageError(f"case {case!r} was archived meanwhile, as "
                             f"{again.archive_package} at {again.archive_location}")
        folder = station.settings.archive_directory()
        if folder is not None:
            return _ToFolder(station, folder, actor).archive(closed)
        spec = station.settings.archive_target()
        assert spec is not None  # the settings check that it names one
        target = next((t for t in targets or [] if t.name == spec.name), None)
        return _ToTarget(station, target or build_target(spec, station.settings),
                         actor).archive(closed)


@contextmanager
def _one_at_a_time(station: Station) -> Iterator[None]:
    """One archive at a time on a station: the daemon's job and an operator's command would
    otherwise each make a package of the same case."""
    fd = os.open(station.settings.home / ".archive.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC,
                 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another case archive is under way on this station; try again "
                             "when it has finished") from None
        yield
    finally:
        os.close(fd)


def case_file_name(case: str) -> str:
    """The case as (part of) one file name, safe on any file system."""
    return safe_name(case, limit=80).replace(" ", "_")


def earlier_exports(station: Station, closed: Case) -> list[LedgerEntry]:
    """This station's archive exports of the case since its close, the newest first: what a
    run that stopped before its record left."""
    with station.catalog.read() as tx:
        found = [e for e in tx.entries_of_kinds([cases.EXPORTED], station=station.name)
                 if e.seq > closed.ledger_seq and e.data.get("purpose") == PURPOSE
                 and e.data.get("case") == closed.case and isinstance(e.data.get("package"),
                                                                       str)]
    return sorted(found, key=lambda e: -e.seq)


def _problems(report: PackageReport) -> str:
    shown = "; ".join(f"{p.kind}: {p.detail}" for p in report.problems[:3])
    more = len(report.problems) - 3
    return shown + (f" (and {more} more)" if more > 0 else "")


def _package_id(folder: Path) -> str | None:
    try:
        doc = json.loads((folder / layout.PACKAGE_JSON).read_bytes())
    except (OSError, ValueError):
        return None
    found = doc.get("package_id") if isinstance(doc, dict) else None
    return found if isinstance(found, str) else None


def _unproven(station: Station, folder: Path, package: str) -> str | None:
    """Why the package at ``folder`` is not ``package`` as this station made it (None: it is):
    checked from the station's pinned first key, so a package signed by any other is none."""
    found = _package_id(folder)
    if found != package:
        return f"it holds package {found or 'none'}, not {package}"
    report = verify_package(folder, fingerprint=station.custody.pin)
    return None if report.ok else _problems(report)


class _Archiver:
    def __init__(self, station: Station, actor: str) -> None:
        self.station = station
        self.actor = actor

    def export(self, closed: Case, out: Path) -> ExportResult:
        try:
            items = case_items(self.station, closed.case)
        except NotFound:
            raise NotFound(f"case {closed.case!r}: no item is labelled with it any more, so "
                           "there is nothing to archive; it stays listed until its items are "
                           "labelled with it again and archived") from None
        return export_items(self.station, items=items, out=out, approved_by=closed.closed_by,
                            reason=ARCHIVE_REASON, purpose=PURPOSE, case=closed.case,
                            actor=self.actor)

    def record(self, closed: Case, *, location: str, package: str, entry: int,
               sha256: str | None, size: int, resumed: bool, notes: list[str]) -> Archived:
        done = cases.record_archive(self.station, closed.case, location=location,
                                    package=package, actor=self.actor,
                                    details={"export_entry": entry, "sha256": sha256,
                                             "bytes": size})
        return Archived(case=done, package=package, location=location, export_entry=entry,
                        sha256=sha256, size=size, resumed=resumed, notes=notes)


class _ToFolder(_Archiver):
    """A package folder directly under the archive directory."""

    def __init__(self, station: Station, root: Path, actor: str) -> None:
        super().__init__(station, actor)
        self.root = root

    def archive(self, closed: Case) -> Archived:
        if not self.root.is_dir():
            raise TargetUnreachable(f"case archive: {self.root} is not a directory (not "
                                    "mounted?)")
        name = case_file_name(closed.case)
        notes: list[str] = []
        try:
            for entry in earlier_exports(self.station, closed):
                package = str(entry.data["package"])
                final = self.root / f"{name}-{package}"
                if not final.exists():
                    self._place_pending(package, final)
                if not final.is_dir():
                    notes.append(f"export entry {entry.seq} names package {package}, which is "
                                 f"not in {self.root} (the run that made it stopped before "
                                 "placing it)")
                    continue
                why = _unproven(self.station, final, package)
                if why is None:
                    log.info("case %s: completing the archive begun as package %s (export "
                             "entry %d)", closed.case, package, entry.seq)
                    return self.record(closed, location=str(final), package=package,
                                       entry=entry.seq, sha256=None, size=_payload(final),
                                       resumed=True, notes=notes)
                # kept, and no other copy of the case made beside it at every run: a person
                # must look at it first
                raise IntegrityError(f"case {closed.case}: package {package} at {final} "
                                     f"(export entry {entry.seq}) does not verify ({why}); "
                                     "kept as it is, and no new archive made until it is "
                                     "looked at")
            if notes:
                log.warning("case %s: making a new archive package: %s", closed.case,
                            "; ".join(notes))
            pending = self.root / PENDING
            make_dir(pending, 0o750)
            result = self.export(closed, pending / f"{name}-{uuid.uuid4().hex[:12]}")
            final = self.root / f"{name}-{result.package_id}"
            os.rename(result.path, final)
            fsync_dir(pending)
            fsync_dir(self.root)
        except OSError as exc:
            raise TargetUnreachable(f"case archive: cannot write in {self.root}: "
                                    f"{exc.strerror or exc}") from exc
        why = _unproven(self.station, final, result.package_id)
        if why is not None:
            raise IntegrityError(f"case {closed.case}: package {result.package_id} at {final} "
                                 f"does not verify there ({why}); kept, not recorded")
        return self.record(closed, location=str(final), package=result.package_id,
                           entry=result.entry_seq, sha256=None, size=result.size,
                           resumed=False, notes=notes)

    def _place_pending(self, package: str, final: Path) -> None:
        """A whole package an earlier run exported but did not rename into place."""
        pending = self.root / PENDING
        if not pending.is_dir():
            return
        for folder in sorted(pending.iterdir()):
            if (not folder.name.startswith(".") and folder.is_dir()
                    and not folder.is_symlink() and _package_id(folder) == package):
                os.rename(folder, final)
                fsync_dir(pending)
                fsync_dir(self.root)
                return


def _payload(folder: Path) -> int:
    try:
        doc = json.loads((folder / layout.PACKAGE_JSON).read_bytes())
        return sum(int(i["size"]) for i in doc["items"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class _ToTarget(_Archiver):
    """One tar under ``archives/<station>/`` on a target, locked like evidence."""

    def __init__(self, station: Station, target: Target, actor: str) -> None:
        super().__init__(station, actor)
        self.target = target
        self.staging = station.settings.home / STAGING

    def object_name(self, case: str, package: str) -> str:
        return f"{safe_name(self.station.name, limit=80)}/{case_file_name(case)}-{package}.tar"

    def location(self, name: str) -> str:
        return f"{self.target.location}/archives/{name}"

    def archive(self, closed: Case) -> Archived:
        self.target.check()
        base = case_file_name(closed.case)
        notes: list[str] = []
        try:
            make_dir(self.staging, 0o700)
            for entry in earlier_exports(self.station, closed):
                package = str(entry.data["package"])
                done = self._resume(closed, entry, package, base, notes)
                if done is not None:
                    return done
            if notes:
                log.warning("case %s: making a new archive package: %s", closed.case,
                            "; ".join(notes))
            result = self.export(closed, self.staging / f"{base}-{uuid.uuid4().hex[:12]}")
            folder = self.staging / f"{base}-{result.package_id}"
            os.rename(result.path, folder)
            fsync_dir(self.staging)
            return self._send(closed, folder, result.package_id, result.entry_seq,
                              resumed=False, notes=notes)
        except OSError as exc:
            raise StoreError(f"case archive: cannot stage the package in {self.staging}: "
                             f"{exc.strerror or exc}") from exc

    def _resume(self, closed: Case, entry: LedgerEntry, package: str, base: str,
                notes: list[str]) -> Archived | None:
        name = self.object_name(closed.case, package)
        folder = self.staging / f"{base}-{package}"
        tar = folder.with_name(folder.name + ".tar")
        if self.target.head_archive(name) is not None:
            if tar.is_file():
                # the tar whose package was checked: the object must be its bytes
                sent = _sha256(tar)
                if self.target.read_archive(name) == sent:
                    log.info("case %s: completing the archive begun as package %s",
                             closed.case, package)
                    return self._done(closed, name, package, entry.seq, sent,
                                      tar.stat().st_size, folder, resumed=True, notes=notes)
                notes.append(f"the archive object {name} does not hold the tar staged for it")
                return None
            # nothing staged left: the object is read back and its package checked whole
            checked = self._check_object(name, package)
            if checked is None:
                notes.append(f"the archive object {name} (export entry {entry.seq}) does not "
                             "hold a whole package: kept as it is")
                return None
            sha, size = checked
            return self._done(closed, name, package, entry.seq, sha, size, folder,
                              resumed=True, notes=notes)
        if folder.is_dir():
            log.info("case %s: sending the archive package %s an earlier run staged",
                     closed.case, package)
            return self._send(closed, folder, package, entry.seq, resumed=True, notes=notes)
        notes.append(f"export entry {entry.seq} names package {package}, which was neither "
                     "staged nor sent (the run that made it stopped first)")
        return None

    def _send(self, closed: Case, folder: Path, package: str, entry: int, *, resumed: bool,
              notes: list[str]) -> Archived:
        why = _unproven(self.station, folder, package)
        if why is not None:
            raise IntegrityError(f"case {closed.case}: the staged package {package} at "
                                 f"{folder} does not verify ({why}); not sent")
        tar = folder.with_name(folder.name + ".tar")
        sha, size = _make_tar(folder, tar)
        name = self.object_name(closed.case, package)
        lock = Lock(retain_until=long_term_until(self.station.clock()))
        self.target.put_archive(name, tar, lock)
        back = self.target.read_archive(name)
        if back != sha:
            raise ReplicaMismatch(f"target {self.target.name!r}: the archive {name} reads back "
                                  f"as {back}, not {sha} as sent; kept, not recorded")
        return self._done(closed, name, package, entry, sha, size, folder, resumed=resumed,
                          notes=notes)

    def _done(self, closed: Case, name: str, package: str, entry: int, sha: str, size: int,
              folder: Path, *, resumed: bool, notes: list[str]) -> Archived:
        # the verified copy is on the target: the staged one goes, then the record
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_name(folder.name + ".tar").unlink(missing_ok=True)
        fsync_dir(self.staging)
        return self.record(closed, location=self.location(name), package=package,
                           entry=entry, sha256=sha, size=size, resumed=resumed, notes=notes)

    def _check_object(self, name: str, package: str) -> tuple[str, int] | None:
        """Read the object back into staging, unpack it and check the package in it."""
        work = self.staging / f".check-{uuid.uuid4().hex[:12]}"
        work.mkdir(mode=0o700)
        try:
            tar = work / "archive.tar"
            with tar.open("wb") as sink:
                sha = self.target.read_archive(name, sink)
            _unpack(tar, work / "x")
            found = [p for p in (work / "x").iterdir() if p.is_dir()]
            if len(found) != 1 or _unproven(self.station, found[0], package) is not None:
                return None
            return sha, tar.stat().st_size
        except (tarfile.TarError, OSError) as exc:
            log.warning("case archive: %s could not be checked: %s", name, exc)
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _unpack(tar: Path, dest: Path) -> None:
    """Unpack an archive tar: folders and regular files only, none outside ``dest`` (anything
    else is a ``tarfile.TarError``: the object is not one this station made)."""
    dest.mkdir(mode=0o700)
    with tarfile.open(tar, "r:") as bundle:
        for member in bundle:
            parts = Path(member.name).parts
            if (not parts or Path(member.name).is_absolute() or ".." in parts
                    or not (member.isdir() or member.isreg())):
                raise tarfile.TarError(f"unexpected member {member.name!r}")
            path = dest.joinpath(*parts)
            if member.isdir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            source = bundle.extractfile(member)
            assert source is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with source, os.fdopen(fd, "wb") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)


def _make_tar(folder: Path, tar: Path) -> tuple[str, int]:
    """``folder`` as one uncompressed tar (its name the top folder), streamed to ``tar`` and
    fsynced; returns its SHA-256 and size. A tar left by an earlier run is made again."""
    part = tar.with_name(f".{tar.name}.{uuid.uuid4().hex[:8]}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as bundle:
                bundle.add(folder, arcname=folder.name, recursive=True)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(part, tar)
        fsync_dir(tar.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return _sha256(tar), tar.stat().st_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
