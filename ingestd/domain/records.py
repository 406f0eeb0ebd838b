"""Records: what the catalog holds, as frozen values, with the states they go through.

The catalog turns its rows into these and nothing else leaves it. Times are aware UTC
datetimes; the values of the state enums are the strings stored, so the schema, the ledger and
every JSON output keep their words.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from msgspec import Struct

from .canonical import format_time
from .flags import Flag
from .models import RetentionClass, TimeSource
from .policy import Retention


class SessionState(StrEnum):
    """A dock session, from the dock to its end."""

    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"  # turned away (not registered, names that disagree, served already)
    INTERRUPTED = "interrupted"  # pulled out, stopped, or its process died; resumed at next dock
    FAILED = "failed"  # could not be read at all, or the store failed


class DockSource(StrEnum):
    """How a recorder came to be docked."""

    MANUAL = "manual"  # `ingestd ingest`
    WATCH = "watch"  # a folder under the watched root
    UDEV = "udev"  # a block device


class AcquisitionState(StrEnum):
    COPYING = "copying"
    STORED = "stored"  # new bytes, verified in the store
    KNOWN = "known"  # bytes already stored; nothing copied twice
    INTERRUPTED = "interrupted"  # the copy did not finish (pulled out, killed); redone at next dock
    FAILED = "failed"  # could not be read; the reason is kept


#: The acquisitions whose bytes are in the store.
TAKEN = (AcquisitionState.STORED, AcquisitionState.KNOWN)


class ReplicaState(StrEnum):
    """An item's copy on one target."""

    QUEUED = "queued"  # to be sent (again)
    UPLOADING = "uploading"
    VERIFIED = "verified"  # the target's answer matched: counted as sent
    FAILED = "failed"  # could not be sent; tried again at the next run
    MISMATCH = "mismatch"  # found not to hash to the item: written again, read back


class Item(Struct, frozen=True, kw_only=True):
    """One stored recording, named by the SHA-256 of its bytes."""

    sha256: str
    size: int
    stored_at: datetime
    station: str  # the station that stored it first, whose store holds it
    recorder: str
    officer: str
    original_name: str
    recorded_start: datetime
    recorded_end: datetime
    time_source: TimeSource
    duration: float | None
    media: dict[str, Any]  # what ffprobe said (MediaInfo.as_dict)
    ingest_deadline: datetime
    label_deadline: datetime
    replication_deadline: datetime
    retention_class: RetentionClass
    retain_until: datetime | None  # None: never expires
    hold: bool
    local_present: bool
    ledger_seq: int

    @property
    def retention(self) -> Retention:
        return Retention(cls=self.retention_class, until=self.retain_until, hold=self.hold)


class ListedItem(Struct, frozen=True, kw_only=True):
    """An item with its current label's case, party and officer (None: not labelled)."""

    item: Item
    case: str | None
    party: str | None
    label_officer: str | None

    @property
    def officer(self) -> str:
        """The officer the item is filed under: its label's, else its recorder's."""
        return self.label_officer or self.item.officer


class ItemFilter(Struct, frozen=True, kw_only=True):
    """Which items a listing shows. Dates filter on the recorded start."""

    case: str | None = None
    officer: str | None = None  # the current label's officer, else the recorder's
    recorder_serial: str | None = None
    flag: Flag | None = None
    since: datetime | None = None
    until: datetime | None = None


class WindowCheck(Struct, frozen=True, kw_only=True):
    """What the window check needs of an item."""

    sha256: str
    stored_at: datetime
    label_deadline: datetime
    replication_deadline: datetime
    labelled: bool


class DockSession(Struct, frozen=True, kw_only=True):
    id: int
    serial: str
    station: str
    source: DockSource
    mountpoint: str
    state: SessionState
    docked_at: datetime
    finished_at: datetime | None
    officer: str
    health: dict[str, Any]  # space, file system, battery, clock, faults
    files_seen: int
    files_new: int
    files_known: int
    files_failed: int
    bytes_copied: int
    error: str
    ledger_seq: int | None
    files_skipped: int
    skipped: dict[str, int]  # what the walk did not take, by kind
    pid: int | None  # the process serving it, on ``host``
    host: str | None
    actor: str


class Acquisition(Struct, frozen=True, kw_only=True):
    """One file read off a recorder in one dock session."""

    id: int
    session_id: int
    serial: str
    path: str  # display form, escaped
    path_hex: str  # the exact bytes of the recorder path
    size: int
    mtime_ns: int
    state: AcquisitionState
    item: str | None
    started_at: datetime
    finished_at: datetime | None
    error: str
    wiped_at: datetime | None
    ledger_seq: int | None

    @property
    def raw_path(self) -> bytes:
        return bytes.fromhex(self.path_hex)


class DockedAcquisition(Struct, frozen=True, kw_only=True):
    """An acquisition with the station and the time of the dock that made it."""

    acquisition: Acquisition
    station: str
    docked_at: datetime


class Label(Struct, frozen=True, kw_only=True):
    """One label of an item; the newest is its current label, the others its history."""

    id: int
    item: str
    case: str
    party: str
    officer: str
    categories: tuple[str, ...]
    by: str
    at: datetime
    ledger_seq: int
    case_type: str | None = None  # [retention.case_types]: its evidence period, if longer


class FlagRecord(Struct, frozen=True, kw_only=True):
    """A flag set on an item (flags stay)."""

    id: int
    item: str
    flag: Flag
    set_at: datetime
    detail: str
    ledger_seq: int


class FlaggedItem(Struct, frozen=True, kw_only=True):
    """A flag, with what a list of late items shows of its item."""

    flag: FlagRecord
    recorder: str
    officer: str
    original_name: str
    recorded_start: datetime
    recorded_end: datetime
    stored_at: datetime
    ingest_deadline: datetime
    label_deadline: datetime
    replication_deadline: datetime


class Justification(Struct, frozen=True, kw_only=True):
    """Why an item is late, kept beside its flag."""

    id: int
    item: str
    flag: Flag
    reason: str
    by: str
    at: datetime
    ledger_seq: int


class Replica(Struct, frozen=True, kw_only=True):
    """An item's copy on one target."""

    item: str
    target: str
    state: ReplicaState
    key: str
    size: int | None
    remote_sha256: str | None
    retain_until: datetime | None  # the lock it carries
    hold: bool
    attempts: int
    last_error: str
    updated_at: datetime
    verified_at: datetime | None
    ledger_seq: int | None
    proven_at: datetime | None  # read back and hashed to the item
    location: str  # where it was made: a target pointed elsewhere does not inherit it
    rewrite: bool  # the object there was found bad: a new one must be read back
    bad_versions: tuple[str, ...]  # kept by their lock, never counted again


class Checkpoint(Struct, frozen=True, kw_only=True):
    """A signed ledger checkpoint on a target: one sent, or the newest seen there."""

    target: str
    name: str
    seq: int
    head_hash: str
    at: datetime


class KeyRecord(Struct, frozen=True, kw_only=True):
    """A station key in the catalog's cache of the keys the ledger proves."""

    key_id: str
    station: str
    public_key: str  # hex
    created_at: datetime
    retired_at: datetime | None


def retention_data(retention: Retention) -> dict[str, Any]:
    """An item's retention as its ledger entries state it."""
    return {"retention_class": str(retention.cls),
            "retain_until": format_time(retention.until) if retention.until else None,
            "hold": retention.hold}


class SpotResult(StrEnum):
    """What a spot check found of an item's stored copy."""

    OK = "ok"  # hashes to its name and decodes end to end
    DAMAGED = "damaged"  # intact bytes that do not decode (flagged damaged_media)
    FIXITY_FAILED = "fixity_failed"  # does not hash to its name, or is gone (flagged so)


class ReviewResult(StrEnum):
    """What a supervisor saw playing a spot-checked item back."""

    OK = "ok"
    PROBLEM = "problem"


class SpotReview(Struct, frozen=True, kw_only=True):
    """A supervisor's review of one spot check."""

    id: int
    check_id: int
    item: str
    by: str
    result: ReviewResult
    note: str
    at: datetime
    ledger_seq: int


class SpotCheck(Struct, frozen=True, kw_only=True):
    """One spot check of an item, with its latest review (None: pending)."""

    id: int
    item: str
    officer: str  # whose item it was when checked: the label's officer, else the recorder's
    checked_at: datetime
    period_start: datetime
    fixity: str  # "ok" or what was wrong
    decode: str  # "ok", what the decoder said, or "not decoded" (the bytes were wrong)
    result: SpotResult
    ledger_seq: int
    review: SpotReview | None = None


class Case(Struct, frozen=True, kw_only=True):
    """A closed case: when enforcement ended (its archive window runs from then), who said so,
    and its archive once made (None: not yet)."""

    case: str
    closed_at: datetime
    closed_by: str
    ledger_seq: int  # its case_closed entry
    archived_at: datetime | None = None
    archive_location: str | None = None
    archive_package: str | None = None
    archive_seq: int | None = None  # its case_archived entry


class ReportRow(Struct, frozen=True, kw_only=True):
    """One line of a report: the items of one case, officer or recorder (``key``; "" for
    items without one, such as unlabelled items by case) recorded in the period."""

    key: str
    items: int
    seconds: float  # recorded, from the items' durations
    flagged: int  # items with at least one flag
    flags: dict[str, int]  # items per flag (the stored strings)
    exports: int  # exported entries naming one of the items
    spot_ok: int  # spot checks whose latest review found it ok
    spot_problem: int
    spot_pending: int  # not reviewed yet
    parties: tuple[str, ...] = ()  # by case: the parties and officers its labels name
    officers: tuple[str, ...] = ()
