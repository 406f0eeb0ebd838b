"""Custody: every event about evidence becomes a signed ledger entry in the same transaction as
the catalog rows it backs; the JSON-lines mirror follows each commit; verification checks all.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog.db import Catalog, CatalogFault, damage_advice
from .domain.canonical import canonical_bytes, format_time
from .domain.models import EventKind, LedgerEntry, UnreadableEntry, body_of
from .domain.policy import Clock
from .errors import CatalogError, IntegrityError, StoreError, StoreFull
from .integrity.discrepancy import (
    BadSignature,
    CatalogDamaged,
    Discrepancy,
    DiscrepancyKind,
    MissingRow,
    RowDiffers,
    UnbackedRow,
)
from .integrity.ledger import (
    GENESIS_HASH,
    KEY_KINDS,
    ChainCheck,
    KeyChain,
    Mirror,
    compare_mirror_in_step,
    seal,
)
from .integrity.signing import PublicKey, StationKey
from .ports import CatalogTx

if TYPE_CHECKING:
    # Imported where the catalog's rows are checked (ledger verify): a command that only
    # opens the station does without it.
    from .catalog import backing

log = logging.getLogger(__name__)

K = DiscrepancyKind

#: A station clock this far behind the ledger's last entry is an alarm (less is the ordinary
#: spread of clocks on a shared catalog, or of times taken just before a write).
CLOCK_BEHIND_ALARM = timedelta(seconds=5)
#: Further behind than this, the clock is wrong, not a little slow: nothing is written (dated
#: at the ledger's time, a long stretch of entries would all carry one time, and a forward
#: jump would date every later entry, deadline and flag in the future).
CLOCK_BEHIND_REFUSE = timedelta(minutes=10)


@dataclass(kw_only=True)
class LedgerReport:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head_seq": self.head_seq,
            "head_hash": self.head_hash, "problems": [p.as_dict() for p in self.problems],
        }


class Custody:
    """``pin`` is the fingerprint of this station's first key, kept outside the catalog."""

    def __init__(self, *, catalog: Catalog, key: StationKey, station: str, mirror: Path,
                 clock: Clock, pin: str | None = None) -> None:
        self.catalog = catalog
        self.key = key
        self.station = station
        self.mirror = Mirror(mirror)
        self.clock = clock
        self.pin = pin
        self._mirror_lock = threading.RLock()
        self._held = threading.local()
        # What the chain proves about the keys, learnt once and then from the new key
        # entries only: checking the signing key costs one short query per entry.
        self._keys: KeyChain | None = None
        self._keys_seen = 0
        self._keys_lock = threading.Lock()
        self._behind_logged: datetime | None = None

    @property
    def pins(self) -> dict[str, str]:
        return {self.station: self.pin} if self.pin else {}

    # -- writing ---------------------------------------------------------------------------

    def now(self, tx: CatalogTx | None = None) -> datetime:
        """The time to date what happens now: the station's clock, but never earlier than the
        ledger's last entry. A clock set back (by hand, a dead RTC battery, a bad time server)
        therefore never dates an entry before the one it follows, never makes a late dock
        look on time, and never dates a label before the item was stored; it is an alarm in
        the log, and a clock more than ``CLOCK_BEHIND_REFUSE`` behind is refused
        (IntegrityError): nothing is written until it is set right. Inside a write
        transaction (``tx``) the answer holds for what it records."""
        if tx is None:
            with self.catalog.read() as reading:
                return self._now(reading.ledger_last_time())
        return self._now(tx.ledger_last_time())

    def _now(self, last: datetime | None) -> datetime:
        clock = self.clock()
        if last is None or clock >= last:
            return clock
        if clock < last - CLOCK_BEHIND_REFUSE:
            log.error("ALARM: the station clock reads %s, %s before the ledger's last entry "
                      "(%s): nothing is written until the clock is set right",
                      format_time(clock), last - clock, format_time(last),
                      extra={"event": "clock_went_back"})
            raise IntegrityError(
                f"the station clock reads {format_time(clock)}, {last - clock} before the "
                f"ledger's last entry ({format_time(last)}): refusing to date anything "
                "before it. Set the clock right (check the time server, the clock battery); "
                "nothing was written, and a recorder's files stay on it until then")
        if clock < last - CLOCK_BEHIND_ALARM and self._behind_logged != last:
            self._behind_logged = last  # once per entry it lags, not on every call
            log.error("ALARM: the station clock reads %s, earlier than the ledger's last entry "
                      "(%s): entries are dated at the ledger's time until the clock is set "
                      "right", format_time(clock), format_time(last),
                      extra={"event": "clock_went_back"})
        return last

    def _open_lock(self, *, shared: bool) -> int | None:
        path = self.mirror.path.with_suffix(".lock")
        if shared:
            # A reader opens the lock read-only (flock needs no more): an operator of the
            # daemon's group, who may read the home but not write it, still waits for writers.
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                pass  # no writer has run yet: make it, where the reader may
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            if shared and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                return None  # and no writer can make it either
            raise

    @contextmanager
    def _locked(self, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
        """The mirror's lock, shared by every ingestd process of this station. A writer holds
        it from its catalog transaction until the mirror has the entries, so a reader holding
        it sees a catalog and a mirror that agree."""
        with self._mirror_lock:
            if getattr(self._held, "depth", 0):
                self._held.depth += 1
                try:
                    yield
                finally:
                    self._held.depth -= 1
                return
            fd = self._open_lock(shared=mode == fcntl.LOCK_SH)
            if fd is None:
                # A reader on a home it cannot write (a read-only mount, another user's home):
                # no one writes there either, so there is nothing to wait for.
                yield
                return
            try:
                fcntl.flock(fd, mode)
                self._held.depth = 1
                try:
                    yield
                finally:
                    self._held.depth = 0
            finally:
                os.close(fd)

    @contextmanager
    def transaction(self) -> Iterator[CatalogTx]:
        """A catalog write transaction whose ledger entries are mirrored once it commits."""
        with self._locked():
            try:
                with self.catalog.write() as tx:
                    yield tx
            except BaseException:
                with self._keys_lock:
                    self._keys = None  # what it learnt of the keys may have been rolled back
                raise
            self._mirror_after_commit(tx.inserted)

    def _mirror_after_commit(self, committed: list[LedgerEntry]) -> None:
        try:
            self._sync(committed)
        except OSError as exc:
            # Committed: the catalog holds the entries, and the next write (or `ledger
            # verify`'s report) catches the mirror up; the caller must hear it all the same.
            error = StoreFull if exc.errno == errno.ENOSPC else StoreError
            raise error(f"the ledger mirror {self.mirror.path} could not be written "
                        f"({exc.strerror or exc}); the catalog holds the entries, and the "
                        "mirror catches up at the next write once there is room") from None

    def record(
        self,
        tx: CatalogTx,
        *,
        kind: EventKind | str,
        actor: str,
        item: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> LedgerEntry:
        """Append one signed entry; call inside :meth:`transaction` (one writer at a time).
        Its time is ``at`` (default: :meth:`now`), raised to the last entry's if earlier.

        Refuses to sign with a key the ledger does not vouch for this station."""
        seq, head = tx.ledger_head()
        with self._keys_lock:
            keys = self._signing_keys(tx, seq)
            self._check_signing_key(keys, str(kind))
        # Never dated before the entry it follows: a time taken before this writer got the
        # catalog (or a clock set back since) is brought up to the ledger's last one. What a
        # caller writes into rows beside the entry is the entry's own ``at``.
        last = tx.ledger_last_time()
        now = self._now(last)  # refuses a clock far behind the ledger, whatever ``at`` says
        stamp = now if at is None else max(at, last or at)
        entry = seal(
            seq=seq + 1, at=stamp, station=self.station, actor=actor,
            kind=str(kind), item=item, data=dict(data or {}), prev_hash=head or GENESIS_HASH,
            key=self.key,
        )
        tx.insert_entry(entry)
        with self._keys_lock:
            if entry.kind in KEY_KINDS:
                keys.admit(entry, canonical_bytes(body_of(entry)))
            self._keys_seen = entry.seq
        return entry

    def check_signing_key(self) -> None:
        """Refuse (IntegrityError) unless the ledger vouches for the key this station would
        sign with: for what is signed outside the ledger (manifests, checkpoints)."""
        with self.catalog.read() as tx, self._keys_lock:
            seq, _ = tx.ledger_head()
            self._check_signing_key(self._signing_keys(tx, seq), "")

    def _signing_keys(self, tx: CatalogTx, head_seq: int) -> KeyChain:
        if self._keys is None:
            self._keys, self._keys_seen = KeyChain(pins=self.pins), 0
        if head_seq > self._keys_seen:
            for entry in tx.iter_entries(after=self._keys_seen, kinds=KEY_KINDS,
                                        upto=head_seq):
                self._keys.admit(entry, canonical_bytes(body_of(entry)))
            self._keys_seen = head_seq
        return self._keys

    def _check_signing_key(self, keys: KeyChain, kind: str) -> None:
        current = keys.current(self.station)
        if kind == EventKind.GENESIS:
            if current is not None or self.station in keys.started:
                raise IntegrityError(f"the ledger has a genesis entry for station "
                                     f"{self.station} already; refusing to write another")
            if self.pin is not None and self.key.public.fingerprint != self.pin:
                raise IntegrityError(
                    f"station key {self.key.key_id} is not the pinned key "
                    f"({self.pin[:16]}...); refusing to sign with it")
            return
        if current is None or current.key_id != self.key.key_id:
            vouched = current.key_id if current else "none"
            log.error("refusing to sign with station key %s: the ledger vouches for %s",
                      self.key.key_id, vouched, extra={"event": "unvouched_key"})
            raise IntegrityError(
                f"station key {self.key.key_id} is not the key the ledger vouches for station "
                f"{self.station} ({vouched}); refusing to sign with it. Was the station key "
                "replaced? `ingestd ledger verify` shows what the ledger proves")

    def sync_mirror(self) -> int:
        """Append to the mirror every committed entry it does not have yet."""
        with self._locked():
            return self._sync()

    def _sync(self, committed: list[LedgerEntry] | None = None) -> int:
        """Append what the mirror lacks. The entries a transaction just committed are those
        it lacks when it ends just before them (the usual case: they are written as they
        are); else, as after a failed append, they are read from the catalog."""
        self.mirror.truncate_partial_tail()
        last = self.mirror.last_seq()
        if committed and committed[0].seq == last + 1:
            return self.mirror.append(committed)
        with self.catalog.read() as tx:
            new = list(tx.iter_entries(after=last))
        return self.mirror.append(new)

    # -- keys ------------------------------------------------------------------------------

    def trusted_keys(self, tx: CatalogTx) -> KeyChain:
        """The keys the ledger proves, from its genesis and rotation entries (each checked
        against the key before it and the pin), not from the catalog's ``keys`` cache."""
        keys = KeyChain(pins=self.pins)
        for entry in tx.entries_to_check(kinds=KEY_KINDS):
            if isinstance(entry, LedgerEntry):  # one that cannot be read vouches for nothing
                keys.admit(entry, canonical_bytes(body_of(entry)))
        return keys

    def cache_keys(self, tx: CatalogTx, keys: KeyChain) -> None:
        """Bring the catalog's ``keys`` table up to what the chain proves."""
        rows = {row.key_id for row in tx.all_keys()}
        for key in keys.keys.values():
            if key.station is not None and key.key_id not in rows:
                tx.add_key(key_id=key.key_id, station=key.station,
                          public_hex=key.public.hex, at=self.clock())
                if key.retired_at is not None:
                    tx.retire_key(key.key_id, key.retired_at)

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> LedgerReport:
        """Check the chain, the keys, every catalog row and the mirror, all as of one moment:
        entries committed while the check runs are neither missing nor extra."""
        report = LedgerReport()
        damage = self.catalog.damage()
        if damage:
            report.problems.append(CatalogDamaged(
                kind=K.CATALOG_DAMAGED, detail=damage_advice(
                    self.catalog.safe_url, "; ".join(damage[:5]), fault=CatalogFault.DAMAGED)))
        try:
            self._verify_ledger(report)
        except CatalogError as exc:
            if not damage:
                raise
            # Named above already: what cannot be read is not reported again, entry by entry.
            log.warning("ledger verify: %s", exc.message)
        return report

    def _verify_ledger(self, report: LedgerReport) -> None:
        keys = KeyChain(pins=self.pins)
        if self.pin is None:
            report.problems.append(BadSignature(
                kind=K.NOT_PINNED,
                detail="this home pins no key fingerprint: run `ingestd init` to pin the "
                       "ledger's first key"))
        with ExitStack() as stack:
            with self._locked(fcntl.LOCK_SH):
                upto = self.mirror.size()
                tx = stack.enter_context(self.catalog.read(snapshot=True))
                head_seq, _ = tx.ledger_head()  # the first read fixes the snapshot
            # One pass over the entries, in constant memory: the chain is checked, the mirror
            # compared line by line, and what the row checks need gathered per item.
            chain = ChainCheck(keys)
            facts = _Facts()

            def each() -> Iterator[LedgerEntry | UnreadableEntry]:
                for entry in tx.entries_to_check(upto=head_seq, batch=1000):
                    if isinstance(entry, UnreadableEntry):
                        chain.step_unreadable(entry)
                    else:
                        chain.step(entry)
                        facts.add(entry)
                    report.head_seq = entry.seq
                    yield entry

            mirrored = compare_mirror_in_step(
                each(), self.mirror, station=self.station, upto=upto,
                lookup=lambda seq: tx.entry_to_check(seq))
            report.problems.extend(chain.problems)
            report.problems.extend(keys.unmet_pins())
            report.entries = chain.count
            report.head_hash = chain.head
            current = keys.current(self.station)
            if current is None or current.key_id != self.key.key_id:
                report.problems.append(BadSignature(
                    kind=K.UNKNOWN_KEY,
                    detail=f"this station's key {self.key.key_id} is not the key the ledger "
                           f"vouches for station {self.station} "
                           f"({current.key_id if current else 'none'})"))
            report.problems.extend(_key_rows(tx, keys))
            report.problems.extend(_unbacked_rows(tx, facts))
        report.problems.extend(mirrored)


def _key_rows(tx: CatalogTx, keys: KeyChain) -> list[Discrepancy]:
    """The catalog's ``keys`` table is a cache of what the chain proves: check it is one."""
    from .catalog import backing
    problems: list[Discrepancy] = []
    cached: set[str] = set()
    for row in backing.key_rows(tx):
        kid = row.key_id
        cached.add(kid)
        proven = keys.keys.get(kid)
        try:
            pub: PublicKey | None = PublicKey.from_hex(row.public_key)
        except ValueError:
            pub = None
        if pub is None or pub.key_id != kid:
            problems.append(BadSignature(
                kind=K.WRONG_KEY, detail=f"catalog key {kid} does not match its public key"
                + ("" if pub else " (which is not a key at all)")))
        elif proven is None or proven.station is None:
            problems.append(UnbackedRow(
                kind=K.UNBACKED_ROW, table="keys", key=kid,
                detail=f"keys row {kid}: the ledger does not vouch for this key"))
        elif proven.station != row.station or (
                (proven.until is None) != (row.retired_at is None)):
            state = "in use" if proven.until is None else f"retired by entry {proven.until}"
            cached_state = "retired" if row.retired_at else "in use"
            problems.append(RowDiffers(
                kind=K.ROW_DIFFERS, seq=proven.since, table="keys", key=kid,
                field="station and state", found=(row.station, cached_state),
                expected=(proven.station, state),
                detail=f"keys row {kid} ({row.station}, {cached_state}) but the ledger says "
                       f"{proven.station}, {state}"))
    for kid, proven in sorted(keys.keys.items()):
        if proven.station is not None and kid not in cached:
            problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=proven.since, table="keys",
                detail=f"key {kid} is in the ledger but not in the keys table"))
    return problems


class _Facts:
    """What the row checks need from the entries, gathered as they stream by: per item and
    per recorder, never per entry."""

    def __init__(self) -> None:
        self.retention: dict[str, tuple[int, dict[str, Any]]] = {}  # item -> latest setter
        self.evicted: set[str] = set()
        self.serials: dict[str, int] = {}  # serial -> its latest registry entry
        self.replicated: dict[tuple[str, str], int] = {}  # (item, target) -> latest entry
        self.location: dict[tuple[str, str], str] = {}  # where that entry says the copy is
        self.proven: dict[tuple[str, str], str] = {}  # read back there, by that or an audit
        self.rehashed: dict[str, tuple[int, str]] = {}  # item -> its latest intact re-hash
        self.worm: dict[str, int] = {}  # target -> its latest worm_checked entry
        self.cases: dict[str, tuple[str, int]] = {}  # case -> its latest close or reopening

    def add(self, entry: LedgerEntry) -> None:
        retention = entry.data.get("retention")
        if entry.item and isinstance(retention, dict):  # lock extensions set none
            self.retention[entry.item] = (entry.seq, retention)
        if entry.kind == EventKind.EVICTED and entry.item:
            self.evicted.add(entry.item)
        elif entry.kind == EventKind.REGISTRY:
            self.serials[str(entry.data.get("serial"))] = entry.seq
        elif entry.kind == EventKind.REPLICATED and entry.item:
            copy = (entry.item, str(entry.data.get("target")))
            self.replicated[copy] = entry.seq
            self.location[copy] = str(entry.data.get("location") or "")
            if entry.data.get("read_back"):
                self.proven[copy] = self.location[copy]
            else:  # a new object, sent and not yet read back
                self.proven.pop(copy, None)
        elif entry.kind == EventKind.WORM_CHECKED:
            self.worm[str(entry.data.get("target"))] = entry.seq
        elif entry.kind in (EventKind.CASE_CLOSED, EventKind.CASE_REOPENED):
            self.cases[str(entry.data.get("case"))] = (entry.kind, entry.seq)
        elif entry.kind == EventKind.AUDITED and entry.item:
            if entry.data.get("fixity") == "ok":
                self.rehashed[entry.item] = (entry.seq, format_time(entry.at))
            for target, found in dict(entry.data.get("offsite") or {}).items():
                copy = (entry.item, str(target))
                if found == "ok" and copy in self.location:
                    self.proven[copy] = self.location[copy]


class _Backing:
    """Checks catalog rows against the entries they name, and collects every difference."""

    def __init__(self) -> None:
        self.problems: list[Discrepancy] = []

    def check(self, table: str, key: str, backed: backing.Backed[Any], kind: str,
              item: str | None, expect: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The data of the row's entry, when it is the entry the row names and says what the
        row says."""
        entry = backed.entry
        if entry.kind != kind or (item is not None and entry.item != item):
            self.problems.append(UnbackedRow.wrong_entry(table=table, key=key, seq=entry.seq,
                                                         entry_kind=kind))
            return None
        if entry.data is None:
            return None  # its entry cannot be read: the chain check reports it
        self.differs(table, key, entry.seq, {name: (value, entry.data.get(name))
                                             for name, value in expect.items()})
        return entry.data

    def differs(self, table: str, key: str, seq: int | None,
                pairs: Mapping[str, tuple[Any, Any]]) -> None:
        for name, (ours, theirs) in pairs.items():
            if ours != theirs:
                self.problems.append(RowDiffers.of(table=table, key=key, seq=seq, field=name,
                                                   found=ours, expected=theirs))

    def rows_present(self, tx: CatalogTx, kind: str, table: backing.BackedTable) -> None:
        """Every ``kind`` entry must still have the row it made."""
        from .catalog import backing
        for entry in backing.rowless_entries(tx, table, kind):
            self.problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=entry.seq, table=str(table),
                detail=f"{kind} entry {entry.seq} (item {(entry.item or '-')[:16]}) has no "
                       f"{table} row"))


def _unbacked_rows(tx: CatalogTx, facts: _Facts) -> list[Discrepancy]:
    """Every catalog fact must be stated by the ledger entry it names, word for word, and
    every entry's row must be there."""
    from .catalog import backing
    check = _Backing()
    _item_rows(tx, check, facts)
    _event_rows(tx, check)
    _replica_rows(tx, check, facts)
    _worm_rows(tx, check, facts)
    _case_rows(tx, check, facts)
    serials = set()
    for backed in backing.recorder_rows(tx):
        rec = backed.row
        serials.add(rec.serial)
        check.check("recorders", rec.serial, backed, EventKind.REGISTRY, None,
                    {"serial": rec.serial, "officer": rec.officer if rec.active else None,
                     "active": rec.active})
    for serial, seq in sorted(facts.serials.items(), key=lambda kv: kv[1]):
        if serial not in serials:
            check.problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=seq, table="recorders",
                detail=f"recorder {serial!r} is in the ledger but not in the catalog"))
    return check.problems


def _item_rows(tx: CatalogTx, check: _Backing, facts: _Facts) -> None:
    from .catalog import backing
    for backed in backing.item_rows(tx):
        row = backed.row
        sha = row.sha256
        key = sha[:16]
        stored = check.check(
            "items", key, backed, EventKind.STORED, sha,
            {"size": row.size, "recorder": row.recorder, "officer": row.officer,
             "original_name": row.original_name, "recorded_start": row.recorded_start,
             "recorded_end": row.recorded_end, "time_source": row.time_source})
        if stored is not None:
            check.differs("items", key, backed.entry.seq, {
                "station": (row.station, backed.entry.station),
                "stored_at": (row.stored_at, backed.entry.at)})
        ours = {"retention_class": row.retention_class, "retain_until": row.retain_until,
                "hold": row.hold}
        setter = facts.retention.get(sha)
        if setter is None:
            check.problems.append(UnbackedRow(
                kind=K.UNBACKED_RETENTION, table="items", key=key,
                detail=f"items row {key}: no ledger entry states its retention {ours}"))
        else:
            seq, said = setter
            check.differs("items", key, seq,
                          {name: (value, said.get(name)) for name, value in ours.items()})
        # The audit cycle trusts the last intact re-hash: the ledger must say it too.
        proof_seq, proven_at = facts.rehashed.get(sha, (None, None))
        check.differs("items", key, proof_seq, {"audited_at": (row.audited_at, proven_at)})
        if not row.local_present and sha not in facts.evicted:
            check.problems.append(UnbackedRow(
                kind=K.UNBACKED_ROW, table="items", key=key,
                detail=f"items row {key} says the local copy is gone, but no evicted entry "
                       "records its eviction"))
    for entry in backing.itemless_entries(tx, EventKind.STORED):
        check.problems.append(MissingRow(
            kind=K.MISSING_ROW, seq=entry.seq, table="items",
            detail=f"item {(entry.item or '-')[:16]} is in the ledger but not in the catalog"))


def _event_rows(tx: CatalogTx, check: _Backing) -> None:
    from .catalog import backing
    table = backing.BackedTable
    for label in backing.label_rows(tx):
        row = label.row
        check.check("labels", str(row.id), label, EventKind.LABELLED, row.item,
                    {"case": row.case_no, "party": row.party, "officer": row.officer,
                     "case_type": row.case_type})
    check.rows_present(tx, EventKind.LABELLED, table.LABELS)
    for flag in backing.flag_rows(tx):
        check.check("flags", f"{flag.row.item[:16]}/{flag.row.flag}", flag, EventKind.FLAGGED,
                    flag.row.item, {"flag": flag.row.flag})
    check.rows_present(tx, EventKind.FLAGGED, table.FLAGS)
    for why in backing.justification_rows(tx):
        check.check("justifications", str(why.row.id), why, EventKind.JUSTIFIED, why.row.item,
                    {"flag": why.row.flag, "reason": why.row.reason})
    check.rows_present(tx, EventKind.JUSTIFIED, table.JUSTIFICATIONS)
    for acq in backing.acquisition_rows(tx):
        check.check("acquisitions", str(acq.row.id), acq, EventKind.ACQUIRED, acq.row.item,
                    {"path": acq.row.path, "size": acq.row.size})
    check.rows_present(tx, EventKind.ACQUIRED, table.ACQUISITIONS)
    for spot in backing.spot_check_rows(tx):
        sc = spot.row
        check.check("spot_checks", str(sc.id), spot, EventKind.SPOT_CHECKED, sc.item,
                    {"officer": sc.officer, "period_start": sc.period_start,
                     "fixity": sc.fixity, "decode": sc.decode, "result": sc.result})
    check.rows_present(tx, EventKind.SPOT_CHECKED, table.SPOT_CHECKS)
    for review in backing.spot_review_rows(tx):
        rv = review.row
        check.check("spot_reviews", str(rv.id), review, EventKind.SPOT_REVIEWED, rv.item,
                    {"by": rv.by, "result": rv.result, "note": rv.note,
                     "check_seq": rv.check_seq})
    check.rows_present(tx, EventKind.SPOT_REVIEWED, table.SPOT_REVIEWS)


def _replica_rows(tx: CatalogTx, check: _Backing, facts: _Facts) -> None:
    from .catalog import backing
    held: set[tuple[str, str]] = set()
    for backed in backing.replica_rows(tx):
        row = backed.row
        held.add((row.item, row.target))
        if row.state != "verified":
            continue  # queued, failed or found bad: it claims no copy
        name = f"{row.item[:16]}/{row.target}"
        check.check("replicas", name, backed, EventKind.REPLICATED, row.item,
                    {"target": row.target, "key": row.key, "size": row.size,
                     "sha256": row.remote_sha256})
        # Eviction and wipe trust a proof and its place: the ledger must say so too.
        copy = (row.item, row.target)
        said = facts.proven.get(copy)
        if row.proven_at is not None and said != row.location:
            check.problems.append(RowDiffers(
                kind=K.ROW_DIFFERS, seq=backed.entry.seq, table="replicas", key=name,
                field="read back at", found=row.location, expected=said,
                detail=f"replicas row {name} says its copy was read back at "
                       f"{row.location or '?'}, and no entry says so"))
    for (item, target), seq in sorted(facts.replicated.items(), key=lambda kv: kv[1]):
        if (item, target) not in held:
            check.problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=seq, table="replicas",
                detail=f"replicated entry {seq}: item {item[:16]} on {target} has no replicas "
                       "row"))


def _worm_rows(tx: CatalogTx, check: _Backing, facts: _Facts) -> None:
    """A target's WORM standing lets its copies count, or not: it must be what the last
    ``worm_checked`` entry for it says (an older, passing one would hide a failure)."""
    from .catalog import backing
    standing: set[str] = set()
    for backed in backing.worm_rows(tx):
        row = backed.row
        standing.add(row.target)
        said = check.check("target_worm", row.target, backed, EventKind.WORM_CHECKED, None,
                           {"target": row.target, "location": row.location,
                            "passed": row.passed})
        if said is not None:
            check.differs("target_worm", row.target, backed.entry.seq,
                          {"checked_at": (row.checked_at, backed.entry.at)})
        latest = facts.worm.get(row.target)
        if latest is not None and backed.entry.seq != latest:
            check.problems.append(RowDiffers(
                kind=K.ROW_DIFFERS, seq=latest, table="target_worm", key=row.target,
                field="ledger_seq", found=backed.entry.seq, expected=latest,
                detail=f"target_worm row {row.target} names entry {backed.entry.seq}, but the "
                       f"last worm_checked entry for it is {latest}"))
    for target, seq in sorted(facts.worm.items(), key=lambda kv: kv[1]):
        if target not in standing:
            check.problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=seq, table="target_worm",
                detail=f"worm_checked entry {seq} ({target}) has no target_worm row"))


def _case_rows(tx: CatalogTx, check: _Backing, facts: _Facts) -> None:
    """A closed case starts its archive window, and its archive ends it: each as its entry
    says; a case is closed (has its row) exactly when its latest close or reopening is a
    close, and the row names that close."""
    from .catalog import backing
    closed: set[str] = set()
    for backed in backing.case_rows(tx):
        row = backed.row
        closed.add(row.case_no)
        kind, seq = facts.cases.get(row.case_no, (None, None))
        if kind == EventKind.CASE_REOPENED or (kind is not None and seq != backed.entry.seq):
            check.problems.append(RowDiffers(
                kind=K.ROW_DIFFERS, seq=seq, table="cases", key=row.case_no,
                field="ledger_seq", found=backed.entry.seq, expected=seq,
                detail=f"cases row {row.case_no} names entry {backed.entry.seq}, but the "
                       f"case's latest close or reopening is {kind} entry {seq}"))
        check.check("cases", row.case_no, backed, EventKind.CASE_CLOSED, None,
                    {"case": row.case_no, "closed_at": row.closed_at})
        if row.archive is None:
            if row.archived_at is not None:
                check.problems.append(UnbackedRow(
                    kind=K.UNBACKED_ROW, table="cases", key=row.case_no,
                    detail=f"cases row {row.case_no} says it was archived, and names no "
                           "case_archived entry"))
            continue
        said = check.check("cases", row.case_no, backing.Backed(row=row, entry=row.archive),
                           EventKind.CASE_ARCHIVED, None,
                           {"case": row.case_no, "location": row.archive_location,
                            "package": row.archive_package})
        if said is not None:
            check.differs("cases", row.case_no, row.archive.seq,
                          {"archived_at": (row.archived_at, row.archive.at)})
    for case, (kind, seq) in sorted(facts.cases.items(), key=lambda kv: kv[1][1]):
        if kind == EventKind.CASE_CLOSED and case not in closed:
            check.problems.append(MissingRow(
                kind=K.MISSING_ROW, seq=seq, table="cases",
                detail=f"case_closed entry {seq} ({case}) has no cases row"))
