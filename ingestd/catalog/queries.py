"""Queries over the catalog, written in SQLAlchemy Core so SQLite and PostgreSQL share them.

Rows are turned into the domain's records here (``domain.records``): no row, and no mapping
of columns, leaves the catalog."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import RowMapping

from ..domain.alerts import Alert, AlertState, Condition, Severity
from ..domain.canonical import format_time, parse_time
from ..domain.flags import Flag
from ..domain.models import (
    LedgerEntry,
    Recorder,
    RetentionClass,
    TimeSource,
    UnreadableEntry,
    body_of,
    item_prefix,
)
from ..domain.policy import Retention, SpotCandidate
from ..domain.records import (
    TAKEN,
    Acquisition,
    AcquisitionState,
    Case,
    Checkpoint,
    DockedAcquisition,
    DockSession,
    DockSource,
    FlaggedItem,
    FlagRecord,
    Item,
    ItemFilter,
    Justification,
    KeyRecord,
    Label,
    ListedItem,
    Replica,
    ReplicaState,
    ReportRow,
    ReviewResult,
    SessionState,
    SpotCheck,
    SpotResult,
    SpotReview,
    WindowCheck,
)
from ..domain.status import (
    Counts,
    DockedFile,
    FlaggedRef,
    JobRun,
    LedgerEvent,
    LockBehind,
    ReplicaError,
    ReplicaStats,
    SessionSummary,
    SessionTally,
    StoredSince,
    Tally,
    WaitingItem,
    WormStanding,
)
from ..errors import Ambiguous, NotFound
from .schema import (
    acquisitions,
    alerts,
    cases,
    checkpoints,
    checkpoints_seen,
    dock_sessions,
    flags,
    items,
    job_runs,
    justifications,
    keys,
    labels,
    ledger,
    recorders,
    replicas,
    spot_checks,
    spot_reviews,
    tallies,
    target_identities,
    target_worm,
)

# The statements run for every file ingested are built once: building one costs SQLAlchemy
# more than running it on SQLite.
_LAST_ENTRY = (select(ledger.c.seq, ledger.c.entry_hash, ledger.c.at)
               .order_by(ledger.c.seq.desc()).limit(1))
_HASHES_AFTER = (
    select(ledger.c.seq, ledger.c.entry_hash)
    .where(ledger.c.seq > bindparam("after"))
    .order_by(ledger.c.seq)
    .limit(bindparam("batch"))
)
_ENTRIES_AFTER = (
    select(ledger)
    .where(ledger.c.seq > bindparam("after"))
    .order_by(ledger.c.seq)
    .limit(bindparam("batch"))
)
_ITEM = select(items).where(items.c.sha256 == bindparam("sha"))
_ITEM_FLAGS = select(flags).where(flags.c.item == bindparam("sha")).order_by(flags.c.id)
_HAS_FLAG = select(flags.c.id).where(
    flags.c.item == bindparam("sha"), flags.c.flag == bindparam("flag")
)
_KNOWN_SOURCE = (
    select(acquisitions.c.item)
    .where(
        acquisitions.c.serial == bindparam("serial"),
        acquisitions.c.path_hex == bindparam("path_hex"),
        acquisitions.c.size == bindparam("size"),
        acquisitions.c.mtime_ns == bindparam("mtime_ns"),
        acquisitions.c.state.in_([str(s) for s in TAKEN]),
        acquisitions.c.item.is_not(None),
    )
    .limit(1)
)

_VERIFIED = str(ReplicaState.VERIFIED)


def _json(value: Any) -> str:
    """A JSON column's text (health, skipped, media)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


#: The most a job run's detail may hold when read back (a replication's names every target it
#: could not use, each error cut at 2000 characters: a few KiB); more was not written by
#: ingestd.
DETAIL_MAX = 64 * 1024


def _not_a_number(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON column that holds an object (a job run's detail); ``{}`` for anything else:
    text that does not parse, nests too deep, holds NaN or Infinity, or is longer than
    DETAIL_MAX. Its reader then falls back on what the run's summary says."""
    text = value or "{}"
    if len(text) > DETAIL_MAX:
        return {}
    try:
        found = json.loads(text, parse_constant=_not_a_number)
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def _time(value: Any) -> datetime:
    return parse_time(str(value))


def _maybe_time(value: Any) -> datetime | None:
    return parse_time(str(value)) if value else None


def _stamp(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _time_or_none(text: str | None) -> datetime | None:
    return parse_time(text) if text else None


def _entry(row: Mapping[Any, Any]) -> LedgerEntry:
    return LedgerEntry(
        seq=int(row["seq"]),
        at=parse_time(row["at"]),
        station=row["station"],
        actor=row["actor"],
        kind=row["kind"],
        item=row["item"],
        data=json.loads(row["data"]),
        prev_hash=row["prev_hash"],
        key_id=row["key_id"],
        entry_hash=row["entry_hash"],
        signature=row["signature"],
    )


def _key(row: RowMapping) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        station=row["station"],
        public_key=row["public_key"],
        created_at=_time(row["created_at"]),
        retired_at=_maybe_time(row["retired_at"]),
    )


def _recorder(row: RowMapping) -> Recorder:
    return Recorder(
        serial=row["serial"],
        officer=row["officer"],
        officer_id=row["officer_id"],
        unit=row["unit"],
        vendor=row["vendor"],
        model=row["model"],
        added_at=parse_time(row["added_at"]),
        active=bool(row["active"]),
        ledger_seq=int(row["ledger_seq"]),
    )


def _session(row: RowMapping) -> DockSession:
    return DockSession(
        id=int(row["id"]),
        serial=row["serial"],
        station=row["station"],
        source=DockSource(row["source"]),
        mountpoint=row["mountpoint"],
        state=SessionState(row["state"]),
        docked_at=_time(row["docked_at"]),
        finished_at=_maybe_time(row["finished_at"]),
        officer=row["officer"],
        health=json.loads(row["health"] or "{}"),
        files_seen=int(row["files_seen"]),
        files_new=int(row["files_new"]),
        files_known=int(row["files_known"]),
        files_failed=int(row["files_failed"]),
        bytes_copied=int(row["bytes_copied"]),
        error=row["error"],
        ledger_seq=row["ledger_seq"],
        files_skipped=int(row["files_skipped"]),
        skipped=json.loads(row["skipped"] or "{}"),
        pid=row["pid"],
        host=row["host"],
        actor=row["actor"],
    )


def _acquisition(row: RowMapping) -> Acquisition:
    return Acquisition(
        id=int(row["id"]),
        session_id=int(row["session_id"]),
        serial=row["serial"],
        path=row["path"],
        path_hex=row["path_hex"],
        size=int(row["size"]),
        mtime_ns=int(row["mtime_ns"]),
        state=AcquisitionState(row["state"]),
        item=row["item"],
        started_at=_time(row["started_at"]),
        finished_at=_maybe_time(row["finished_at"]),
        error=row["error"],
        wiped_at=_maybe_time(row["wiped_at"]),
        ledger_seq=row["ledger_seq"],
    )


def _item(row: RowMapping) -> Item:
    return Item(
        sha256=row["sha256"],
        size=int(row["size"]),
        stored_at=_time(row["stored_at"]),
        station=row["station"],
        recorder=row["recorder"],
        officer=row["officer"],
        original_name=row["original_name"],
        recorded_start=_time(row["recorded_start"]),
        recorded_end=_time(row["recorded_end"]),
        time_source=TimeSource(row["time_source"]),
        duration=row["duration"],
        media=json.loads(row["media"] or "{}"),
        ingest_deadline=_time(row["ingest_deadline"]),
        label_deadline=_time(row["label_deadline"]),
        replication_deadline=_time(row["replication_deadline"]),
        retention_class=RetentionClass(row["retention_class"] or RetentionClass.ROUTINE),
        retain_until=_maybe_time(row["retain_until"]),
        hold=bool(row["hold"]),
        local_present=bool(row["local_present"]),
        ledger_seq=int(row["ledger_seq"]),
    )


def _listed(row: RowMapping) -> ListedItem:
    return ListedItem(
        item=_item(row), case=row["case_no"], party=row["party"], label_officer=row["label_officer"]
    )


def _label(row: RowMapping) -> Label:
    return Label(
        id=int(row["id"]),
        item=row["item"],
        case=row["case_no"],
        party=row["party"],
        officer=row["officer"],
        categories=tuple(json.loads(row["categories"])) if row["categories"] else (),
        by=row["by"],
        at=_time(row["at"]),
        ledger_seq=int(row["ledger_seq"]),
        case_type=row["case_type"],
    )


def _flag(row: RowMapping) -> FlagRecord:
    return FlagRecord(
        id=int(row["id"]),
        item=row["item"],
        flag=Flag(row["flag"]),
        set_at=_time(row["set_at"]),
        detail=row["detail"],
        ledger_seq=int(row["ledger_seq"]),
    )


def _justification(row: RowMapping) -> Justification:
    return Justification(
        id=int(row["id"]),
        item=row["item"],
        flag=Flag(row["flag"]),
        reason=row["reason"],
        by=row["by"],
        at=_time(row["at"]),
        ledger_seq=int(row["ledger_seq"]),
    )


def _replica(row: RowMapping) -> Replica:
    return Replica(
        item=row["item"],
        target=row["target"],
        state=ReplicaState(row["state"]),
        key=row["key"],
        size=row["size"],
        remote_sha256=row["remote_sha256"],
        retain_until=_maybe_time(row["retain_until"]),
        hold=bool(row["hold"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        updated_at=_time(row["updated_at"]),
        verified_at=_maybe_time(row["verified_at"]),
        ledger_seq=row["ledger_seq"],
        proven_at=_maybe_time(row["proven_at"]),
        location=row["location"] or "",
        rewrite=bool(row["rewrite"]),
        bad_versions=tuple((row["bad_versions"] or "").split()),
    )


def _checkpoint(row: RowMapping) -> Checkpoint:
    return Checkpoint(
        target=row["target"],
        name=row["name"],
        seq=int(row["seq"]),
        head_hash=row["head_hash"],
        at=_time(row["at"]),
    )


def _summary(row: RowMapping) -> SessionSummary:
    return SessionSummary(
        id=int(row["id"]),
        serial=row["serial"],
        source=DockSource(row["source"]),
        state=SessionState(row["state"]),
        docked_at=parse_time(row["docked_at"]),
        finished_at=_time_or_none(row["finished_at"]),
        files_new=int(row["files_new"]),
        files_known=int(row["files_known"]),
        files_failed=int(row["files_failed"]),
        files_skipped=int(row["files_skipped"]),
        error=row["error"],
        skipped=json.loads(row["skipped"] or "{}"),
        pid=None if row["pid"] is None else int(row["pid"]),
        host=row["host"],
        health=json.loads(row["health"] or "{}"),
    )


def _spot_review(row: RowMapping) -> SpotReview:
    return SpotReview(
        id=int(row["id"]),
        check_id=int(row["check_id"]),
        item=row["item"],
        by=row["by"],
        result=ReviewResult(row["result"]),
        note=row["note"],
        at=_time(row["at"]),
        ledger_seq=int(row["ledger_seq"]),
    )


def _spot_check(row: RowMapping, review: SpotReview | None = None) -> SpotCheck:
    return SpotCheck(
        id=int(row["id"]),
        item=row["item"],
        officer=row["officer"],
        checked_at=_time(row["checked_at"]),
        period_start=_time(row["period_start"]),
        fixity=row["fixity"],
        decode=row["decode"],
        result=SpotResult(row["result"]),
        ledger_seq=int(row["ledger_seq"]),
        review=review,
    )


def _case(row: RowMapping) -> Case:
    return Case(
        case=row["case_no"],
        closed_at=_time(row["closed_at"]),
        closed_by=row["closed_by"],
        ledger_seq=int(row["ledger_seq"]),
        archived_at=_maybe_time(row["archived_at"]),
        archive_location=row["archive_location"],
        archive_package=row["archive_package"],
        archive_seq=None if row["archive_seq"] is None else int(row["archive_seq"]),
    )


def _item_search(wanted: ItemFilter) -> Any:
    # The current label, looked up per item on its index: a list of every item's latest
    # label in an IN (...) is built again for every row SQLite joins.
    current = labels.alias("current")
    earlier = labels.alias("earlier")
    latest = (
        select(func.max(earlier.c.id)).where(earlier.c.item == items.c.sha256).scalar_subquery()
    )
    query = (
        select(items, current.c.case_no, current.c.party, current.c.officer.label("label_officer"))
        .select_from(items.outerjoin(current, current.c.id == latest))
        .order_by(items.c.recorded_start, items.c.sha256)
    )
    if wanted.case is not None:
        query = query.where(current.c.case_no == wanted.case)
    if wanted.officer is not None:
        query = query.where(
            or_(
                current.c.officer == wanted.officer,
                and_(current.c.officer.is_(None), items.c.officer == wanted.officer),
            )
        )
    if wanted.recorder_serial is not None:
        query = query.where(items.c.recorder == wanted.recorder_serial)
    if wanted.flag is not None:
        query = query.where(
            items.c.sha256.in_(select(flags.c.item).where(flags.c.flag == str(wanted.flag)))
        )
    if wanted.since is not None:
        query = query.where(items.c.recorded_start >= format_time(wanted.since))
    if wanted.until is not None:
        query = query.where(items.c.recorded_start < format_time(wanted.until))
    return query


#: Rows an item listing holds at a time.
LIST_BATCH = 1000

#: Rows the walks to a target's oldest waiting item read at first, and at most, a chunk.
WAITING_CHUNK = 256
WAITING_CHUNK_MAX = 16384



_CHECKED = select(ledger).where(ledger.c.seq > bindparam("after")).order_by(ledger.c.seq)


def _readable(row: RowMapping) -> LedgerEntry | UnreadableEntry:
    try:
        entry = _entry(row)
    except (TypeError, ValueError) as exc:
        return _unreadable(row, _why(row, exc))
    if not isinstance(entry.data, dict):
        return _unreadable(row, "its data is not a JSON object")
    return entry


def _why(row: RowMapping, exc: Exception) -> str:
    try:
        json.loads(row["data"])
    except (TypeError, ValueError) as bad:
        return f"its data is not JSON ({bad})"
    return f"its time {row['at']!r} is not a time ({exc})"


def _unreadable(row: RowMapping, why: str) -> UnreadableEntry:
    return UnreadableEntry(seq=int(row["seq"]), station=str(row["station"]),
                           prev_hash=str(row["prev_hash"]), entry_hash=str(row["entry_hash"]),
                           why=why)


class Tx:
    """One catalog transaction: every query ingestd makes, typed, over one connection. Opened by
    ``Catalog.read()`` and ``Catalog.write()``, which hand it out as a ``ports.CatalogTx``;
    nothing outside the catalog sees SQL or a row."""

    def __init__(self, conn: Connection, *, writing: bool = False) -> None:
        self.conn = conn
        #: Ledger entries inserted in this transaction, in order. Its last one is the head:
        #: the writer holds the ledger, so no one else appends while it is open.
        self.inserted: list[LedgerEntry] = []
        # What a write transaction knows without asking again, since no one else writes while
        # it is open: the ledger's last entry before it, the items it inserted and their flags.
        self._writing = writing
        self._last: tuple[int, str | None, str | None] | None = None
        self._new_items: set[str] = set()
        self._new_flags: set[tuple[str, str]] = set()

    def _update(self, key: Column[Any], value: Any, values: dict[str, Any]) -> None:
        """UPDATE one row by its key. The values go as parameters (they name the columns set), so
        SQLAlchemy compiles one statement per set of columns and reuses it."""
        self.conn.execute(
            update(key.table).where(key == bindparam("_key")), {"_key": value, **values}
        )

    # -- ledger ------------------------------------------------------------------------------------

    def _last_stored(self) -> tuple[int, str | None, str | None]:
        """The last entry stored before this transaction's own: its sequence number, hash and
        time as stored ((0, None, None) for an empty ledger). The time is parsed only by those
        who ask for it: a head whose time cannot be read still has its place in the chain."""
        if self._last is not None:
            return self._last
        row = self.conn.execute(_LAST_ENTRY).first()
        last = (int(row.seq), str(row.entry_hash), str(row.at)) if row else (0, None, None)
        if self._writing:
            self._last = last
        return last

    def ledger_last_time(self) -> datetime | None:
        """When the ledger's last entry is dated (None for an empty ledger)."""
        if self.inserted:
            return self.inserted[-1].at
        at = self._last_stored()[2]
        return parse_time(at) if at is not None else None

    def ledger_head(self) -> tuple[int, str | None]:
        if self.inserted:
            return self.inserted[-1].seq, self.inserted[-1].entry_hash
        seq, entry_hash, _ = self._last_stored()
        return seq, entry_hash

    def insert_entry(self, entry: LedgerEntry) -> None:
        row = {**body_of(entry),
               "data": json.dumps(entry.data, sort_keys=True, ensure_ascii=False),
               "entry_hash": entry.entry_hash, "signature": entry.signature}
        self.conn.execute(insert(ledger), row)
        self.inserted.append(_entry(row))  # as it reads back from the catalog

    def iter_entries(
        self,
        *,
        after: int = 0,
        item: str | None = None,
        kinds: Sequence[str] | None = None,
        upto: int | None = None,
        batch: int = 5000,
    ) -> Iterator[LedgerEntry]:
        last = after
        query = _ENTRIES_AFTER if item is None else _ENTRIES_AFTER.where(ledger.c.item == item)
        if kinds is not None:
            query = query.where(ledger.c.kind.in_(list(kinds)))
        if upto is not None:
            query = query.where(ledger.c.seq <= upto)
        while True:
            rows = self.conn.execute(query, {"after": last, "batch": batch}).mappings().all()
            for row in rows:
                yield _entry(row)
            if len(rows) < batch:
                return
            last = int(rows[-1]["seq"])

    def entry_hashes(self, *, upto: int, batch: int = 50000) -> Iterator[tuple[int, str]]:
        """Each entry's sequence and hash up to ``upto``, in order (the Merkle tree's leaves)."""
        last = 0
        query = _HASHES_AFTER.where(ledger.c.seq <= upto)
        while True:
            rows = self.conn.execute(query, {"after": last, "batch": batch}).all()
            for row in rows:
                yield int(row.seq), str(row.entry_hash)
            if len(rows) < batch:
                return
            last = int(rows[-1].seq)

    def entries_of_kinds(
        self, kinds: Sequence[str], *, station: str | None = None
    ) -> list[LedgerEntry]:
        """Every entry of these kinds (of one station), in order (for kinds that are few, such as
        repairs)."""
        query = select(ledger).where(ledger.c.kind.in_(list(kinds)))
        if station is not None:
            query = query.where(ledger.c.station == station)
        rows = self.conn.execute(query.order_by(ledger.c.seq)).mappings()
        return [_entry(row) for row in rows]

    def entries_to_check(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        item: str | None = None,
        kinds: Sequence[str] | None = None,
        batch: int = 1000,
    ) -> Iterator[LedgerEntry | UnreadableEntry]:
        """The entries in sequence order, a batch at a time, as the checks read them: one whose
        time or data does not parse comes as an :class:`UnreadableEntry`, and the walk goes
        on (``iter_entries`` raises on it)."""
        query = _CHECKED
        if upto is not None:
            query = query.where(ledger.c.seq <= upto)
        if item is not None:
            query = query.where(ledger.c.item == item)
        if kinds is not None:
            query = query.where(ledger.c.kind.in_(list(kinds)))
        query = query.limit(batch)
        last = after
        while True:
            rows = self.conn.execute(query, {"after": last}).mappings().all()
            for row in rows:
                yield _readable(row)
            if len(rows) < batch:
                return
            last = int(rows[-1]["seq"])

    def entry_to_check(self, seq: int) -> LedgerEntry | UnreadableEntry | None:
        """Entry ``seq``, readable or not (None: there is none)."""
        return next(self.entries_to_check(after=seq - 1, upto=seq, batch=1), None)

    def add_key(self, *, key_id: str, station: str, public_hex: str, at: datetime) -> None:
        exists = self.conn.execute(select(keys.c.key_id).where(keys.c.key_id == key_id)).first()
        if not exists:
            self.conn.execute(
                insert(keys).values(
                    key_id=key_id,
                    station=station,
                    public_key=public_hex,
                    created_at=format_time(at),
                )
            )

    def retire_key(self, key_id: str, at: datetime) -> None:
        self.conn.execute(
            update(keys).where(keys.c.key_id == key_id).values(retired_at=format_time(at))
        )

    def all_keys(self) -> list[KeyRecord]:
        rows = self.conn.execute(select(keys).order_by(keys.c.created_at)).mappings()
        return [_key(row) for row in rows]

    # -- recorders ---------------------------------------------------------------------------------

    def recorder(self, serial: str, *, active_only: bool = True) -> Recorder | None:
        query = select(recorders).where(recorders.c.serial == serial)
        if active_only:
            query = query.where(recorders.c.active.is_(True))
        row = self.conn.execute(query).mappings().first()
        return _recorder(row) if row is not None else None

    def upsert_recorder(self, rec: Recorder, *, at: datetime, ledger_seq: int) -> None:
        values = dict(
            officer=rec.officer,
            officer_id=rec.officer_id,
            unit=rec.unit,
            vendor=rec.vendor,
            model=rec.model,
            active=True,
            ledger_seq=ledger_seq,
        )
        done = self.conn.execute(
            update(recorders).where(recorders.c.serial == rec.serial).values(**values)
        )
        if done.rowcount == 0:
            self.conn.execute(
                insert(recorders).values(serial=rec.serial, added_at=format_time(at), **values)
            )

    def deactivate_recorder(self, serial: str, *, ledger_seq: int) -> bool:
        done = self.conn.execute(
            update(recorders)
            .where(recorders.c.serial == serial, recorders.c.active.is_(True))
            .values(active=False, ledger_seq=ledger_seq)
        )
        return done.rowcount > 0

    def list_recorders(self, *, include_removed: bool = False) -> list[Recorder]:
        query = select(recorders).order_by(recorders.c.serial)
        if not include_removed:
            query = query.where(recorders.c.active.is_(True))
        return [_recorder(row) for row in self.conn.execute(query).mappings()]

    # -- dock sessions and acquisitions ---------------------------------------------------------

    def open_session(
        self,
        *,
        serial: str,
        station: str,
        source: DockSource,
        mountpoint: str,
        state: SessionState,
        docked_at: datetime,
        actor: str,
        ledger_seq: int,
        health: Mapping[str, Any],
        officer: str = "",
        finished_at: datetime | None = None,
        error: str = "",
        pid: int | None = None,
        host: str | None = None,
    ) -> int:
        """Record a dock session; returns its id. A session turned away is opened ended."""
        result = self.conn.execute(
            insert(dock_sessions),
            {
                "serial": serial,
                "station": station,
                "source": str(source),
                "mountpoint": mountpoint,
                "state": str(state),
                "docked_at": format_time(docked_at),
                "finished_at": _stamp(finished_at),
                "officer": officer,
                "health": _json(health),
                "error": error,
                "ledger_seq": ledger_seq,
                "pid": pid,
                "host": host,
                "actor": actor,
            },
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def session_skipped(self, session_id: int, *, by_kind: Mapping[str, int]) -> None:
        """What the session's walk did not take, counted by kind."""
        self._update(
            dock_sessions.c.id,
            session_id,
            {"files_skipped": sum(by_kind.values()), "skipped": _json(by_kind)},
        )

    def close_session(
        self,
        session_id: int,
        *,
        state: SessionState,
        finished_at: datetime,
        files_seen: int,
        files_new: int,
        files_known: int,
        files_failed: int,
        bytes_copied: int,
        error: str,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        """A session's end, with what it did (and the dock's health, when it was measured)."""
        values: dict[str, Any] = {
            "state": str(state),
            "finished_at": format_time(finished_at),
            "files_seen": files_seen,
            "files_new": files_new,
            "files_known": files_known,
            "files_failed": files_failed,
            "bytes_copied": bytes_copied,
            "error": error,
        }
        if health is not None:
            values["health"] = _json(health)
        self._update(dock_sessions.c.id, session_id, values)

    def session(self, session_id: int) -> DockSession | None:
        row = (
            self.conn.execute(select(dock_sessions).where(dock_sessions.c.id == session_id))
            .mappings()
            .first()
        )
        return _session(row) if row is not None else None

    def start_acquisition(
        self,
        *,
        session_id: int,
        serial: str,
        path: str,
        path_hex: str,
        size: int,
        mtime_ns: int,
        started_at: datetime,
    ) -> int:
        """A file is being copied off a recorder; returns the acquisition's id."""
        result = self.conn.execute(
            insert(acquisitions),
            {
                "session_id": session_id,
                "serial": serial,
                "path": path,
                "path_hex": path_hex,
                "size": size,
                "mtime_ns": mtime_ns,
                "state": str(AcquisitionState.COPYING),
                "started_at": format_time(started_at),
            },
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def acquisition_stored(
        self,
        acq_id: int,
        *,
        state: AcquisitionState,
        item: str,
        size: int,
        at: datetime,
        ledger_seq: int,
    ) -> None:
        """The file's bytes are in the store (``stored`` or ``known``), as ``item``."""
        self._update(
            acquisitions.c.id,
            acq_id,
            {
                "state": str(state),
                "item": item,
                "size": size,
                "finished_at": format_time(at),
                "ledger_seq": ledger_seq,
            },
        )

    def acquisition_failed(
        self, acq_id: int, *, state: AcquisitionState, error: str, at: datetime
    ) -> None:
        """The copy ended without the file's bytes stored (``failed`` or ``interrupted``)."""
        self._update(
            acquisitions.c.id,
            acq_id,
            {"state": str(state), "error": error, "finished_at": format_time(at)},
        )

    def acquisition_wiped(self, acq_id: int, at: datetime | None) -> None:
        """When the file was wiped from the recorder (None: its wipe did not happen)."""
        self._update(acquisitions.c.id, acq_id, {"wiped_at": _stamp(at)})

    def known_source(self, *, serial: str, path_hex: str, size: int, mtime_ns: int) -> str | None:
        """The item an identical source file (same recorder, path, size, time) was stored as."""
        row = self.conn.execute(
            _KNOWN_SOURCE,
            {"serial": serial, "path_hex": path_hex, "size": size, "mtime_ns": mtime_ns},
        ).first()
        return str(row.item) if row else None

    def interrupt_abandoned(
        self, *, station: str, host: str, at: datetime, alive: Callable[[int], bool]
    ) -> tuple[int, int]:
        """Sessions left ``running`` by a process that is gone (killed, crashed) are marked
        interrupted, with their copies in flight; they are resumed at the next dock. Sessions of
        live processes on this host are left alone."""
        stamp = format_time(at)
        abandoned = [
            row.id
            for row in self.conn.execute(
                select(dock_sessions.c.id, dock_sessions.c.pid, dock_sessions.c.host).where(
                    dock_sessions.c.station == station,
                    dock_sessions.c.state == str(SessionState.RUNNING),
                )
            )
            if row.pid is None or row.host != host or not alive(int(row.pid))
        ]
        if not abandoned:
            return 0, 0
        acqs = self.conn.execute(
            update(acquisitions)
            .where(
                acquisitions.c.state == str(AcquisitionState.COPYING),
                acquisitions.c.session_id.in_(abandoned),
            )
            .values(
                state=str(AcquisitionState.INTERRUPTED),
                finished_at=stamp,
                error="interrupted (process stopped)",
            )
        ).rowcount
        sessions = self.conn.execute(
            update(dock_sessions)
            .where(dock_sessions.c.id.in_(abandoned))
            .values(state=str(SessionState.INTERRUPTED), finished_at=stamp)
        ).rowcount
        return sessions, acqs

    def wipe_candidates(self, session_id: int) -> list[Acquisition]:
        """A session's acquisitions whose bytes are stored and that are still on the recorder."""
        rows = self.conn.execute(
            select(acquisitions)
            .where(
                acquisitions.c.session_id == session_id,
                acquisitions.c.state.in_([str(s) for s in TAKEN]),
                acquisitions.c.item.is_not(None),
                acquisitions.c.wiped_at.is_(None),
            )
            .order_by(acquisitions.c.id)
        ).mappings()
        return [_acquisition(row) for row in rows]

    def acquisitions_of(self, sha256: str) -> list[DockedAcquisition]:
        rows = self.conn.execute(
            select(acquisitions, dock_sessions.c.station, dock_sessions.c.docked_at)
            .join(dock_sessions, dock_sessions.c.id == acquisitions.c.session_id)
            .where(acquisitions.c.item == sha256)
            .order_by(acquisitions.c.id)
        ).mappings()
        return [
            DockedAcquisition(
                acquisition=_acquisition(row),
                station=row["station"],
                docked_at=_time(row["docked_at"]),
            )
            for row in rows
        ]

    def recent_sessions(self, limit: int = 20, *, station: str) -> list[SessionSummary]:
        """``station``'s last ``limit`` dock sessions, the newest first."""
        rows = self.conn.execute(
            select(dock_sessions)
            .where(dock_sessions.c.station == station)
            .order_by(dock_sessions.c.id.desc())
            .limit(limit)
        ).mappings()
        return [_summary(row) for row in rows]

    # -- items -------------------------------------------------------------------------------------

    def item(self, sha256: str) -> Item | None:
        row = self.conn.execute(_ITEM, {"sha": sha256}).mappings().first()
        return _item(row) if row is not None else None

    def insert_item(self, item: Item) -> None:
        self.conn.execute(
            insert(items),
            {
                "sha256": item.sha256,
                "size": item.size,
                "stored_at": format_time(item.stored_at),
                "station": item.station,
                "recorder": item.recorder,
                "officer": item.officer,
                "original_name": item.original_name,
                "recorded_start": format_time(item.recorded_start),
                "recorded_end": format_time(item.recorded_end),
                "time_source": str(item.time_source),
                "duration": item.duration,
                "media": _json(item.media),
                "ingest_deadline": format_time(item.ingest_deadline),
                "label_deadline": format_time(item.label_deadline),
                "replication_deadline": format_time(item.replication_deadline),
                "retention_class": str(item.retention_class),
                "retain_until": _stamp(item.retain_until),
                "hold": item.hold,
                "local_present": item.local_present,
                "ledger_seq": item.ledger_seq,
            },
        )
        self._new_items.add(item.sha256)

    def set_retention(self, sha256: str, retention: Retention) -> None:
        """The item's retention class, retain-until date and hold, as its entry states them."""
        self._update(
            items.c.sha256,
            sha256,
            {
                "retention_class": str(retention.cls),
                "retain_until": _stamp(retention.until),
                "hold": retention.hold,
            },
        )

    def set_local_present(self, sha256: str, present: bool) -> None:
        """Whether the local store holds the item's bytes (False once evicted)."""
        self._update(items.c.sha256, sha256, {"local_present": present})

    def resolve(self, ref: str) -> str:
        """A full SHA-256 or a unique prefix of at least 8 hex digits (``item_prefix``), to the
        item's SHA-256. The command line checks the form of what it is given (``ItemRef``);
        anything else matches no item."""
        prefix = item_prefix(ref)
        if prefix is None:
            raise NotFound(f"no item matches {ref!r}")
        ref = prefix
        rows = self.conn.execute(
            select(items.c.sha256).where(items.c.sha256.like(ref + "%")).limit(2)
        ).all()
        if not rows:
            raise NotFound(f"no item matches {ref}")
        if len(rows) > 1:
            raise Ambiguous(f"{ref} matches more than one item; give more digits")
        return str(rows[0].sha256)

    def item_flags(self, sha256: str) -> list[FlagRecord]:
        return [_flag(row) for row in self.conn.execute(_ITEM_FLAGS, {"sha": sha256}).mappings()]

    def has_flag(self, sha256: str, flag: Flag) -> bool:
        if sha256 in self._new_items:
            # Inserted in this transaction: its flags are those set since (a flag's row
            # names its item, so none can be older than the item's).
            return (sha256, str(flag)) in self._new_flags
        return self.conn.execute(_HAS_FLAG, {"sha": sha256, "flag": str(flag)}).first() is not None

    def insert_flag(
        self, *, item: str, flag: Flag, set_at: datetime, detail: str, ledger_seq: int
    ) -> None:
        self.conn.execute(
            insert(flags),
            {
                "item": item,
                "flag": str(flag),
                "set_at": format_time(set_at),
                "detail": detail,
                "ledger_seq": ledger_seq,
            },
        )
        self._new_flags.add((item, str(flag)))

    def current_label(self, sha256: str) -> Label | None:
        row = (
            self.conn.execute(
                select(labels).where(labels.c.item == sha256).order_by(labels.c.id.desc()).limit(1)
            )
            .mappings()
            .first()
        )
        return _label(row) if row is not None else None

    def label_history(self, sha256: str) -> list[Label]:
        rows = self.conn.execute(
            select(labels).where(labels.c.item == sha256).order_by(labels.c.id)
        ).mappings()
        return [_label(row) for row in rows]

    def insert_label(
        self,
        *,
        item: str,
        case: str,
        party: str,
        officer: str,
        categories: Sequence[str],
        by: str,
        at: datetime,
        ledger_seq: int,
        case_type: str | None = None,
    ) -> None:
        self.conn.execute(
            insert(labels),
            {
                "item": item,
                "case_no": case,
                "party": party,
                "officer": officer,
                "categories": json.dumps(list(categories)),
                "by": by,
                "at": format_time(at),
                "ledger_seq": ledger_seq,
                "case_type": case_type,
            },
        )

    def insert_justification(
        self, *, item: str, flag: Flag, reason: str, by: str, at: datetime, ledger_seq: int
    ) -> None:
        self.conn.execute(
            insert(justifications),
            {
                "item": item,
                "flag": str(flag),
                "reason": reason,
                "by": by,
                "at": format_time(at),
                "ledger_seq": ledger_seq,
            },
        )

    def justifications_of(self, sha256: str) -> list[Justification]:
        rows = self.conn.execute(
            select(justifications)
            .where(justifications.c.item == sha256)
            .order_by(justifications.c.id)
        ).mappings()
        return [_justification(row) for row in rows]

    def search_items(
        self, wanted: ItemFilter | None = None, *, limit: int | None = None
    ) -> list[ListedItem]:
        """Items with their current label, in the order of their recorded start."""
        query = _item_search(wanted or ItemFilter())
        if limit is not None:
            query = query.limit(limit)
        return [_listed(row) for row in self.conn.execute(query).mappings()]

    def iter_item_batches(
        self,
        wanted: ItemFilter | None = None,
        *,
        limit: int | None = None,
        batch: int = LIST_BATCH,
    ) -> Iterator[list[ListedItem]]:
        """:func:`search_items` in batches, in the same order, in constant memory: each batch
        starts after the last (recorded_start, sha256) of the one before (keyset pagination, on
        an index), so no batch costs more than the first."""
        base = _item_search(wanted or ItemFilter())
        after: tuple[str, str] | None = None
        left = limit
        while left is None or left > 0:
            size = batch if left is None else min(batch, left)
            query = base
            if after is not None:
                # A row-value comparison: SQLite and PostgreSQL seek it on the index.
                query = query.where(tuple_(items.c.recorded_start, items.c.sha256) > tuple_(*after))
            rows = list(self.conn.execute(query.limit(size)).mappings())
            if rows:
                yield [_listed(row) for row in rows]
            if len(rows) < size:
                return
            after = (rows[-1]["recorded_start"], rows[-1]["sha256"])
            if left is not None:
                left -= len(rows)

    def flags_by_item(self, shas: Sequence[str] | None = None) -> dict[str, list[Flag]]:
        query = select(flags.c.item, flags.c.flag).order_by(flags.c.id)
        if shas is not None:
            query = query.where(flags.c.item.in_(list(shas)))
        out: dict[str, list[Flag]] = {}
        for row in self.conn.execute(query):
            out.setdefault(row.item, []).append(Flag(row.flag))
        return out

    def flagged_items(self, wanted: Sequence[Flag]) -> list[FlaggedItem]:
        """Every flag among ``wanted``, oldest first, with what a list of late items shows."""
        rows = self.conn.execute(
            select(
                flags,
                items.c.recorded_start,
                items.c.recorded_end,
                items.c.stored_at,
                items.c.recorder,
                items.c.officer,
                items.c.original_name,
                items.c.ingest_deadline,
                items.c.label_deadline,
                items.c.replication_deadline,
            )
            .join(items, items.c.sha256 == flags.c.item)
            .where(flags.c.flag.in_([str(f) for f in wanted]))
            .order_by(flags.c.set_at, flags.c.item)
        ).mappings()
        return [
            FlaggedItem(
                flag=_flag(row),
                recorder=row["recorder"],
                officer=row["officer"],
                original_name=row["original_name"],
                recorded_start=_time(row["recorded_start"]),
                recorded_end=_time(row["recorded_end"]),
                stored_at=_time(row["stored_at"]),
                ingest_deadline=_time(row["ingest_deadline"]),
                label_deadline=_time(row["label_deadline"]),
                replication_deadline=_time(row["replication_deadline"]),
            )
            for row in rows
        ]

    def justifications_by_flag(
        self, wanted: Sequence[Flag]
    ) -> dict[tuple[str, Flag], list[Justification]]:
        """Every justification of an item for a flag it has, among ``wanted``, in one query:
        by (item, flag)."""
        out: dict[tuple[str, Flag], list[Justification]] = {}
        for row in self.conn.execute(
            select(justifications)
            .join(
                flags,
                and_(flags.c.item == justifications.c.item, flags.c.flag == justifications.c.flag),
            )
            .where(flags.c.flag.in_([str(f) for f in wanted]))
            .order_by(justifications.c.id)
        ).mappings():
            found = _justification(row)
            out.setdefault((found.item, found.flag), []).append(found)
        return out

    def counts(self, *, station: str) -> Counts:
        """This station's items (those it stored first), flags and acquisitions: a catalog shared
        by many stations holds the others' too. Read from the station's tallies (kept by the
        triggers of migrations 0014 and 0018): a few dozen rows however many items there
        are."""
        kept = self._tally_map(station)

        def n(name: str, label: str = "") -> int:
            return kept[(name, label)][0] if (name, label) in kept else 0

        def size(name: str) -> int:
            return kept[(name, "")][1] if (name, "") in kept else 0

        by_flag = {label: count for (name, label), (count, _) in sorted(kept.items())
                   if name == "flagged" and count > 0}
        by_state = {label: count for (name, label), (count, _) in sorted(kept.items())
                    if name == "acquisitions" and count > 0}
        return Counts(
            items=n("local") + n("evicted"),
            bytes=size("local") + size("evicted"),
            local_items=n("local"),
            local_bytes=size("local"),
            labelled=n("labelled"),
            flags=by_flag,
            acquisitions=by_state,
        )

    def _tally_map(self, station: str) -> dict[tuple[str, str], tuple[int, int]]:
        """The station's tallies: (count, bytes) by (name, label)."""
        return {(row.name, row.label): (int(row.n), int(row.bytes))
                for row in self.conn.execute(
                    select(tallies.c.name, tallies.c.label, tallies.c.n, tallies.c.bytes)
                    .where(tallies.c.station == station))}

    def items_needing_window_check(self, *, station: str) -> list[WindowCheck]:
        """The items ``station`` stored, with their deadlines and whether they are labelled."""
        current = select(labels.c.item).distinct().subquery()
        rows = self.conn.execute(
            select(
                items.c.sha256,
                items.c.stored_at,
                items.c.label_deadline,
                items.c.replication_deadline,
                current.c.item.label("labelled"),
            )
            .select_from(items.outerjoin(current, current.c.item == items.c.sha256))
            .where(items.c.station == station)
        ).mappings()
        return [
            WindowCheck(
                sha256=row["sha256"],
                stored_at=_time(row["stored_at"]),
                label_deadline=_time(row["label_deadline"]),
                replication_deadline=_time(row["replication_deadline"]),
                labelled=row["labelled"] is not None,
            )
            for row in rows
        ]

    def verified_targets(self, sha256: str) -> set[str]:
        """Targets that hold a copy counted as sent (its bytes may not have been read back)."""
        return {
            row.target
            for row in self.conn.execute(
                select(replicas.c.target).where(
                    replicas.c.item == sha256, replicas.c.state == _VERIFIED
                )
            )
        }

    def proven_targets(self, sha256: str, locations: Mapping[str, str]) -> set[str]:
        """Targets whose copy was read back and hashed to the item, at the location the target
        now has (``locations``: target name to location), and whose lock covers the item's
        retention and hold as they are now: only these let a copy elsewhere go. (A label that
        raised the retention leaves a copy unsafe until its lock has been extended.)"""
        rows = self.conn.execute(
            select(replicas.c.target, replicas.c.location)
            .join(items, items.c.sha256 == replicas.c.item)
            .where(
                replicas.c.item == sha256,
                replicas.c.state == _VERIFIED,
                replicas.c.proven_at.is_not(None),
                replicas.c.rewrite.is_(False),
                replicas.c.hold == items.c.hold,
                or_(
                    items.c.retain_until.is_(None), replicas.c.retain_until >= items.c.retain_until
                ),
            )
        )
        return {
            row.target for row in rows if row.location and locations.get(row.target) == row.location
        }

    def items_with_unproven_copies(self, *, station: str, targets: Sequence[str]) -> set[str]:
        """This station's items with a copy on one of ``targets`` that was sent but never read back
        (or must be read back again)."""
        return {
            row.item
            for row in self.conn.execute(
                select(replicas.c.item)
                .distinct()
                .join(items, items.c.sha256 == replicas.c.item)
                .where(
                    items.c.station == station,
                    replicas.c.target.in_(list(targets)),
                    replicas.c.state == _VERIFIED,
                    or_(replicas.c.proven_at.is_(None), replicas.c.rewrite.is_(True)),
                )
            )
        }

    def last_rehashes(self, *, station: str) -> dict[str, datetime | None]:
        """This station's items kept in its store, each with its last intact re-hash (None:
        never re-hashed since it was stored)."""
        return {
            row.sha256: parse_time(row.audited_at) if row.audited_at else None
            for row in self.conn.execute(
                select(items.c.sha256, items.c.audited_at).where(
                    items.c.station == station, items.c.local_present.is_(True)
                )
            )
        }

    def offsite_copies(self, *, station: str, targets: Sequence[str]) -> list[Replica]:
        """The copies of this station's items counted as sent to one of ``targets``."""
        return [
            _replica(row)
            for row in self.conn.execute(
                select(replicas)
                .join(items, items.c.sha256 == replicas.c.item)
                .where(
                    items.c.station == station,
                    replicas.c.target.in_(list(targets)),
                    replicas.c.state == _VERIFIED,
                )
                .order_by(replicas.c.item, replicas.c.target)
            ).mappings()
        ]

    # -- jobs ------------------------------------------------------------------------------------

    def job_started(self, *, job: str, station: str, at: datetime) -> JobRun:
        """Record that a run of ``job`` started; returns the run as recorded."""
        result = self.conn.execute(
            insert(job_runs).values(job=job, station=station, started_at=format_time(at))
        )
        key = result.inserted_primary_key
        assert key is not None
        return JobRun(id=int(key[0]), job=job, station=station, started_at=at)

    def job_finished(self, run: JobRun, *, at: datetime, ok: bool, summary: str,
                     detail: Mapping[str, Any] | None = None) -> JobRun:
        """Record how ``run`` ended (``detail``: what it said besides, kept as JSON); returns
        it as recorded."""
        self.conn.execute(
            update(job_runs)
            .where(job_runs.c.id == run.id)
            .values(finished_at=format_time(at), ok=ok, summary=summary,
                    detail=_json(dict(detail or {})))
        )
        return run.finished(at=at, ok=ok, summary=summary, detail=detail)

    def last_jobs(self, *, station: str) -> list[JobRun]:
        """The last run of each of ``station``'s jobs, by job name."""
        latest = (
            select(func.max(job_runs.c.id))
            .where(job_runs.c.station == station)
            .group_by(job_runs.c.job)
            .scalar_subquery()
        )
        return [
            JobRun(
                id=int(row["id"]),
                job=row["job"],
                station=row["station"],
                started_at=parse_time(row["started_at"]),
                finished_at=_time_or_none(row["finished_at"]),
                ok=None if row["ok"] is None else bool(row["ok"]),
                summary=row["summary"],
                detail=_json_object(row["detail"]),
            )
            for row in self.conn.execute(
                select(job_runs).where(job_runs.c.id.in_(latest)).order_by(job_runs.c.job)
            ).mappings()
        ]

    # -- replication -------------------------------------------------------------------------------

    def replication_queue(
        self, targets: Sequence[str], *, limit: int | None = None, station: str | None = None
    ) -> list[Item]:
        """Local items that some of ``targets`` do not yet hold verified, oldest deadline first.

        ``station``: only that station's items (a catalog shared by many stations holds items
        that are in other stations' stores, not in this one's)."""
        if not targets:
            return []
        verified_everywhere = (
            select(replicas.c.item)
            .where(replicas.c.state == _VERIFIED, replicas.c.target.in_(list(targets)))
            .group_by(replicas.c.item)
            .having(func.count(func.distinct(replicas.c.target)) == len(set(targets)))
        )
        query = (
            select(items)
            .where(items.c.local_present.is_(True), items.c.sha256.not_in(verified_everywhere))
            .order_by(items.c.replication_deadline, items.c.sha256)
        )
        if station is not None:
            query = query.where(items.c.station == station)
        if limit is not None:
            query = query.limit(limit)
        return [_item(row) for row in self.conn.execute(query).mappings()]

    def replica(self, sha256: str, target: str) -> Replica | None:
        row = (
            self.conn.execute(
                select(replicas).where(replicas.c.item == sha256, replicas.c.target == target)
            )
            .mappings()
            .first()
        )
        return _replica(row) if row is not None else None

    def replicas_of(self, sha256: str) -> dict[str, Replica]:
        """The item's copies, by target."""
        return {
            row["target"]: _replica(row)
            for row in self.conn.execute(
                select(replicas).where(replicas.c.item == sha256)
            ).mappings()
        }

    def copy_begun_at(self, sha256: str, location: str) -> bool:
        # A copy begun but never verified has no place recorded (``location`` is written when
        # one is verified or moved): it may be at this one.
        begun = select(replicas.c.item).where(
            replicas.c.item == sha256,
            replicas.c.location.in_((location, "")),
            replicas.c.attempts > 0,
        ).limit(1)
        return self.conn.execute(begun).first() is not None

    def _upsert_replica(self, sha256: str, target: str, values: dict[str, Any]) -> None:
        done = self.conn.execute(
            update(replicas)
            .where(replicas.c.item == sha256, replicas.c.target == target)
            .values(**values)
        )
        if done.rowcount == 0:
            self.conn.execute(insert(replicas).values(item=sha256, target=target, **values))

    def replica_uploading(self, sha256: str, target: str, *, attempts: int, at: datetime) -> None:
        """A copy is being sent, for the ``attempts``-th time."""
        self._upsert_replica(
            sha256,
            target,
            {
                "state": str(ReplicaState.UPLOADING),
                "updated_at": format_time(at),
                "attempts": attempts,
            },
        )

    def replica_verified(
        self,
        sha256: str,
        target: str,
        *,
        key: str,
        size: int,
        remote_sha256: str | None,
        retain_until: datetime | None,
        hold: bool,
        location: str,
        read_back: bool,
        at: datetime,
        ledger_seq: int,
    ) -> None:
        """The target's answer matched: the copy counts as sent, and as proven (so that copies
        elsewhere may go) only if it was read back."""
        proof: dict[str, Any] = (
            {"proven_at": format_time(at), "rewrite": False} if read_back else {"proven_at": None}
        )
        self._upsert_replica(
            sha256,
            target,
            {
                "state": _VERIFIED,
                "key": key,
                "size": size,
                "remote_sha256": remote_sha256,
                "last_error": "",
                "updated_at": format_time(at),
                "verified_at": format_time(at),
                "ledger_seq": ledger_seq,
                "retain_until": _stamp(retain_until),
                "hold": hold,
                "location": location,
                **proof,
            },
        )

    def replica_failed(self, sha256: str, target: str, *, error: str, at: datetime) -> None:
        """The copy could not be sent (it is tried again at the next run)."""
        self._upsert_replica(
            sha256,
            target,
            {"state": str(ReplicaState.FAILED), "last_error": error, "updated_at": format_time(at)},
        )

    def replica_locked(
        self, sha256: str, target: str, *, retain_until: datetime | None, hold: bool, at: datetime
    ) -> None:
        """The copy's lock was raised (or its hold changed) on the target."""
        self._upsert_replica(
            sha256,
            target,
            {
                "retain_until": _stamp(retain_until),
                "hold": hold,
                "last_error": "",
                "updated_at": format_time(at),
            },
        )

    def replica_lock_failed(self, sha256: str, target: str, *, error: str, at: datetime) -> None:
        """The copy's lock could not be raised: kept as its last error, tried again later."""
        self._upsert_replica(sha256, target, {"last_error": error, "updated_at": format_time(at)})

    def item_rehashed(self, sha256: str, *, at: datetime) -> None:
        """The local copy was re-hashed from disk and found intact (its ``audited`` entry,
        dated ``at``, says so)."""
        self._update(items.c.sha256, sha256, {"audited_at": format_time(at)})

    def replica_proven(self, sha256: str, target: str, *, at: datetime) -> None:
        """The copy was read back and hashed to the item."""
        self._upsert_replica(
            sha256, target, {"proven_at": format_time(at), "updated_at": format_time(at)}
        )

    def interrupt_uploads(self, at: datetime) -> int:
        """At start: uploads a crash left 'uploading' are queued again (they restart cleanly)."""
        return self.conn.execute(
            update(replicas)
            .where(replicas.c.state == str(ReplicaState.UPLOADING))
            .values(
                state=str(ReplicaState.QUEUED), last_error="interrupted", updated_at=format_time(at)
            )
        ).rowcount

    def relocate_replicas(self, target: str, location: str, at: datetime, *, station: str) -> int:
        """``station``'s target now points at ``location``: copies of its items recorded
        elsewhere (or before locations were recorded) no longer count; they are copied, or found,
        there at the next run. (Stations sharing a catalog may give one name other places.)"""
        mine = select(items.c.sha256).where(items.c.station == station)
        moved = and_(
            replicas.c.target == target, replicas.c.location != location, replicas.c.item.in_(mine)
        )
        # what was found bad at another place says nothing of the objects at this one
        self.conn.execute(
            update(replicas)
            .where(moved, replicas.c.location != "")
            .values(rewrite=False, bad_versions="")
        )
        return self.conn.execute(
            update(replicas)
            .where(moved)
            .values(
                state=case(
                    (replicas.c.state == _VERIFIED, str(ReplicaState.QUEUED)),
                    else_=replicas.c.state,
                ),
                location=location,
                proven_at=None,
                updated_at=format_time(at),
                last_error=f"not yet checked at {location}"[:2000],
            )
        ).rowcount

    def replica_found_bad(
        self, sha256: str, target: str, *, version_id: str | None, error: str, at: datetime
    ) -> None:
        """The copy does not hash to the item: it needs a new object, read back before it counts
        again; the bad version is remembered (its lock keeps it for investigation)."""
        row = self.replica(sha256, target)
        bad = list(row.bad_versions if row else ())
        if version_id and version_id not in bad:
            bad.append(version_id)
        self._upsert_replica(
            sha256,
            target,
            {
                "state": str(ReplicaState.MISMATCH),
                "rewrite": True,
                "proven_at": None,
                "bad_versions": " ".join(bad),
                "last_error": error[:2000],
                "updated_at": format_time(at),
            },
        )

    def target_identity(self, target: str, location: str) -> str | None:
        return self.conn.execute(
            select(target_identities.c.identity).where(
                target_identities.c.target == target, target_identities.c.location == location
            )
        ).scalar()

    def record_target_identity(
        self, target: str, location: str, identity: str, at: datetime
    ) -> None:
        self.conn.execute(
            insert(target_identities).values(
                target=target, location=location, identity=identity, recorded_at=format_time(at)
            )
        )

    # -- WORM standing ----------------------------------------------------------------------

    def worm_checked(self, target: str, *, location: str, passed: bool, at: datetime,
                     ledger_seq: int) -> None:
        """A WORM check of ``target`` ran, as its ``worm_checked`` entry ``ledger_seq`` says:
        its standing is now that check's."""
        values = {"location": location, "passed": passed, "checked_at": format_time(at),
                  "ledger_seq": ledger_seq}
        done = self.conn.execute(
            update(target_worm).where(target_worm.c.target == target).values(**values))
        if not done.rowcount:
            self.conn.execute(insert(target_worm).values(target=target, **values))

    def worm_standings(self) -> list[WormStanding]:
        """Every target's standing from its last WORM check, by name."""
        return [
            WormStanding(target=row.target, location=row.location, passed=bool(row.passed),
                         checked_at=parse_time(row.checked_at), ledger_seq=row.ledger_seq)
            for row in self.conn.execute(select(target_worm).order_by(target_worm.c.target))
        ]

    def worm_failed_targets(self) -> set[str]:
        """The targets whose last WORM check failed: no copy there counts as safe."""
        return set(self.conn.execute(
            select(target_worm.c.target).where(target_worm.c.passed.is_(False))).scalars())

    def worm_sample(self, target: str, location: str, *, limit: int) -> list[Replica]:
        """Up to ``limit`` copies on ``target``, made at ``location`` and verified, picked at
        random, whose locks a WORM check reads back."""
        return [_replica(row) for row in self.conn.execute(
            select(replicas)
            .where(replicas.c.target == target, replicas.c.location == location,
                   replicas.c.state == _VERIFIED)
            .order_by(func.random()).limit(limit)).mappings()]

    def locks_behind(self, *, station: str | None = None) -> list[LockBehind]:
        """Replicas with an object off-site (verified once, whatever happened since) whose lock
        is shorter than the item's retention, or whose hold differs from the item's
        (``station``: of that station's items only)."""
        query = (
            select(
                replicas,
                items.c.retain_until.label("item_retain_until"),
                items.c.hold.label("item_hold"),
                items.c.retention_class,
                items.c.recorded_start,
            )
            .join(items, items.c.sha256 == replicas.c.item)
            .where(replicas.c.verified_at.is_not(None))
            .where(
                or_(
                    replicas.c.hold != items.c.hold,
                    and_(items.c.retain_until.is_(None), replicas.c.retain_until.is_not(None)),
                    and_(
                        items.c.retain_until.is_not(None),
                        replicas.c.retain_until.is_not(None),
                        items.c.retain_until > replicas.c.retain_until,
                    ),
                )
            )
        )
        if station is not None:
            query = query.where(items.c.station == station)
        return [
            LockBehind(
                item=row["item"],
                target=row["target"],
                retain_until=_time_or_none(row["retain_until"]),
                hold=bool(row["hold"]),
                item_retain_until=_time_or_none(row["item_retain_until"]),
                item_hold=bool(row["item_hold"]),
                retention_class=RetentionClass(row["retention_class"] or RetentionClass.ROUTINE),
                recorded_start=parse_time(row["recorded_start"]),
            )
            for row in self.conn.execute(query).mappings()
        ]

    def replica_stats(self, targets: Sequence[str], *, station: str) -> dict[str, ReplicaStats]:
        """Per target: the replicas of this station's items by state (a catalog shared by many
        stations holds theirs too, replicated by them), how many of the verified ones are proven
        (read back), the oldest waiting, the last error.

        The counts are the station's tallies (migrations 0014 and 0018); the oldest waiting is
        walked to on the items' waiting index, the last error read on the copies' error index:
        no read grows with the catalog, only with the items waiting."""
        kept = self._tally_map(station)

        def n(name: str, label: str = "") -> int:
            return kept[(name, label)][0] if (name, label) in kept else 0

        local = n("local")
        out: dict[str, ReplicaStats] = {}
        for name in targets:
            verified = n("replica_verified", name)
            # local items with no verified copy there: an evicted item's copy waits for nothing
            waiting = local - n("verified_local", name)
            uploading = n("replica_uploading", name)
            failed = n("replica_failed", name) + n("replica_mismatch", name)
            last_error = self.conn.execute(
                select(replicas.c.last_error, replicas.c.updated_at)
                .join(items, items.c.sha256 == replicas.c.item)
                .where(replicas.c.target == name, replicas.c.last_error != "",
                       items.c.station == station)
                .order_by(replicas.c.updated_at.desc())
                .limit(1)
            ).first()
            out[name] = ReplicaStats(
                verified=verified,
                proven=n("proven", name),
                in_flight=uploading,
                failed=failed,
                queued=max(0, waiting - uploading - failed),
                oldest_waiting=self._oldest_waiting(station=station, target=name,
                                                    waiting=waiting),
                last_error=(
                    ReplicaError(error=last_error.last_error, at=parse_time(last_error.updated_at))
                    if last_error
                    else None
                ),
            )
        return out

    def _oldest_waiting(self, *, station: str, target: str, waiting: int) -> WaitingItem | None:
        """The local item of ``station`` with the earliest replication deadline (then the
        smallest digest) that has no verified copy on ``target``, given that ``waiting`` such
        items exist (the tallies say so).

        Two walks on the waiting index take turns, in chunks that grow: from the earliest
        deadline, the first item without a copy is the answer; from the latest, the
        ``waiting``-th is. Old items are mostly copied and new ones waiting (the walk from
        the latest ends after about ``waiting`` items: its chunks are sized to what is still
        to be found, and the other walk's are a quarter of them), or an old one is stuck
        and the rest copied (the walk from the earliest ends at once); either way together
        they read a few times what the shorter walk would. Each chunk is counted and
        searched in SQL: only its edge and the answer come back. Where the walks meet every
        item was seen, and the earliest without a copy is the answer, whatever the count
        said."""
        if waiting < 1:
            return None
        walk = _Walk(self.conn, station=station, target=target)
        low: tuple[str, str] | None = None  # the walk from the earliest read up to this key
        high: tuple[str, str] | None = None  # the walk from the latest, down to this one
        seen = 0
        chunk = WAITING_CHUNK
        # (one bound a side: the edge of a chunk lies within the other walk's bound, and
        # SQLite seeks on one bound a side and filters on the other)
        while True:
            edge = walk.edge(gt=low, lt=high, ascending=True,
                             nth=max(WAITING_CHUNK, chunk // 4))
            if edge is None:  # the walks meet: all else was seen, none waiting before high
                return walk.waiting(gt=low, ascending=True)
            found = walk.waiting(gt=low, le=edge, ascending=True)
            if found is not None:
                return found
            low = edge
            chunk = min(max(chunk, waiting - seen), WAITING_CHUNK_MAX)
            edge = walk.edge(gt=low, lt=high, ascending=False, nth=chunk)
            if edge is None:
                return walk.waiting(gt=low, ascending=True)  # the walks met
            here = walk.count(ge=edge, lt=high)
            if here == chunk == waiting - seen:  # all wait: the chunk's edge is the last
                return WaitingItem(sha256=edge[1], deadline=parse_time(edge[0]))
            if seen + here >= waiting:
                return walk.waiting(ge=edge, lt=high, ascending=False, skip=waiting - seen - 1)
            seen += here
            high = edge
            chunk = min(2 * chunk, WAITING_CHUNK_MAX)

    def add_checkpoint(
        self, *, target: str, name: str, seq: int, head_hash: str, at: datetime
    ) -> None:
        """A checkpoint was sent to ``target``."""
        self.conn.execute(
            insert(checkpoints),
            {
                "target": target,
                "name": name,
                "seq": seq,
                "head_hash": head_hash,
                "at": format_time(at),
            },
        )

    def last_checkpoint(self, target: str, *, station: str) -> Checkpoint | None:
        """The last checkpoint ``station`` sent to ``target`` (a shared catalog holds every
        station's: they are named after their station)."""
        row = (
            self.conn.execute(
                select(checkpoints)
                .where(
                    checkpoints.c.target == target,
                    checkpoints.c.name.startswith(f"{station}-", autoescape=True),
                )
                .order_by(checkpoints.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return _checkpoint(row) if row is not None else None

    def newest_checkpoint_seen(self, *, station: str, target: str) -> Checkpoint | None:
        """The newest checkpoint of ``station`` known to be on ``target``."""
        row = (
            self.conn.execute(
                select(checkpoints_seen).where(
                    checkpoints_seen.c.station == station, checkpoints_seen.c.target == target
                )
            )
            .mappings()
            .first()
        )
        return _checkpoint(row) if row is not None else None

    def remember_checkpoint(
        self, *, station: str, target: str, name: str, seq: int, head_hash: str, at: datetime
    ) -> None:
        """Keep the newest checkpoint known to be on ``target``; an older one changes nothing."""
        known = self.newest_checkpoint_seen(station=station, target=target)
        values = {"name": name, "seq": seq, "head_hash": head_hash, "at": format_time(at)}
        if known is None:
            self.conn.execute(
                insert(checkpoints_seen), {"station": station, "target": target, **values}
            )
        elif seq > known.seq:
            self.conn.execute(
                update(checkpoints_seen)
                .where(checkpoints_seen.c.station == station, checkpoints_seen.c.target == target)
                .values(**values)
            )

    # -- spot checks ---------------------------------------------------------------------

    def spot_candidates(self, *, station: str) -> list[SpotCandidate]:
        """This station's items held in its store, each with its officer (the current
        label's, else the recorder's) and when it was last spot-checked."""
        last = {
            row.item: row.at
            for row in self.conn.execute(
                select(spot_checks.c.item, func.max(spot_checks.c.checked_at).label("at"))
                .group_by(spot_checks.c.item)
            )
        }
        out = []
        for rows in self.iter_item_batches():
            for listed in rows:
                item = listed.item
                if item.station != station or not item.local_present:
                    continue
                out.append(SpotCandidate(
                    sha256=item.sha256, officer=listed.officer, stored_at=item.stored_at,
                    last_checked=_time_or_none(last.get(item.sha256))))
        return out

    def insert_spot_check(
        self,
        *,
        item: str,
        officer: str,
        checked_at: datetime,
        period_start: datetime,
        fixity: str,
        decode: str,
        result: SpotResult,
        ledger_seq: int,
    ) -> int:
        done = self.conn.execute(
            insert(spot_checks),
            {
                "item": item,
                "officer": officer,
                "checked_at": format_time(checked_at),
                "period_start": format_time(period_start),
                "fixity": fixity,
                "decode": decode,
                "result": str(result),
                "ledger_seq": ledger_seq,
            },
        )
        key = done.inserted_primary_key
        assert key is not None
        return int(key[0])

    def latest_spot_check(self, sha256: str) -> SpotCheck | None:
        row = (
            self.conn.execute(
                select(spot_checks)
                .where(spot_checks.c.item == sha256)
                .order_by(spot_checks.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return _spot_check(row) if row is not None else None

    def insert_spot_review(
        self,
        *,
        check_id: int,
        item: str,
        by: str,
        result: ReviewResult,
        note: str,
        at: datetime,
        ledger_seq: int,
    ) -> int:
        done = self.conn.execute(
            insert(spot_reviews),
            {
                "check_id": check_id,
                "item": item,
                "by": by,
                "result": str(result),
                "note": note,
                "at": format_time(at),
                "ledger_seq": ledger_seq,
            },
        )
        key = done.inserted_primary_key
        assert key is not None
        return int(key[0])

    def list_spot_checks(self, *, officer: str | None = None) -> list[SpotCheck]:
        """Spot checks in the order made, each with its latest review."""
        query = select(spot_checks).order_by(spot_checks.c.checked_at, spot_checks.c.id)
        reviews = select(spot_reviews).order_by(spot_reviews.c.id)
        if officer is not None:
            query = query.where(spot_checks.c.officer == officer)
            reviews = reviews.where(spot_reviews.c.check_id.in_(
                select(spot_checks.c.id).where(spot_checks.c.officer == officer)))
        latest = {}
        for row in self.conn.execute(reviews).mappings():
            latest[int(row["check_id"])] = _spot_review(row)  # by id: the last one wins
        return [_spot_check(row, latest.get(int(row["id"])))
                for row in self.conn.execute(query).mappings()]

    # -- cases and reports ---------------------------------------------------------------

    def case(self, case: str) -> Case | None:
        """The closed case ``case`` (None: it was never closed)."""
        row = self.conn.execute(select(cases).where(cases.c.case_no == case)).mappings().first()
        return _case(row) if row is not None else None

    def closed_cases(self, *, archived: bool | None = None) -> list[Case]:
        """Closed cases, the earliest closed first (``archived``: only those with, or
        without, their archive)."""
        query = select(cases).order_by(cases.c.closed_at, cases.c.case_no)
        if archived is not None:
            query = query.where(cases.c.archived_at.is_not(None) if archived
                                else cases.c.archived_at.is_(None))
        return [_case(row) for row in self.conn.execute(query).mappings()]

    def close_case(self, case: str, *, closed_at: datetime, closed_by: str,
                   ledger_seq: int) -> None:
        """Enforcement in ``case`` ended at ``closed_at``, as its ``case_closed`` entry
        ``ledger_seq`` says."""
        self.conn.execute(insert(cases).values(
            case_no=case, closed_at=format_time(closed_at), closed_by=closed_by,
            ledger_seq=ledger_seq))

    def case_archived(self, case: str, *, at: datetime, location: str, package: str,
                      ledger_seq: int) -> None:
        """The closed case's items were archived at ``at`` as ``package`` at ``location``,
        as its ``case_archived`` entry ``ledger_seq`` says."""
        self.conn.execute(update(cases).where(cases.c.case_no == case).values(
            archived_at=format_time(at), archive_location=location, archive_package=package,
            archive_seq=ledger_seq))

    def reopen_case(self, case: str) -> None:
        """The case's close was undone (its ``case_reopened`` entry says so): it is open."""
        self.conn.execute(cases.delete().where(cases.c.case_no == case))

    def report_rows(self, *, since: datetime, until: datetime,
                    by: str | None) -> list[ReportRow]:
        """The items recorded from ``since`` to ``until`` (excluded), counted in the
        database per case (their current label's), officer (the label's, else the
        recorder's) or recorder, or all together (``by`` None, key ""): one pass of GROUP BY
        per measure, whatever the number of items."""
        current = labels.alias("current")
        earlier = labels.alias("earlier")
        latest = (select(func.max(earlier.c.id)).where(earlier.c.item == items.c.sha256)
                  .scalar_subquery())
        keys: dict[str | None, Any] = {
            None: literal(""),
            "case": func.coalesce(current.c.case_no, ""),
            "officer": func.coalesce(current.c.officer, items.c.officer),
            "recorder": items.c.recorder,
        }
        officer = func.coalesce(current.c.officer, items.c.officer)
        period = (
            select(items.c.sha256.label("sha"), keys[by].label("key"), items.c.duration,
                   current.c.party, officer.label("officer"))
            .select_from(items.outerjoin(current, current.c.id == latest))
            .where(items.c.recorded_start >= format_time(since),
                   items.c.recorded_start < format_time(until))
            .subquery("period")
        )
        key = period.c.key
        out: dict[str, dict[str, Any]] = {}
        for row in self.conn.execute(
                select(key, func.count().label("n"),
                       func.coalesce(func.sum(period.c.duration), 0.0).label("seconds"))
                .group_by(key)):
            out[str(row.key)] = {"items": int(row.n), "seconds": float(row.seconds),
                                 "flagged": 0, "flags": {}, "exports": 0,
                                 "spot": {"ok": 0, "problem": 0, "pending": 0}}
        for row in self.conn.execute(
                select(key, flags.c.flag, func.count(func.distinct(flags.c.item)).label("n"))
                .join(flags, flags.c.item == period.c.sha).group_by(key, flags.c.flag)):
            out[str(row.key)]["flags"][str(row.flag)] = int(row.n)
        for row in self.conn.execute(
                select(key, func.count(func.distinct(flags.c.item)).label("n"))
                .join(flags, flags.c.item == period.c.sha).group_by(key)):
            out[str(row.key)]["flagged"] = int(row.n)
        for row in self.conn.execute(
                select(key, func.count().label("n"))
                .join(ledger, ledger.c.item == period.c.sha)
                .where(ledger.c.kind == "exported").group_by(key)):
            out[str(row.key)]["exports"] = int(row.n)
        review = spot_reviews.alias("review")
        later = spot_reviews.alias("later")
        last_review = (select(func.max(later.c.id)).where(later.c.check_id == spot_checks.c.id)
                       .scalar_subquery())
        status = func.coalesce(review.c.result, "pending")
        for row in self.conn.execute(
                select(key, status.label("status"), func.count().label("n"))
                .select_from(period.join(spot_checks, spot_checks.c.item == period.c.sha)
                             .outerjoin(review, review.c.id == last_review))
                .group_by(key, status)):
            out[str(row.key)]["spot"][str(row.status)] = int(row.n)
        named: dict[str, tuple[set[str], set[str]]] = {}
        if by == "case":  # the case list names each case's parties and officers
            for row in self.conn.execute(
                    select(key, period.c.party, period.c.officer).distinct()):
                parties, officers = named.setdefault(str(row.key), (set(), set()))
                if row.party:
                    parties.add(str(row.party))
                if row.officer:
                    officers.add(str(row.officer))
        return [ReportRow(key=name, items=v["items"], seconds=v["seconds"],
                          flagged=v["flagged"], flags=v["flags"], exports=v["exports"],
                          spot_ok=v["spot"]["ok"], spot_problem=v["spot"]["problem"],
                          spot_pending=v["spot"]["pending"],
                          parties=tuple(sorted(named.get(name, (set(), set()))[0])),
                          officers=tuple(sorted(named.get(name, (set(), set()))[1])))
                for name, v in sorted(out.items())]

    # -- alerts ------------------------------------------------------------------------------------

    def alerts(self, *, station: str, firing_only: bool = False) -> list[Alert]:
        """``station``'s alerts, firing or resolved (``firing_only``: those firing), the oldest
        first."""
        query = select(alerts).where(alerts.c.station == station)
        if firing_only:
            query = query.where(alerts.c.state == str(AlertState.FIRING))
        return [
            Alert(key=row["key"], condition=Condition(row["condition"]),
                  severity=Severity(row["severity"]), state=AlertState(row["state"]),
                  summary=row["summary"], details=json.loads(row["details"]),
                  since=parse_time(row["since"]), last_sent=_time_or_none(row["last_sent"]),
                  resolved_at=_time_or_none(row["resolved_at"]),
                  owed=frozenset(json.loads(row["owed"])))
            for row in self.conn.execute(
                query.order_by(alerts.c.since, alerts.c.key)).mappings()
        ]

    def keep_alert(self, alert: Alert, *, station: str) -> None:
        """The alert as it stands now (after its notice was sent, or not)."""
        values = {
            "condition": str(alert.condition), "severity": str(alert.severity),
            "state": str(alert.state), "summary": alert.summary,
            "details": json.dumps(dict(alert.details), sort_keys=True, default=str),
            "since": format_time(alert.since), "last_sent": _stamp(alert.last_sent),
            "resolved_at": _stamp(alert.resolved_at), "owed": json.dumps(sorted(alert.owed)),
        }
        done = self.conn.execute(
            update(alerts).where(alerts.c.station == station, alerts.c.key == alert.key)
            .values(**values))
        if not done.rowcount:
            self.conn.execute(insert(alerts).values(station=station, key=alert.key, **values))

    def last_session_by_recorder(self, *, station: str) -> list[SessionSummary]:
        """The last dock session of each serial at ``station`` (finished or not), by serial."""
        latest = (
            select(func.max(dock_sessions.c.id))
            .where(dock_sessions.c.station == station)
            .group_by(dock_sessions.c.serial)
            .scalar_subquery()
        )
        rows = self.conn.execute(
            select(dock_sessions).where(dock_sessions.c.id.in_(latest))
            .order_by(dock_sessions.c.serial)).mappings()
        return [
            SessionSummary(
                id=int(row["id"]), serial=row["serial"], source=DockSource(row["source"]),
                state=SessionState(row["state"]), docked_at=parse_time(row["docked_at"]),
                finished_at=_time_or_none(row["finished_at"]), files_new=int(row["files_new"]),
                files_known=int(row["files_known"]), files_failed=int(row["files_failed"]),
                files_skipped=int(row["files_skipped"]), error=row["error"],
                skipped=json.loads(row["skipped"] or "{}"),
                pid=None if row["pid"] is None else int(row["pid"]), host=row["host"])
            for row in rows
        ]

    def session_flags(self, session_ids: Sequence[int],
                      wanted: Sequence[Flag]) -> dict[int, dict[Flag, list[str]]]:
        """Per finished session, the items it took (stored or known) that carried each of
        ``wanted`` when it ended (a flag an audit set later is the store's news, not the
        recorder's): their recorder file names (display form), by flag."""
        if not session_ids:
            return {}
        rows = self.conn.execute(
            select(acquisitions.c.session_id, acquisitions.c.path, flags.c.flag)
            .join(flags, flags.c.item == acquisitions.c.item)
            .join(dock_sessions, dock_sessions.c.id == acquisitions.c.session_id)
            .where(acquisitions.c.session_id.in_(list(session_ids)),
                   acquisitions.c.state.in_([str(s) for s in TAKEN]),
                   flags.c.flag.in_([str(f) for f in wanted]),
                   flags.c.set_at <= dock_sessions.c.finished_at)
            .order_by(acquisitions.c.id))
        out: dict[int, dict[Flag, list[str]]] = {}
        for row in rows:
            out.setdefault(int(row.session_id), {}).setdefault(Flag(row.flag), []).append(
                row.path)
        return out

    def unjustified_flags(self, wanted: Sequence[Flag], *,
                          station: str) -> dict[Flag, list[str]]:
        """``station``'s items carrying each of ``wanted`` that nobody has justified for it:
        their SHA-256, oldest flag first."""
        justified = select(justifications.c.id).where(
            justifications.c.item == flags.c.item, justifications.c.flag == flags.c.flag)
        out: dict[Flag, list[str]] = {}
        for row in self.conn.execute(
            select(flags.c.item, flags.c.flag)
            .join(items, items.c.sha256 == flags.c.item)
            .where(flags.c.flag.in_([str(f) for f in wanted]), items.c.station == station,
                   ~justified.exists())
            .order_by(flags.c.set_at, flags.c.item)
        ):
            out.setdefault(Flag(row.flag), []).append(row.item)
        return out

    # -- tallies, for metrics (kept by the triggers of migration 0014) ----------------------

    def tallies(self, *, station: str) -> list[Tally]:
        """Every tally of ``station``: a few rows a flag, a target and a job, however many
        items the catalog holds."""
        return [
            Tally(name=row.name, label=row.label, count=int(row.n), bytes=int(row.bytes),
                  at=_time_or_none(row.at))
            for row in self.conn.execute(
                select(tallies).where(tallies.c.station == station)
                .order_by(tallies.c.name, tallies.c.label))
        ]

    def running_sessions(self, *, station: str) -> list[SessionSummary]:
        """``station``'s dock sessions still marked running (by the index on station and
        state), oldest first."""
        return [_summary(row) for row in self.conn.execute(
            select(dock_sessions)
            .where(dock_sessions.c.station == station,
                   dock_sessions.c.state == str(SessionState.RUNNING))
            .order_by(dock_sessions.c.id)).mappings()]

    def waiting_walk_since(self, *, station: str, target: str, waiting: int) -> datetime | None:
        """When the ``waiting``-th newest of ``station``'s local items not verified on
        ``target`` was stored (None: fewer wait). Given how many wait, that is the oldest
        one's; it walks the items newest first (by their index on ``stored_at``) and stops
        there, so it reads about as many items as wait, not the catalog."""
        if waiting < 1:
            return None
        verified = select(replicas.c.item).where(
            replicas.c.item == items.c.sha256, replicas.c.target == target,
            replicas.c.state == _VERIFIED)
        row = self.conn.execute(
            select(items.c.stored_at)
            .where(items.c.station == station, items.c.local_present.is_(True),
                   ~verified.exists())
            .order_by(items.c.stored_at.desc())
            .offset(waiting - 1).limit(1)
        ).first()
        return None if row is None else parse_time(row.stored_at)
    # -- the status page: each read bounded by an index and a LIMIT ------------------------

    def session_tally(self, session_id: int, *, latest: int) -> SessionTally:
        """A dock session's files so far (on the acquisitions' session index), with its
        ``latest`` newest files."""
        taken_states = [str(s) for s in TAKEN]
        of_session = acquisitions.c.session_id == session_id
        tally = self.conn.execute(
            select(
                func.count().filter(acquisitions.c.state.in_(taken_states)),
                func.coalesce(func.sum(acquisitions.c.size).filter(
                    acquisitions.c.state.in_(taken_states)), 0),
                func.count().filter(acquisitions.c.state == str(AcquisitionState.FAILED)),
                func.count().filter(acquisitions.c.state == str(AcquisitionState.COPYING)),
                func.max(acquisitions.c.finished_at).filter(
                    acquisitions.c.state.in_(taken_states)),
            ).where(of_session)
        ).one()
        rows = self.conn.execute(
            select(acquisitions.c.path, acquisitions.c.size, acquisitions.c.state,
                   acquisitions.c.started_at, acquisitions.c.finished_at, acquisitions.c.item)
            .where(of_session)
            .order_by(acquisitions.c.id.desc())
            .limit(latest)
        ).mappings()
        files = tuple(
            DockedFile(path=row["path"], size=int(row["size"]), state=row["state"],
                       started_at=_time(row["started_at"]),
                       finished_at=_time_or_none(row["finished_at"]), item=row["item"])
            for row in rows
        )
        return SessionTally(taken=int(tally[0]), taken_bytes=int(tally[1]),
                            failed=int(tally[2]), copying=int(tally[3]),
                            last_taken_at=_time_or_none(tally[4]), latest=files)

    def stored_since(self, *, station: str, day: datetime, week: datetime) -> StoredSince:
        """The bytes ``station`` stored since ``day`` and since ``week`` (on the index of the
        station's items by ``stored_at`` with their sizes: only the last week's entries are
        read, not the items)."""
        recent = (items.c.station == station) & (items.c.stored_at >= format_time(week))
        row = self.conn.execute(
            select(
                func.coalesce(func.sum(items.c.size).filter(
                    items.c.stored_at >= format_time(day)), 0),
                func.coalesce(func.sum(items.c.size), 0),
            ).where(recent)
        ).one()
        return StoredSince(day=int(row[0]), week=int(row[1]))

    def flagged_refs(self, kinds: Sequence[str], *, station: str,
                     per_kind: int) -> dict[str, list[FlaggedRef]]:
        """The newest ``per_kind`` items of ``station`` with each flag (on the flags'
        (flag, set_at) index)."""
        out: dict[str, list[FlaggedRef]] = {}
        for kind in kinds:
            rows = self.conn.execute(
                select(flags.c.item, flags.c.set_at, items.c.original_name)
                .join(items, items.c.sha256 == flags.c.item)
                .where(flags.c.flag == kind, items.c.station == station)
                .order_by(flags.c.set_at.desc(), flags.c.id.desc())
                .limit(per_kind)
            ).mappings()
            out[kind] = [FlaggedRef(sha256=row["item"], name=row["original_name"],
                                    set_at=_time(row["set_at"])) for row in rows]
        return out

    def recent_events(self, limit: int, *, station: str) -> list[LedgerEvent]:
        """``station``'s last ``limit`` ledger entries, the newest first (backwards on the
        sequence)."""
        rows = self.conn.execute(
            select(ledger.c.seq, ledger.c.at, ledger.c.kind, ledger.c.actor, ledger.c.station,
                   ledger.c.item)
            .where(ledger.c.station == station)
            .order_by(ledger.c.seq.desc())
            .limit(limit)
        ).mappings()
        return [LedgerEvent(seq=int(row["seq"]), at=_parsed_or_none(row["at"]),
                            kind=row["kind"], actor=row["actor"], station=row["station"],
                            item=row["item"]) for row in rows]

    def item_page(self, wanted: ItemFilter, *, after: str | None,
                  limit: int) -> list[ListedItem]:
        """A page of :meth:`search_items`: the ``limit`` items that follow item ``after`` (a
        full SHA-256; None: from the first), sought on the listing index."""
        query = _item_search(wanted)
        if after is not None:
            start = self.conn.execute(
                select(items.c.recorded_start).where(items.c.sha256 == after)).scalar()
            if start is None:
                raise NotFound(f"no item {after} to list after")
            query = query.where(tuple_(items.c.recorded_start, items.c.sha256)
                                > tuple_(start, after))
        return [_listed(row) for row in self.conn.execute(query.limit(limit)).mappings()]

    # -- court packages (export) -----------------------------------------------------------

    def export_entries(self, items: Collection[str], *,
                       upto: int | None = None) -> list[LedgerEntry]:
        """The ``exported`` entries that name any of ``items`` (an export entry names its
        items in its data, not as its one item), in order."""
        wanted = set(items)
        query = select(ledger).where(ledger.c.kind == "exported").order_by(ledger.c.seq)
        if upto is not None:
            query = query.where(ledger.c.seq <= upto)
        if len(wanted) == 1:
            (only,) = wanted
            query = query.where(ledger.c.data.contains(only))
        found = (_entry(row) for row in self.conn.execute(query).mappings())
        return [e for e in found if wanted & set(e.data.get("items") or ())]


class _Walk:
    """A station's local items on the waiting index, by (deadline, digest), within bounds
    (``gt``, ``ge``, ``lt``, ``le``: keys, None for no bound), and which of them have no
    verified copy on the target."""

    def __init__(self, conn: Connection, *, station: str, target: str) -> None:
        self.conn = conn
        # "= true", not "IS true": PostgreSQL seeks on an equality only
        self.mine = (items.c.station == station, items.c.local_present == true())
        self.copied = (
            select(replicas.c.item)
            .where(replicas.c.item == items.c.sha256, replicas.c.target == target,
                   replicas.c.state == _VERIFIED)
            .exists()
        )

    def _within(self, query: Any, **bounds: tuple[str, str] | None) -> Any:
        key = tuple_(items.c.replication_deadline, items.c.sha256)
        compare = {"gt": key.__gt__, "ge": key.__ge__, "lt": key.__lt__, "le": key.__le__}
        query = query.where(*self.mine)
        for name, bound in bounds.items():
            if bound is not None:
                query = query.where(compare[name](tuple_(*bound)))
        return query

    @staticmethod
    def _ordered(query: Any, ascending: bool) -> Any:
        deadline, sha = items.c.replication_deadline, items.c.sha256
        return (query.order_by(deadline, sha) if ascending
                else query.order_by(deadline.desc(), sha.desc()))

    def edge(self, *, ascending: bool, nth: int,
             **bounds: tuple[str, str] | None) -> tuple[str, str] | None:
        """The key of the ``nth`` item within the bounds, walked that way (None: fewer)."""
        row = self.conn.execute(self._ordered(self._within(
            select(items.c.replication_deadline, items.c.sha256), **bounds), ascending)
            .offset(nth - 1).limit(1)).first()
        return None if row is None else (row.replication_deadline, row.sha256)

    def count(self, **bounds: tuple[str, str] | None) -> int:
        """How many items within the bounds wait."""
        return int(self.conn.execute(self._within(
            select(func.count()).select_from(items), **bounds).where(~self.copied)
        ).scalar_one())

    def waiting(self, *, ascending: bool, skip: int = 0,
                **bounds: tuple[str, str] | None) -> WaitingItem | None:
        """The first item within the bounds that waits, walked that way, past ``skip``."""
        row = self.conn.execute(self._ordered(self._within(
            select(items.c.sha256, items.c.replication_deadline), **bounds)
            .where(~self.copied), ascending).offset(skip).limit(1)).first()
        return None if row is None else WaitingItem(
            sha256=row.sha256, deadline=parse_time(row.replication_deadline))


def _parsed_or_none(text: str | None) -> datetime | None:
    """A stored time, or None where it does not parse (a damaged entry: shown, not raised)."""
    try:
        return _time_or_none(text)
    except ValueError:
        return None
