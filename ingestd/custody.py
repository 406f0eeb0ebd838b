"""Custody: every event about evidence becomes a signed ledger entry in the same transaction as
the catalog rows it backs; the JSON-lines mirror follows each commit; verification checks all.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from .catalog import queries as q
from .catalog.db import Catalog, damage_advice
from .catalog.schema import acquisitions, flags, items, labels, recorders
from .domain.models import EventKind, LedgerEntry
from .errors import CatalogError
from .integrity.ledger import (
    GENESIS_HASH,
    Discrepancy,
    Mirror,
    compare_mirror,
    seal,
    verify_chain,
)
from .integrity.signing import PublicKey, StationKey

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: SQLite's own check of the catalog's pages found damage (the kinds of the chain's checks are
#: in ``integrity.ledger``).
CATALOG_DAMAGED = "catalog_damaged"


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
    def __init__(self, *, catalog: Catalog, key: StationKey, station: str, mirror: Path,
                 clock: Clock) -> None:
        self.catalog = catalog
        self.key = key
        self.station = station
        self.mirror = Mirror(mirror)
        self.clock = clock
        self._mirror_lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A catalog write transaction whose ledger entries are mirrored once it commits."""
        with self.catalog.write() as conn:
            yield conn
        self.sync_mirror()

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
        """Append one signed entry; call inside :meth:`transaction` (one writer at a time)."""
        seq, head = q.ledger_head(conn)
        entry = seal(
            seq=seq + 1, at=at or self.clock(), station=self.station, actor=actor,
            kind=str(kind), item=item, data=dict(data or {}), prev_hash=head or GENESIS_HASH,
            key=self.key,
        )
        q.insert_entry(conn, entry)
        return entry

    def sync_mirror(self) -> int:
        """Append to the mirror every committed entry it does not have yet."""
        with self._mirror_lock:
            self.mirror.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.mirror.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # other ingestd processes on this station
                self.mirror.truncate_partial_tail()
                last = self.mirror.last_seq()
                with self.catalog.read() as conn:
                    new = list(q.iter_entries(conn, after=last))
                return self.mirror.append(new)
            finally:
                os.close(fd)

    # -- keys ------------------------------------------------------------------------------

    def register_key(self, conn: Connection) -> None:
        q.add_key(conn, key_id=self.key.key_id, station=self.station,
                  public_hex=self.key.public.hex, at=self.clock())

    def trusted_keys(self, conn: Connection) -> dict[str, PublicKey]:
        return {row["key_id"]: PublicKey.from_hex(row["public_key"]) for row in q.all_keys(conn)}

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> LedgerReport:
        report = LedgerReport()
        damage = self.catalog.damage()
        if damage:
            report.problems.append(_problem(CATALOG_DAMAGED, None, damage_advice(
                self.catalog.safe_url, "; ".join(damage[:5]), damaged=True)))
        entries: dict[int, LedgerEntry] = {}
        try:
            self._verify_catalog(report, entries)
        except CatalogError as exc:
            if not damage:
                raise
            # Named above already; the mirror is still compared with what could be read.
            log.warning("ledger verify: %s", exc.message)
        report.problems.extend(compare_mirror(entries, self.mirror, station=self.station))
        return report

    def _verify_catalog(self, report: LedgerReport, entries: dict[int, LedgerEntry]) -> None:
        with self.catalog.read() as conn:
            trusted = self.trusted_keys(conn)
            if self.key.key_id not in trusted:
                report.problems.append(Discrepancy(
                    kind="unknown_key", seq=None,
                    detail=f"this station's key {self.key.key_id} is not in the catalog"))
            for row in q.all_keys(conn):
                pub = PublicKey.from_hex(row["public_key"])
                if pub.key_id != row["key_id"]:
                    report.problems.append(Discrepancy(
                        kind="wrong_key", seq=None,
                        detail=f"catalog key {row['key_id']} does not match its public key"))
            entries.update((e.seq, e) for e in q.iter_entries(conn))
            problems, count, head = verify_chain(entries.values(), trusted)
            report.problems.extend(problems)
            report.entries = count
            report.head_seq = max(entries, default=0)
            report.head_hash = head
            report.problems.extend(_unbacked_rows(conn, entries))


def _problem(kind: str, seq: int | None, detail: str) -> Discrepancy:
    return Discrepancy(kind=kind, seq=seq, detail=detail)


def _unbacked_rows(conn: Connection, entries: Mapping[int, LedgerEntry]) -> list[Discrepancy]:
    """Every catalog fact must be stated by the ledger entry it names, word for word."""
    problems: list[Discrepancy] = []

    def check(table: str, key: str, seq: int | None, kind: str, item: str | None,
              expect: Mapping[str, Any]) -> None:
        entry = entries.get(seq) if seq is not None else None
        if entry is None or entry.kind != kind or (item is not None and entry.item != item):
            problems.append(_problem("unbacked_row", seq,
                                     f"{table} row {key} is not backed by a {kind} entry"))
            return
        for name, value in expect.items():
            if entry.data.get(name) != value:
                problems.append(_problem(
                    "row_differs", seq,
                    f"{table} row {key}: {name} is {value!r} but the ledger says "
                    f"{entry.data.get(name)!r}"))

    for row in conn.execute(select(items)).mappings():
        check("items", row["sha256"][:16], row["ledger_seq"], EventKind.STORED, row["sha256"],
              {"size": row["size"], "recorder": row["recorder"],
               "recorded_start": row["recorded_start"]})
    for row in conn.execute(select(labels)).mappings():
        check("labels", str(row["id"]), row["ledger_seq"], EventKind.LABELLED, row["item"],
              {"case": row["case_no"], "party": row["party"], "officer": row["officer"]})
    for row in conn.execute(select(flags)).mappings():
        check("flags", f"{row['item'][:16]}/{row['flag']}", row["ledger_seq"], EventKind.FLAGGED,
              row["item"], {"flag": row["flag"]})
    for row in conn.execute(
        select(acquisitions).where(acquisitions.c.ledger_seq.is_not(None))
    ).mappings():
        check("acquisitions", str(row["id"]), row["ledger_seq"], EventKind.ACQUIRED, row["item"],
              {"path": row["path"], "size": row["size"]})
    for row in conn.execute(select(recorders)).mappings():
        check("recorders", row["serial"], row["ledger_seq"], EventKind.REGISTRY, None,
              {"serial": row["serial"], "officer": row["officer"] if row["active"] else None,
               "active": bool(row["active"])})
    # Each item's ``stored`` entry must have its catalog row: a deleted row is caught too.
    stored = {e.item for e in entries.values() if e.kind == EventKind.STORED}
    present = {r.sha256 for r in conn.execute(select(items.c.sha256))}
    for sha in sorted(s for s in stored - present if s):
        problems.append(_problem("missing_row", None,
                                 f"item {sha[:16]} is in the ledger but not in the catalog"))
    return problems
