"""What the catalog says of a station's state: counts, the runs of its jobs, its recent dock
sessions, each target's replicas and the off-site locks behind the items' retention.

Records read by the catalog (``catalog/queries``) and shown by ``usecases/status``. Each
``to_json`` gives the form ``status --json`` prints: times as stored (RFC 3339 UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from msgspec import Struct, field, structs

from .canonical import format_time
from .models import RetentionClass
from .records import DockSource, SessionState


def _time(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


class Counts(Struct, frozen=True, kw_only=True):
    """A station's items (those it stored first), flags and acquisitions."""

    items: int
    bytes: int
    #: of those, the items whose bytes are in the local store
    local_items: int
    local_bytes: int
    labelled: int
    #: items by flag, and acquisitions by state, in the catalog's order
    flags: Mapping[str, int]
    acquisitions: Mapping[str, int]


class JobRun(Struct, frozen=True, kw_only=True):
    """One run of a daemon job: ``ok`` is None while it runs."""

    id: int
    job: str
    station: str
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None
    summary: str = ""
    #: what the run said besides its summary (a replication: ``unusable``, each target it
    #: could not use at all, with why)
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def at(self) -> datetime:
        """When it ended, or started if it has not ended."""
        return self.finished_at or self.started_at

    def finished(self, *, at: datetime, ok: bool, summary: str,
                 detail: Mapping[str, Any] | None = None) -> JobRun:
        return structs.replace(self, finished_at=at, ok=ok, summary=summary,
                               detail=dict(detail or {}))

    def unusable_targets(self) -> dict[str, str] | None:
        """The targets this run could not use at all, each with why (``detail["unusable"]``),
        or None if its detail does not say (a run recorded before it was kept, or a detail
        that could not be read)."""
        found = self.detail.get("unusable")
        if not isinstance(found, Mapping):
            return None
        return {str(name): str(why) for name, why in found.items()}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "job": self.job, "station": self.station,
                "started_at": format_time(self.started_at),
                "finished_at": _time(self.finished_at), "ok": self.ok, "summary": self.summary,
                "detail": dict(self.detail)}


class SessionSummary(Struct, frozen=True, kw_only=True):
    """A dock session as recorded: what it took, and which process serves it (``pid`` and
    ``host``, for a session still ``running``)."""

    id: int
    serial: str
    source: DockSource
    state: SessionState
    docked_at: datetime
    finished_at: datetime | None
    files_new: int
    files_known: int
    files_failed: int
    files_skipped: int
    error: str
    #: the files the walk did not take, counted by kind
    skipped: Mapping[str, int]
    pid: int | None
    host: str | None
    #: the recorder's health at the dock (free space, file system, battery, clock offset,
    #: faults), as the session recorded it
    health: Mapping[str, Any] = field(default_factory=dict)


class WaitingItem(Struct, frozen=True, kw_only=True):
    """The item that has waited longest for a copy on a target."""

    sha256: str
    deadline: datetime


class ReplicaError(Struct, frozen=True, kw_only=True):
    """The last error a target's replicas recorded."""

    error: str
    at: datetime


class ReplicaStats(Struct, frozen=True, kw_only=True):
    """One target's copies of a station's items."""

    verified: int
    #: of the verified: read back since, so they let copies elsewhere go
    proven: int
    in_flight: int
    failed: int  # failed, or found not to hash to the item
    queued: int
    oldest_waiting: WaitingItem | None
    last_error: ReplicaError | None

    def to_json(self) -> dict[str, Any]:
        oldest, error = self.oldest_waiting, self.last_error
        return {
            "verified": self.verified, "proven": self.proven, "in_flight": self.in_flight,
            "failed": self.failed, "queued": self.queued,
            "oldest_waiting": None if oldest is None else {
                "sha256": oldest.sha256, "deadline": format_time(oldest.deadline)},
            "last_error": None if error is None else {
                "error": error.error, "at": format_time(error.at)},
        }


class LockBehind(Struct, frozen=True, kw_only=True):
    """A copy off-site whose lock no longer covers its item: a retention longer than the
    lock's, or a hold that differs."""

    item: str
    target: str
    #: the lock the replica records
    retain_until: datetime | None
    hold: bool
    #: the item as it is now
    item_retain_until: datetime | None
    item_hold: bool
    retention_class: RetentionClass
    recorded_start: datetime


class WormStanding(Struct, frozen=True, kw_only=True):
    """A target's standing from its last WORM check (``targets check``): ``passed`` False
    means the server let a deletion or a shorter retention through, or showed a copy locked
    less than the catalog recorded, and no copy there counts as safe until it passes again.
    ``ledger_seq`` names the ``worm_checked`` entry that says so."""

    target: str
    location: str
    passed: bool
    checked_at: datetime
    ledger_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "location": self.location, "passed": self.passed,
                "checked_at": format_time(self.checked_at), "ledger_seq": self.ledger_seq}


class Tally(Struct, frozen=True, kw_only=True):
    """One of a station's tallies, kept by the catalog in the transaction that changes what it
    counts (the catalog's migration 0014 says what each is): ``name`` and ``label`` (a flag, a
    target, a job, an acquisition state; "" for none), a count, a sum of bytes and the newest
    time it saw."""

    name: str
    label: str
    count: int
    bytes: int
    at: datetime | None
# -- what the status page adds: a dock in progress, the store's growth, flagged items, the
# ledger's last entries ------------------------------------------------------------------------


class DockedFile(Struct, frozen=True, kw_only=True):
    """A file of a dock session: being copied (``copying``), taken, or not."""

    path: str
    size: int
    state: str
    started_at: datetime
    finished_at: datetime | None
    item: str | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "state": self.state,
                "started_at": format_time(self.started_at),
                "finished_at": _time(self.finished_at), "item": self.item}


class SessionTally(Struct, frozen=True, kw_only=True):
    """A dock session's files so far, read from its acquisitions: how many were taken (and
    their bytes), failed, and are being copied now; and its latest files, the newest first."""

    taken: int
    taken_bytes: int
    failed: int
    copying: int
    #: when the last file was taken (None: none yet)
    last_taken_at: datetime | None
    latest: tuple[DockedFile, ...]


class StoredSince(Struct, frozen=True, kw_only=True):
    """The bytes this station stored in the last day and the last week (items' sizes by
    ``stored_at``), which tell how fast the store fills."""

    day: int
    week: int


class FlaggedRef(Struct, frozen=True, kw_only=True):
    """One flagged item as a list of flags links it: the newest few of each kind."""

    sha256: str
    name: str
    set_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "name": self.name, "set_at": format_time(self.set_at)}


class LedgerEvent(Struct, frozen=True, kw_only=True):
    """A ledger entry as a list of recent events shows it (its data stays in ``show``)."""

    seq: int
    at: datetime | None  # None: the entry's time does not parse (``ledger verify`` says so)
    kind: str
    actor: str
    station: str
    item: str | None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": _time(self.at), "kind": self.kind, "actor": self.actor,
                "station": self.station, "item": self.item}
