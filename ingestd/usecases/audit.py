"""Audits: the store re-hashed from disk (and off-site copies read back), a sample decoded end
to end, orphans found, each run recorded; the audit cycle and its coverage. (``verify``, one
file or hash at a time, is ``usecases/verify``.)"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..domain.models import EventKind
from ..domain.policy import audit_overdue, cycle_batch
from ..domain.records import Item, Replica, ReplicaState
from ..errors import ReplicaMismatch, TargetError
from ..integrity.discrepancy import (
    DiscrepancyKind,
    DoesNotPlay,
    FileMissing,
    ObjectDiscrepancy,
    ReplicaProblem,
    UnexpectedObject,
)
from ..media import decode_check
from ..ports import CatalogTx
from ..station import Station
from ..targets import Target
from .flags import set_flag

log = logging.getLogger(__name__)

K = DiscrepancyKind


class OrphanAction(StrEnum):
    KEPT = "kept"  # its bytes hash to its name: kept, and an item when a dock brings them
    QUARANTINED = "quarantined"  # they do not: moved out of the objects, never deleted
    UNCHECKED = "unchecked"  # the fast check: neither hashed nor moved (``audit --all`` does)


#: The flag each kind of discrepancy an audit finds sets on its item. A copy not checked
#: (its target cannot be used now) sets none: nothing was learnt of it.
FLAG_FOR: Mapping[DiscrepancyKind, Flag] = {
    K.OBJECT_MISSING: Flag.FIXITY_FAILED,
    K.OBJECT_UNREADABLE: Flag.FIXITY_FAILED,
    K.CHECKSUM_MISMATCH: Flag.FIXITY_FAILED,
    K.SIZE_MISMATCH: Flag.FIXITY_FAILED,
    K.DOES_NOT_PLAY: Flag.DAMAGED_MEDIA,
    K.REPLICA_MISMATCH: Flag.REPLICA_MISMATCH,
}


@dataclass(kw_only=True)
class AuditReport:
    checked: int = 0
    decoded: int = 0
    #: Every discrepancy found, in the order found (items' and damaged orphans' alike).
    found: list[ObjectDiscrepancy] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, str]]:
        return [{"sha256": d.item, "problem": d.detail} for d in self.found]

    @property
    def ok(self) -> bool:
        return not self.found

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "decoded": self.decoded,
                "failures": self.failures, "orphans": self.orphans}


def _pick(station: Station, rows: list[Item], sample: int,
          targets: Sequence[Target], rng: random.Random | None) -> list[Item]:
    """A sample of ``rows``; off-site, every item with a copy not yet read back comes first,
    oldest first, whatever ``sample`` says: such a copy lets nothing go (no eviction, no wipe)
    until it is proven, so proving them is a queue to empty, not a sample to draw. The sample
    is drawn from the rest."""
    unproven: set[str] = set()
    if targets:
        with station.catalog.read() as tx:
            unproven = tx.items_with_unproven_copies(
                station=station.name, targets=[t.name for t in targets])
    first = sorted((r for r in rows if r.sha256 in unproven), key=lambda r: r.stored_at)
    rest = [r for r in rows if r.sha256 not in unproven]
    return first + (rng or random.Random()).sample(rest, min(sample, len(rest)))


#: Told after each item an audit has checked: how many are done, of how many.
Progress = Callable[[int, int], None]


class Throttle:
    """Keeps an audit's reads under ``rate`` bytes a second (0: unlimited) by sleeping
    between items, so that an audit never starves ingest of the disk."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.read = 0
        self.started: float | None = None

    def spent(self, size: int) -> None:
        """``size`` more bytes were read: wait until they fit the rate."""
        if self.rate <= 0 or size <= 0:
            return
        if self.started is None:
            self.started = self.clock()
        self.read += size
        ahead = self.read / self.rate - (self.clock() - self.started)
        if ahead > 0:
            self.sleep(ahead)


def audit(station: Station, *, sample: int | None, decode: int = 0,
          targets: Sequence[Target] = (), actor: str = "ingestd",
          rng: random.Random | None = None, progress: Progress | None = None,
          throttle: Throttle | None = None) -> AuditReport:
    """Re-hash items (all, or a random sample) from the local store and, with ``targets``,
    read their off-site copies back in full; decode ``decode`` of them end to end.

    A local copy that no longer hashes to its name is flagged ``fixity_failed``; an off-site
    copy that does not is flagged ``replica_mismatch``, its version remembered as bad, and
    queued to be written again; one that does is recorded as proven. A target that cannot be
    reached, or is not the place it was, is reported as not checked: that says nothing of its
    copies, which keep their state. Objects
    in the store that no item names are reported too (see :func:`audit_orphans`).
    """
    report = AuditReport()
    rows = _audited_rows(station, targets, report=report, actor=actor)
    picked = rows if sample is None else _pick(station, rows, sample, targets, rng)
    _audit_items(station, picked, decode=decode, targets=targets, actor=actor, report=report,
                 progress=progress, throttle=throttle)
    return report


def _audited_rows(station: Station, targets: Sequence[Target], *, report: AuditReport,
                  actor: str) -> list[Item]:
    """The items an audit may take (finding the orphans on the way)."""
    with station.catalog.read() as tx:
        every = [listed.item for listed in tx.search_items()]
    # Any item of the catalog names its object (on a shared catalog too): the rest are orphans.
    audit_orphans(station, {r.sha256 for r in every}, report=report, actor=actor)
    # This station's items only: on a shared catalog another station's items are in
    # that station's store, and their absence here is no damage.
    return [r for r in every if r.station == station.name and (r.local_present or targets)]


def _audit_items(station: Station, picked: Sequence[Item], *, decode: int,
                 targets: Sequence[Target], actor: str, report: AuditReport,
                 progress: Progress | None, throttle: Throttle | None) -> None:
    # Here, not at the top: ``verify`` asks this module without the replication machinery.
    from .replicate import prove_place

    unusable: dict[str, str] = {}
    for target in targets:
        try:
            prove_place(station, target)
        except TargetError as exc:
            unusable[target.name] = exc.message
    with station.catalog.read() as tx:
        damaged = {sha for sha, flags in tx.flags_by_item().items()
                   if Flag.DAMAGED_MEDIA in flags or Flag.EMPTY_FILE in flags}
    playable = [r.sha256 for r in picked if r.sha256 not in damaged and r.local_present]
    to_decode = set(playable[:decode])
    for item in picked:
        report.checked += 1
        done = _audit_one(station, item, decode=item.sha256 in to_decode,
                          targets=targets, unusable=unusable)
        report.decoded += done.decoded
        report.found.extend(done.found)
        with station.custody.transaction() as tx:
            now = station.custody.now(tx)
            audited = station.custody.record(tx, kind=EventKind.AUDITED, actor=actor,
                                             item=item.sha256, data=done.data, at=now)
            if done.data.get("fixity") == "ok":  # re-hashed intact: its last proof here
                tx.item_rehashed(item.sha256, at=audited.at)
            for name in done.proven:  # read back and hashed: proven, as the entry says
                tx.replica_proven(item.sha256, name, at=audited.at)
            for problem in done.found:
                flag = FLAG_FOR.get(problem.kind)
                if flag is not None:
                    set_flag(station, tx, item.sha256, flag, at=now, actor=actor,
                             detail=problem.detail)
        if throttle is not None:
            throttle.spent(done.read)
        if progress is not None:
            progress(report.checked, len(picked))


# -- audit cycles --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Proof:
    """One copy's last proof: here (``target`` None) or on a target."""

    item: Item
    target: str | None
    proven_at: datetime | None  # None: never re-hashed, or never read back
    first: bool = False  # a copy sent and never read back: it holds everything up

    @property
    def since(self) -> datetime:
        return self.proven_at or self.item.stored_at


def local_proofs(station: Station) -> list[Proof]:
    """Every copy in this station's store with its last intact re-hash."""
    with station.catalog.read() as tx:
        last = tx.last_rehashes(station=station.name)
        rows = _items(tx, set(last))
    return [Proof(item=rows[sha], target=None, proven_at=at)
            for sha, at in last.items() if sha in rows]


def _items(tx: CatalogTx, wanted: set[str]) -> dict[str, Item]:
    return {listed.item.sha256: listed.item for batch in tx.iter_item_batches()
            for listed in batch if listed.item.sha256 in wanted}


def offsite_proofs(station: Station, targets: Sequence[Target]) -> list[Proof]:
    """Every copy of this station's items counted on one of ``targets``, at the location the
    target has now (a copy made elsewhere is not one the target holds), with its last read
    back."""
    where = {t.name: t.location for t in targets}
    with station.catalog.read() as tx:
        copies: list[Replica] = [c for c in tx.offsite_copies(
            station=station.name, targets=sorted(where)) if c.location == where[c.target]]
        rows = _items(tx, {c.item for c in copies})
    return [Proof(item=rows[c.item], target=c.target, proven_at=c.proven_at,
                  first=c.proven_at is None or c.rewrite)
            for c in copies if c.item in rows]


@dataclass(kw_only=True)
class CycleReport(AuditReport):
    """A cycle run: what :class:`AuditReport` says, the size of the batch, and the copies
    found past their cycle (flagged ``audit_overdue``)."""

    due: int = 0  # items taken this run
    of: int = 0  # items the cycle covers
    overdue: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "due": self.due, "of": self.of, "overdue": self.overdue}


def audit_cycle(station: Station, *, every: timedelta, targets: Sequence[Target] = (),
                decode: int = 0, at_least: int = 0, actor: str = "ingestd",
                progress: Progress | None = None,
                throttle: Throttle | None = None) -> CycleReport:
    """One scheduled audit run. Locally (no ``targets``) the items whose last intact re-hash
    is oldest are taken, enough that every one is re-hashed within ``audit.cycle`` by runs
    ``every`` apart (:func:`~ingestd.domain.policy.cycle_batch`); with ``targets``, the items
    whose off-site copies were read back longest ago, every copy not yet read back first, so
    that each is read back within ``audit.offsite_cycle``. Each copy already past its cycle
    is flagged ``audit_overdue`` first, and taken."""
    settings = station.settings.audit
    cycle = settings.offsite_cycle if targets else settings.cycle
    report = CycleReport()
    rows = {r.sha256: r for r in _audited_rows(station, targets, report=report, actor=actor)}
    proofs = offsite_proofs(station, targets) if targets else local_proofs(station)
    proofs = [p for p in proofs if p.item.sha256 in rows]
    now = station.custody.now()
    late = [p for p in proofs if audit_overdue(proven_at=p.proven_at, stored_at=p.item.stored_at,
                                               now=now, cycle=cycle)]
    _flag_overdue(station, late, cycle=cycle, actor=actor, report=report)
    # A local copy found damaged and not found intact since is checked every run, on top of
    # the cycle's share: it keeps failing the run until it is repaired, and takes no other
    # copy's turn.
    failing = set() if targets else _failing(station)
    # An item's turn is its oldest copy's: the copies not yet read back first, then by age.
    turn: dict[str, tuple[bool, datetime]] = {}
    for p in proofs:
        key = (not (p.first or p.item.sha256 in failing), p.since)
        turn[p.item.sha256] = min(turn.get(p.item.sha256, key), key)
    order = sorted(turn, key=lambda sha: (turn[sha], sha))
    urgent = ({p.item.sha256 for p in late} | {p.item.sha256 for p in proofs if p.first}
              | (failing & set(turn)))
    report.of = len(order)
    report.due = cycle_batch(items=len(order), overdue=len(urgent), every=every, cycle=cycle,
                             at_least=at_least)
    _audit_items(station, [rows[sha] for sha in order[:report.due]], decode=decode,
                 targets=targets, actor=actor, report=report, progress=progress,
                 throttle=throttle)
    return report


def _failing(station: Station) -> set[str]:
    """This station's items flagged ``fixity_failed`` and not re-hashed intact since."""
    with station.catalog.read() as tx:
        last = tx.last_rehashes(station=station.name)
        flagged = tx.flagged_items([Flag.FIXITY_FAILED])
    return {f.flag.item for f in flagged if f.flag.item in last
            and ((at := last[f.flag.item]) is None or at < f.flag.set_at)}


def _flag_overdue(station: Station, late: Sequence[Proof], *, cycle: timedelta, actor: str,
                  report: CycleReport) -> None:
    if not late:
        return
    with station.custody.transaction() as tx:
        now = station.custody.now(tx)
        for p in late:
            where = f"the copy on {p.target}" if p.target else "the local copy"
            last = (f"last proven {format_time(p.proven_at)}" if p.proven_at
                    else f"never proven since it was stored {format_time(p.item.stored_at)}")
            detail = f"{where} is past its audit cycle ({_days(cycle)}): {last}"
            report.overdue.append({"sha256": p.item.sha256, "copy": p.target or "local",
                                   "problem": detail})
            set_flag(station, tx, p.item.sha256, Flag.AUDIT_OVERDUE, at=now, actor=actor,
                     detail=detail)


def _days(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds}s"


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """How far one store's (or target's) audit cycle is: the oldest proof, and how many of
    its copies are past their cycle."""

    store: str | None  # this station's store (its name), or None for a target
    target: str | None
    cycle: timedelta
    copies: int
    never_proven: int
    oldest_proof: datetime | None  # the oldest copy's proof (or its storage: never proven)
    overdue: int

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "target": self.target,
                "cycle_seconds": int(self.cycle.total_seconds()), "copies": self.copies,
                "never_proven": self.never_proven,
                "oldest_proof": format_time(self.oldest_proof) if self.oldest_proof else None,
                "overdue": self.overdue}


def coverage(station: Station, targets: Sequence[Target] = ()) -> list[Coverage]:
    """Per store and per target: the oldest proof and the copies past their cycle. Reads the
    catalog only; nothing is flagged (the scheduled audit flags)."""
    now = station.custody.now()
    settings = station.settings.audit
    out = [_cover(local_proofs(station), store=station.name, target=None,
                  cycle=settings.cycle, now=now)]
    everywhere = offsite_proofs(station, targets) if targets else []
    for target in targets:
        out.append(_cover([p for p in everywhere if p.target == target.name], store=None,
                          target=target.name, cycle=settings.offsite_cycle, now=now))
    return out


def _cover(proofs: Sequence[Proof], *, store: str | None, target: str | None,
           cycle: timedelta, now: datetime) -> Coverage:
    return Coverage(
        store=store, target=target, cycle=cycle, copies=len(proofs),
        never_proven=sum(1 for p in proofs if p.proven_at is None),
        oldest_proof=min((p.since for p in proofs), default=None),
        overdue=sum(1 for p in proofs if audit_overdue(
            proven_at=p.proven_at, stored_at=p.item.stored_at, now=now, cycle=cycle)))


def audit_orphans(station: Station, named: set[str], *, report: AuditReport,
                  actor: str) -> None:
    """Objects in the store that no item names: bytes stored by a process killed before it
    recorded them, or put there by hand. One that hashes to its name is kept and recorded once
    (the next dock that brings those bytes makes it an item); one that does not is moved to
    quarantine and recorded, and is an audit failure."""
    store = station.store
    for name in store.iter_objects():
        if name in named:
            continue
        try:
            size = store.path_of(name).stat().st_size
        except FileNotFoundError:
            continue  # removed meanwhile
        _, damage = store.examine(name)
        if isinstance(damage, FileMissing):
            continue  # removed meanwhile
        if damage is not None:
            with station.catalog.read() as tx:
                if tx.item(name) is not None:
                    continue  # stored as an item meanwhile: its own audit sees the damage
            _quarantine_orphan(station, name, size, damage.detail, report=report, actor=actor)
            continue
        with station.custody.transaction() as tx:
            if tx.item(name) is not None:
                continue  # stored as an item meanwhile: not an orphan after all
            found = {"sha256": name, "size": size, "action": str(OrphanAction.KEPT)}
            if not any(e.kind == EventKind.ORPHAN for e in tx.iter_entries(item=name)):
                station.custody.record(tx, kind=EventKind.ORPHAN, actor=actor, item=name,
                                       data=found, at=station.clock())
        report.orphans.append(found)
        log.warning("object %s is named by no item; kept (its bytes hash to its name)",
                    name[:12], extra={"event": "orphan_kept"})
    _unrecorded_quarantine(station, report=report, actor=actor)


@dataclass(kw_only=True)
class FastAuditReport:
    """What the fast check found: every item's object looked at (there, a regular file of the
    item's size), none read."""

    checked: int = 0
    found: list[ObjectDiscrepancy] = field(default_factory=list)
    unexpected: list[UnexpectedObject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.found

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "fast": True, "checked": self.checked, "decoded": 0,
                "failures": [d.as_dict() for d in self.found],
                "orphans": [{"sha256": d.item, "size": d.size,
                             "action": str(OrphanAction.UNCHECKED)} for d in self.unexpected]}


def audit_fast(station: Station, *, actor: str = "ingestd") -> FastAuditReport:
    """Look at every object this station's store should hold, without reading it: each item
    kept here must have its object, a regular file of the item's size; objects no item names
    are listed. It proves less than :func:`audit` (bytes of the right size may still be
    wrong) and never says more: no item is recorded as re-hashed.

    An object found missing or of another size cannot hash to its item: the item is flagged
    ``fixity_failed`` (so the next dock that brings its bytes repairs it) and an ``audited``
    entry says what the fast check found. One more ``audited`` entry, naming no item, records
    the run. Nothing in the store is moved, changed or removed."""
    report = FastAuditReport()
    named: set[str] = set()
    with station.catalog.read() as tx:
        for rows in tx.iter_item_batches():
            for listed in rows:
                item = listed.item
                named.add(item.sha256)
                # Another station's items are in that station's store; an evicted item's
                # object is gone on purpose.
                if item.station != station.name or not item.local_present:
                    continue
                report.checked += 1
                found = station.store.look(item.sha256, item.size)
                if found is not None:
                    report.found.append(found)
    for name in station.store.iter_objects():
        if name not in named:
            try:
                size = station.store.path_of(name).lstat().st_size
            except FileNotFoundError:
                continue  # removed meanwhile
            report.unexpected.append(UnexpectedObject(
                kind=K.UNEXPECTED_OBJECT, item=name, size=size,
                detail=f"object {name} is named by no item (not hashed: `ingestd audit --all` "
                       "checks it and records it)"))
    _record_fast(station, report, actor=actor)
    return report


def _record_fast(station: Station, report: FastAuditReport, *, actor: str) -> None:
    with station.custody.transaction() as tx:
        now = station.custody.now(tx)
        kept = []
        for first in report.found:
            now_item = tx.item(first.item)
            # Evicted, or found well when looked at again, while the check ran: not damage.
            problem = (station.store.look(first.item, now_item.size)
                       if now_item is not None and now_item.local_present else None)
            if problem is None:
                continue
            kept.append(problem)
            station.custody.record(tx, kind=EventKind.AUDITED, actor=actor, item=problem.item,
                                   data={"check": "fast", "found": str(problem.kind),
                                         "problem": problem.detail}, at=now)
            set_flag(station, tx, problem.item, FLAG_FOR[problem.kind], at=now, actor=actor,
                     detail=problem.detail)
        report.found = kept
        report.unexpected = [u for u in report.unexpected if tx.item(u.item) is None]
        counts = {str(kind): sum(1 for p in kept if p.kind == kind)
                  for kind in sorted({p.kind for p in kept})}
        station.custody.record(tx, kind=EventKind.AUDITED, actor=actor, item=None, data={
            "check": "fast", "checked": report.checked, "found": counts,
            "unexpected": len(report.unexpected)}, at=now)


def _unrecorded_quarantine(station: Station, *, report: AuditReport, actor: str) -> None:
    """Bytes moved to quarantine are recorded with the move (``repaired``, ``orphan``); a
    process stopped between the two leaves some unrecorded. They are recorded now."""
    folder = station.store.quarantine_dir
    if not folder.is_dir():
        return
    with station.custody.transaction() as tx:
        recorded = {e.data.get("quarantined_to") for e in tx.entries_of_kinds(
            [EventKind.REPAIRED, EventKind.ORPHAN])}
        for path in sorted(folder.iterdir()):
            rel = str(path.relative_to(station.store.root))
            if rel in recorded:
                continue
            name = path.name.split(".")[0]
            found = {"sha256": name, "size": path.lstat().st_size,
                     "action": str(OrphanAction.QUARANTINED), "quarantined_to": rel,
                     "problem": "found in quarantine with no record of its move"}
            station.custody.record(tx, kind=EventKind.ORPHAN, actor=actor, item=None,
                                   data=found, at=station.clock())
            report.orphans.append(found)
            log.warning("quarantined bytes %s had no record; recorded now", rel,
                        extra={"event": "quarantine_recorded"})


def _quarantine_orphan(station: Station, name: str, size: int, problem: str, *,
                       report: AuditReport, actor: str) -> None:
    moved = station.store.quarantine(name)
    if moved is None:
        return
    found = {"sha256": name, "size": size, "action": str(OrphanAction.QUARANTINED),
             "problem": problem, "quarantined_to": moved}
    report.orphans.append(found)
    report.found.append(UnexpectedObject(
        kind=K.UNEXPECTED_OBJECT, item=name, size=size,
        detail=f"object named by no item: {problem}; moved to {moved}"))
    with station.custody.transaction() as tx:
        # Not an item: the name is not what the bytes are, so the entry names no item.
        station.custody.record(tx, kind=EventKind.ORPHAN, actor=actor, item=None,
                               data=found, at=station.clock())
    log.error("object %s is named by no item and is damaged; moved to %s", name[:12], moved,
              extra={"event": "orphan_quarantined"})


@dataclass(kw_only=True)
class _Audited:
    """One item's audit: its entry's data, what was wrong, and what was proven."""

    data: dict[str, Any] = field(default_factory=dict)
    found: list[ObjectDiscrepancy] = field(default_factory=list)
    proven: list[str] = field(default_factory=list)  # targets whose copy was read back intact
    decoded: bool = False
    read: int = 0  # bytes read (for the throttle)


def _audit_one(station: Station, item: Item, *, decode: bool,
               targets: Sequence[Target], unusable: Mapping[str, str] | None = None,
               ) -> _Audited:
    sha = item.sha256
    done = _Audited()
    intact = False
    if item.local_present:
        _, damage = station.store.examine(sha, item.size)
        intact = damage is None
        done.read += item.size
        done.data["fixity"] = "ok" if damage is None else damage.detail
        if damage is not None:
            done.found.append(damage)
    if decode and intact:
        decoded = decode_check(station.store.path_of(sha))
        done.decoded = True
        last = tuple(decoded.errors[-3:])
        done.data["decode"] = "ok" if decoded.ok else "; ".join(last)
        if not decoded.ok:
            done.found.append(DoesNotPlay.of(sha, errors=last))
    if targets:
        done.data["offsite"] = _audit_offsite(station, sha, targets, unusable or {}, done)
    return done


def _audit_offsite(station: Station, sha: str, targets: Sequence[Target],
                   unusable: Mapping[str, str], done: _Audited) -> dict[str, str]:
    """Read back every copy counted at a target's present location."""
    with station.catalog.read() as tx:
        rows = tx.replicas_of(sha)
    offsite: dict[str, str] = {}
    for target in targets:
        copy = rows.get(target.name)
        if copy is None or copy.state != ReplicaState.VERIFIED or copy.location != target.location:
            continue
        try:
            if target.name in unusable:
                raise TargetError(unusable[target.name])
            remote = target.rehash_item(sha)
            done.read += copy.size or 0
            found = None if remote == sha else f"hashes to {remote}"
        except ReplicaMismatch as exc:
            found = exc.message
        except TargetError as exc:
            # unreachable, or not the place it was: nothing learnt about the copy
            offsite[target.name] = f"not checked: {exc.message}"
            done.found.append(ReplicaProblem(
                kind=K.REPLICA_NOT_CHECKED, item=sha, target=target.name,
                detail=f"off-site copy on {target.name} {offsite[target.name]}"))
            continue
        if found is None:
            offsite[target.name] = "ok"  # proven, with the audited entry that says so
            done.proven.append(target.name)
            continue
        from .replicate import version_at

        version = version_at(target, sha)
        offsite[target.name] = found + (f" (version {version})" if version else "")
        done.found.append(ReplicaProblem(
            kind=K.REPLICA_MISMATCH, item=sha, target=target.name,
            detail=f"off-site copy on {target.name}: {offsite[target.name]}"))
        with station.catalog.write() as tx:  # written again, and read back, at the next run
            tx.replica_found_bad(sha, target.name, version_id=version,
                                error=offsite[target.name], at=station.clock())
    return offsite
