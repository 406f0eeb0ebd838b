"""A station's status in one read: its store, its items by state and flag, its recent docks,
the last run of each job and of each scheduled check, and each target's copies.

``status`` builds it and ``to_json`` gives the form ``ingestd status --json`` prints; the
terminal table is drawn from the same model. Nothing is written: a session whose process is
gone is shown interrupted (the next ingest records it so).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..domain.canonical import format_time
from ..domain.status import (
    Counts,
    FlaggedRef,
    JobRun,
    LedgerEvent,
    ReplicaStats,
    SessionSummary,
    SessionTally,
    StoredSince,
    WormStanding,
)
from ..station import Station
from .liveness import session_abandoned

#: The jobs that check what is kept: ``status`` shows the last run of each.
LEDGER_JOB = "ledger-verify"
AUDIT_JOB = "audit"
AUDIT_OFFSITE_JOB = "audit-offsite"

#: How many of the last dock sessions status shows.
RECENT_DOCKS = 10
#: How many files of a recorder docked now, how many items of each flag, and how many of the
#: last ledger entries status shows.
DOCKED_FILES = 20
FLAGGED_SHOWN = 5
RECENT_EVENTS = 15


@dataclass(frozen=True, kw_only=True)
class StoreStatus:
    """The local store: where it is, what it holds and the room left on its file system."""

    path: Path
    items: int
    bytes: int
    free: int
    total: int
    #: what this station stored in the last day and week, and when the free space is gone
    #: at the last day's rate (None: nothing stored in the last day)
    stored: StoredSince = StoredSince(day=0, week=0)
    fills_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "items": self.items, "bytes": self.bytes,
                "free": self.free, "total": self.total,
                "stored_last_day": self.stored.day, "stored_last_week": self.stored.week,
                "fills_at": format_time(self.fills_at) if self.fills_at else None}


def fills_at(*, free: int, per_day: int, now: datetime) -> datetime | None:
    """When ``free`` bytes are gone at ``per_day`` bytes a day (None: nothing is stored, or
    not before the calendar ends)."""
    if per_day <= 0:
        return None
    try:
        return now + timedelta(days=free / per_day)
    except OverflowError:
        return None


@dataclass(frozen=True, kw_only=True)
class Dock:
    """A recent dock session as status shows it: one still marked running whose process is
    gone (``process_gone``) is shown interrupted."""

    session: SessionSummary
    process_gone: bool = False

    @property
    def state(self) -> str:
        return "interrupted" if self.process_gone else self.session.state

    @classmethod
    def of(cls, session: SessionSummary) -> Dock:
        gone = session.state == "running" and session_abandoned(session.pid, session.host)
        return cls(session=session, process_gone=gone)

    def to_json(self) -> dict[str, Any]:
        s = self.session
        return {"id": s.id, "serial": s.serial, "source": s.source, "state": self.state,
                "docked_at": format_time(s.docked_at),
                "finished_at": format_time(s.finished_at) if s.finished_at else None,
                "files_new": s.files_new, "files_known": s.files_known,
                "files_failed": s.files_failed, "files_skipped": s.files_skipped,
                "error": s.error, "skipped": dict(s.skipped), "process_gone": self.process_gone,
                "health": dict(s.health)}


@dataclass(frozen=True, kw_only=True)
class DockedNow:
    """A recorder being served now: its session, its files so far, and how fast they are
    taken (bytes a second, from the dock to the last file taken; None before the first)."""

    session: SessionSummary
    files: SessionTally

    @property
    def throughput(self) -> float | None:
        last = self.files.last_taken_at
        if last is None:
            return None
        seconds = (last - self.session.docked_at).total_seconds()
        return self.files.taken_bytes / seconds if seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        s, f = self.session, self.files
        return {"id": s.id, "serial": s.serial, "source": s.source,
                "docked_at": format_time(s.docked_at), "files_taken": f.taken,
                "bytes_taken": f.taken_bytes, "files_failed": f.failed,
                "files_copying": f.copying, "throughput": self.throughput,
                "files": [file.to_json() for file in f.latest]}


@dataclass(frozen=True, kw_only=True)
class Check:
    """The last run of a scheduled check: when it ended (or started, if it is running),
    whether all was intact (None: still running), and what it found."""

    job: str
    at: datetime
    ok: bool | None
    summary: str

    @classmethod
    def of(cls, run: JobRun) -> Check:
        return cls(job=run.job, at=run.at, ok=run.ok, summary=run.summary)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "at": format_time(self.at), "ok": self.ok,
                "summary": self.summary}


@dataclass(frozen=True, kw_only=True)
class Checks:
    """The last check of the ledger and the last audits, local and off-site, by the daemon on
    schedule (None: never run)."""

    ledger: Check | None
    audit: Check | None
    audit_offsite: Check | None

    @classmethod
    def of(cls, jobs: Sequence[JobRun]) -> Checks:
        by_name = {run.job: run for run in jobs}

        def last(name: str) -> Check | None:
            run = by_name.get(name)
            return None if run is None else Check.of(run)

        return cls(ledger=last(LEDGER_JOB), audit=last(AUDIT_JOB),
                   audit_offsite=last(AUDIT_OFFSITE_JOB))

    def named(self) -> Iterator[tuple[str, Check | None]]:
        """(key, check), in the order status shows them."""
        yield "ledger", self.ledger
        yield "audit", self.audit
        yield "audit_offsite", self.audit_offsite

    def to_json(self) -> dict[str, Any]:
        return {key: None if check is None else check.to_json() for key, check in self.named()}


@dataclass(frozen=True, kw_only=True)
class StationStatus:
    station: str
    store: StoreStatus
    counts: Counts
    #: recorders registered (and not removed)
    recorders: int
    #: the last dock sessions, the newest first
    docks: tuple[Dock, ...]
    #: the last run of each job, by job name
    jobs: tuple[JobRun, ...]
    checks: Checks
    #: by target, in the configuration's order
    targets: Mapping[str, ReplicaStats]
    #: each configured target's standing from its last WORM check (``targets check``), by
    #: name; one that failed is critical: its copies count as safe for nothing
    worm: Mapping[str, WormStanding] = field(default_factory=dict)
    #: the recorders being served now, the newest first
    docked_now: tuple[DockedNow, ...] = ()
    #: by flag: the newest items with it (their count is in ``counts.flags``)
    flagged: Mapping[str, tuple[FlaggedRef, ...]] = field(default_factory=dict)
    #: the station's last ledger entries, the newest first
    events: tuple[LedgerEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "station": self.station,
            "store": self.store.to_json(),
            "items": {"total": counts.items, "bytes": counts.bytes,
                      "labelled": counts.labelled, "flags": dict(counts.flags)},
            "acquisitions": dict(counts.acquisitions),
            "recorders": self.recorders,
            "docks": [dock.to_json() for dock in self.docks],
            "jobs": [run.to_json() for run in self.jobs],
            "checks": self.checks.to_json(),
            "targets": {name: stats.to_json() for name, stats in self.targets.items()},
            "worm": {name: {**standing.to_json(), "critical": not standing.passed}
                     for name, standing in self.worm.items()},
            "docked_now": [dock.to_json() for dock in self.docked_now],
            "flagged": {flag: {"count": self.counts.flags.get(flag, 0),
                               "items": [ref.to_json() for ref in refs]}
                        for flag, refs in self.flagged.items()},
            "events": [event.to_json() for event in self.events],
        }


def status(station: Station) -> StationStatus:
    """The station's status, read in one catalog transaction and from its store's file
    system."""
    now = station.clock()
    with station.catalog.read() as tx:
        counts = tx.counts(station=station.name)
        # Enough sessions that every recorder served now is among them, however many more
        # were turned away meanwhile.
        sessions = tx.recent_sessions(
            RECENT_DOCKS + 2 * station.settings.docks.max_parallel_recorders,
            station=station.name)
        docks = tuple(Dock.of(session) for session in sessions)
        docked_now = tuple(
            DockedNow(session=dock.session,
                      files=tx.session_tally(dock.session.id, latest=DOCKED_FILES))
            for dock in docks if dock.state == "running")
        stored = tx.stored_since(station=station.name, day=now - timedelta(days=1),
                                 week=now - timedelta(days=7))
        flagged = {flag: tuple(refs) for flag, refs in tx.flagged_refs(
            sorted(counts.flags), station=station.name, per_kind=FLAGGED_SHOWN).items()}
        events = tuple(tx.recent_events(RECENT_EVENTS, station=station.name))
        jobs = tx.last_jobs(station=station.name)
        recorders = len(tx.list_recorders())
        targets = tx.replica_stats([t.name for t in station.settings.targets],
                                  station=station.name)
        configured = [t.name for t in station.settings.targets]
        standings = {s.target: s for s in tx.worm_standings()}
        worm = {name: standings[name] for name in configured if name in standings}
    disk = station.store.disk()
    return StationStatus(
        station=station.name,
        store=StoreStatus(path=station.store.root, items=counts.local_items,
                          bytes=counts.local_bytes, free=disk.free, total=disk.total,
                          stored=stored,
                          fills_at=fills_at(free=disk.free, per_day=stored.day, now=now)),
        counts=counts,
        recorders=recorders,
        docks=docks[:RECENT_DOCKS],
        jobs=tuple(jobs),
        checks=Checks.of(jobs),
        targets=targets,
        worm=worm,
        docked_now=docked_now,
        flagged=flagged,
        events=events,
    )
