"""Custody: every event about evidence becomes a signed ledger entry in the same transaction as
the catalog rows it backs; the JSON-lines mirror follows each commit; verification checks all.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from .catalog import queries as q
from .catalog.db import Catalog
from .catalog.schema import (
    acquisitions,
    flags,
    items,
    justifications,
    labels,
    recorders,
    replicas,
)
from .domain.canonical import canonical_bytes, format_time
from .domain.models import EventKind, LedgerEntry
from .errors import IntegrityError
from .integrity.ledger import (
    GENESIS_HASH,
    KEY_KINDS,
    Discrepancy,
    DiscrepancyKind,
    KeyChain,
    Mirror,
    body_of,
    compare_mirror,
    seal,
    verify_chain,
)
from .integrity.signing import PublicKey, StationKey

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
K = DiscrepancyKind


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

    @property
    def pins(self) -> dict[str, str]:
        return {self.station: self.pin} if self.pin else {}

    # -- writing ---------------------------------------------------------------------------

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
            self.mirror.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.mirror.path.with_suffix(".lock"),
                         os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o640)
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
    def transaction(self) -> Iterator[Connection]:
        """A catalog write transaction whose ledger entries are mirrored once it commits."""
        with self._locked():
            try:
                with self.catalog.write() as conn:
                    yield conn
            except BaseException:
                with self._keys_lock:
                    self._keys = None  # what it learnt of the keys may have been rolled back
                raise
            self._sync()

    def record(
        self,
        conn: Connection,
        *,
        kind: EventKind | str,
        actor: str,
        item: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> LedgerEntry:
        """Append one signed entry; call inside :meth:`transaction` (one writer at a time).

        Refuses to sign with a key the ledger does not vouch for this station."""
        seq, head = q.ledger_head(conn)
        with self._keys_lock:
            keys = self._signing_keys(conn, seq)
            self._check_signing_key(keys, str(kind))
        entry = seal(
            seq=seq + 1, at=at or self.clock(), station=self.station, actor=actor,
            kind=str(kind), item=item, data=dict(data or {}), prev_hash=head or GENESIS_HASH,
            key=self.key,
        )
        q.insert_entry(conn, entry)
        with self._keys_lock:
            if entry.kind in KEY_KINDS:
                keys.admit(entry, canonical_bytes(body_of(entry)))
            self._keys_seen = entry.seq
        return entry

    def check_signing_key(self) -> None:
        """Refuse (IntegrityError) unless the ledger vouches for the key this station would
        sign with: for what is signed outside the ledger (manifests, checkpoints)."""
        with self.catalog.read() as conn, self._keys_lock:
            seq, _ = q.ledger_head(conn)
            self._check_signing_key(self._signing_keys(conn, seq), "")

    def _signing_keys(self, conn: Connection, head_seq: int) -> KeyChain:
        if self._keys is None:
            self._keys, self._keys_seen = KeyChain(pins=self.pins), 0
        if head_seq > self._keys_seen:
            for entry in q.iter_entries(conn, after=self._keys_seen, kinds=KEY_KINDS,
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

    def _sync(self) -> int:
        self.mirror.truncate_partial_tail()
        last = self.mirror.last_seq()
        with self.catalog.read() as conn:
            new = list(q.iter_entries(conn, after=last))
        return self.mirror.append(new)

    # -- keys ------------------------------------------------------------------------------

    def trusted_keys(self, conn: Connection) -> KeyChain:
        """The keys the ledger proves, from its genesis and rotation entries (each checked
        against the key before it and the pin), not from the catalog's ``keys`` cache."""
        keys = KeyChain(pins=self.pins)
        for entry in q.iter_entries(conn, kinds=KEY_KINDS):
            keys.admit(entry, canonical_bytes(body_of(entry)))
        return keys

    def cache_keys(self, conn: Connection, keys: KeyChain) -> None:
        """Bring the catalog's ``keys`` table up to what the chain proves."""
        rows = {row["key_id"] for row in q.all_keys(conn)}
        for key in keys.keys.values():
            if key.station is not None and key.key_id not in rows:
                q.add_key(conn, key_id=key.key_id, station=key.station,
                          public_hex=key.public.hex, at=self.clock())
                if key.retired_at is not None:
                    q.retire_key(conn, key.key_id, key.retired_at)

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> LedgerReport:
        """Check the chain, the keys, every catalog row and the mirror, all as of one moment:
        entries committed while the check runs are neither missing nor extra."""
        report = LedgerReport()
        keys = KeyChain(pins=self.pins)
        if self.pin is None:
            report.problems.append(Discrepancy(
                kind=K.NOT_PINNED, seq=None,
                detail="this home pins no key fingerprint: run `ingestd init` to pin the "
                       "ledger's first key"))
        with ExitStack() as stack:
            with self._locked(fcntl.LOCK_SH):
                upto = self.mirror.size()
                conn = stack.enter_context(self.catalog.read(snapshot=True))
                head_seq, _ = q.ledger_head(conn)  # the first read fixes the snapshot
            entries = {e.seq: e for e in q.iter_entries(conn, upto=head_seq)}
            problems, count, head = verify_chain(entries.values(), keys=keys)
            report.problems.extend(problems)
            report.problems.extend(keys.unmet_pins())
            report.entries = count
            report.head_seq = max(entries, default=0)
            report.head_hash = head
            current = keys.current(self.station)
            if current is None or current.key_id != self.key.key_id:
                report.problems.append(Discrepancy(
                    kind=K.UNKNOWN_KEY, seq=None,
                    detail=f"this station's key {self.key.key_id} is not the key the ledger "
                           f"vouches for station {self.station} "
                           f"({current.key_id if current else 'none'})"))
            report.problems.extend(_key_rows(conn, keys))
            report.problems.extend(_unbacked_rows(conn, entries))
        report.problems.extend(compare_mirror(entries, self.mirror, station=self.station,
                                              upto=upto))
        return report


def _problem(kind: DiscrepancyKind, seq: int | None, detail: str) -> Discrepancy:
    return Discrepancy(kind=kind, seq=seq, detail=detail)


def _key_rows(conn: Connection, keys: KeyChain) -> list[Discrepancy]:
    """The catalog's ``keys`` table is a cache of what the chain proves: check it is one."""
    problems: list[Discrepancy] = []
    cached: set[str] = set()
    for row in q.all_keys(conn):
        kid = row["key_id"]
        cached.add(kid)
        pub = PublicKey.from_hex(row["public_key"])
        proven = keys.keys.get(kid)
        if pub.key_id != kid:
            problems.append(_problem(K.WRONG_KEY, None,
                                     f"catalog key {kid} does not match its public key"))
        elif proven is None or proven.station is None:
            problems.append(_problem(K.UNBACKED_ROW, None,
                                     f"keys row {kid}: the ledger does not vouch for this key"))
        elif proven.station != row["station"] or (
                (proven.until is None) != (row["retired_at"] is None)):
            state = "in use" if proven.until is None else f"retired by entry {proven.until}"
            problems.append(_problem(
                K.ROW_DIFFERS, proven.since,
                f"keys row {kid} ({row['station']}, "
                f"{'retired' if row['retired_at'] else 'in use'}) but the ledger says "
                f"{proven.station}, {state}"))
    for kid, proven in sorted(keys.keys.items()):
        if proven.station is not None and kid not in cached:
            problems.append(_problem(K.MISSING_ROW, proven.since,
                                     f"key {kid} is in the ledger but not in the keys table"))
    return problems


class _Backing:
    """Checks catalog rows against the entries they name, and collects every difference."""

    def __init__(self, entries: Mapping[int, LedgerEntry]) -> None:
        self.entries = entries
        self.problems: list[Discrepancy] = []
        self.by_kind: dict[str, list[LedgerEntry]] = defaultdict(list)
        for entry in entries.values():
            self.by_kind[entry.kind].append(entry)

    def check(self, table: str, key: str, seq: int | None, kind: str, item: str | None,
              expect: Mapping[str, Any]) -> LedgerEntry | None:
        """The row's entry, when it is the entry the row names and says what the row says."""
        entry = self.entries.get(seq) if seq is not None else None
        if entry is None or entry.kind != kind or (item is not None and entry.item != item):
            self.problems.append(_problem(K.UNBACKED_ROW, seq,
                                          f"{table} row {key} is not backed by a {kind} entry"))
            return None
        self.differs(table, key, entry, {name: (value, entry.data.get(name))
                                         for name, value in expect.items()})
        return entry

    def differs(self, table: str, key: str, entry: LedgerEntry,
                pairs: Mapping[str, tuple[Any, Any]]) -> None:
        for name, (ours, theirs) in pairs.items():
            if ours != theirs:
                self.problems.append(_problem(
                    K.ROW_DIFFERS, entry.seq,
                    f"{table} row {key}: {name} is {ours!r} but the ledger says {theirs!r}"))

    def rows_present(self, kind: str, table: str, seqs: set[int]) -> None:
        """Every ``kind`` entry must still have the row it made."""
        for entry in self.by_kind.get(kind, []):
            if entry.seq not in seqs:
                self.problems.append(_problem(
                    K.MISSING_ROW, entry.seq,
                    f"{kind} entry {entry.seq} (item {(entry.item or '-')[:16]}) has no "
                    f"{table} row"))


def _unbacked_rows(conn: Connection, entries: Mapping[int, LedgerEntry]) -> list[Discrepancy]:
    """Every catalog fact must be stated by the ledger entry it names, word for word, and
    every entry's row must be there."""
    backing = _Backing(entries)
    _item_rows(conn, backing)
    _event_rows(conn, backing)
    _replica_rows(conn, backing)
    for row in conn.execute(select(recorders)).mappings():
        backing.check("recorders", row["serial"], row["ledger_seq"], EventKind.REGISTRY, None,
                      {"serial": row["serial"],
                       "officer": row["officer"] if row["active"] else None,
                       "active": bool(row["active"])})
    serials = {r.serial for r in conn.execute(select(recorders.c.serial))}
    for entry in backing.by_kind.get(EventKind.REGISTRY, []):
        if entry.data.get("serial") not in serials:
            backing.problems.append(_problem(
                K.MISSING_ROW, entry.seq,
                f"recorder {entry.data.get('serial')!r} is in the ledger but not in the "
                "catalog"))
    return backing.problems


def _retention_of(entries: Mapping[int, LedgerEntry]) -> dict[str, LedgerEntry]:
    """Each item's latest entry that sets its retention (lock extensions set none)."""
    latest: dict[str, LedgerEntry] = {}
    for seq in sorted(entries):
        entry = entries[seq]
        if entry.item and isinstance(entry.data.get("retention"), dict):
            latest[entry.item] = entry
    return latest


def _item_rows(conn: Connection, backing: _Backing) -> None:
    retention = _retention_of(backing.entries)
    evicted = {e.item for e in backing.by_kind.get(EventKind.EVICTED, [])}
    present: set[str] = set()
    for row in conn.execute(select(items)).mappings():
        sha = row["sha256"]
        present.add(sha)
        key = sha[:16]
        stored = backing.check(
            "items", key, row["ledger_seq"], EventKind.STORED, sha,
            {name: row[name] for name in ("size", "recorder", "officer", "original_name",
                                          "recorded_start", "recorded_end", "time_source")})
        if stored is not None:
            backing.differs("items", key, stored, {
                "station": (row["station"], stored.station),
                "stored_at": (row["stored_at"], format_time(stored.at))})
        ours = {"retention_class": row["retention_class"], "retain_until": row["retain_until"],
                "hold": bool(row["hold"])}
        setter = retention.get(sha)
        if setter is None:
            backing.problems.append(_problem(
                K.UNBACKED_RETENTION, None,
                f"items row {key}: no ledger entry states its retention {ours}"))
        else:
            said = setter.data["retention"]
            backing.differs("items", key, setter,
                            {name: (value, said.get(name)) for name, value in ours.items()})
        if not row["local_present"] and sha not in evicted:
            backing.problems.append(_problem(
                K.UNBACKED_ROW, None,
                f"items row {key} says the local copy is gone, but no evicted entry records "
                "its eviction"))
    for entry in backing.by_kind.get(EventKind.STORED, []):
        if entry.item and entry.item not in present:
            backing.problems.append(_problem(
                K.MISSING_ROW, entry.seq,
                f"item {entry.item[:16]} is in the ledger but not in the catalog"))


def _event_rows(conn: Connection, backing: _Backing) -> None:
    seqs: set[int] = set()
    for row in conn.execute(select(labels)).mappings():
        seqs.add(row["ledger_seq"])
        backing.check("labels", str(row["id"]), row["ledger_seq"], EventKind.LABELLED,
                      row["item"], {"case": row["case_no"], "party": row["party"],
                                    "officer": row["officer"]})
    backing.rows_present(EventKind.LABELLED, "labels", seqs)
    seqs = set()
    for row in conn.execute(select(flags)).mappings():
        seqs.add(row["ledger_seq"])
        backing.check("flags", f"{row['item'][:16]}/{row['flag']}", row["ledger_seq"],
                      EventKind.FLAGGED, row["item"], {"flag": row["flag"]})
    backing.rows_present(EventKind.FLAGGED, "flags", seqs)
    seqs = set()
    for row in conn.execute(select(justifications)).mappings():
        seqs.add(row["ledger_seq"])
        backing.check("justifications", str(row["id"]), row["ledger_seq"],
                      EventKind.JUSTIFIED, row["item"],
                      {"flag": row["flag"], "reason": row["reason"]})
    backing.rows_present(EventKind.JUSTIFIED, "justifications", seqs)
    seqs = set()
    for row in conn.execute(
        select(acquisitions).where(acquisitions.c.ledger_seq.is_not(None))
    ).mappings():
        seqs.add(row["ledger_seq"])
        backing.check("acquisitions", str(row["id"]), row["ledger_seq"], EventKind.ACQUIRED,
                      row["item"], {"path": row["path"], "size": row["size"]})
    backing.rows_present(EventKind.ACQUIRED, "acquisitions", seqs)


def _replica_rows(conn: Connection, backing: _Backing) -> None:
    held: set[tuple[str, str]] = set()
    for row in conn.execute(select(replicas)).mappings():
        held.add((row["item"], row["target"]))
        if row["state"] != "verified":
            continue  # queued, failed or found bad: it claims no copy
        backing.check("replicas", f"{row['item'][:16]}/{row['target']}", row["ledger_seq"],
                      EventKind.REPLICATED, row["item"],
                      {"target": row["target"], "key": row["key"], "size": row["size"],
                       "sha256": row["remote_sha256"]})
    for entry in backing.by_kind.get(EventKind.REPLICATED, []):
        if (entry.item, entry.data.get("target")) not in held:
            backing.problems.append(_problem(
                K.MISSING_ROW, entry.seq,
                f"replicated entry {entry.seq}: item {(entry.item or '-')[:16]} on "
                f"{entry.data.get('target')} has no replicas row"))
