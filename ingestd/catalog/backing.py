"""The catalog's side of ``ledger verify``: every row that states a fact about evidence, with
the entry its ``ledger_seq`` names; the entries whose rows are gone; and the entries
themselves, read so that one whose fields do not parse is reported, not a stop.

Each function takes the transaction a check reads in (:class:`~.queries.Tx`, opened as a
snapshot) and yields typed records as the rows stream by: no table is held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Table, select
from sqlalchemy.engine import RowMapping

from ..ports import CatalogTx
from .queries import Tx
from .schema import (
    acquisitions,
    cases,
    flags,
    items,
    justifications,
    keys,
    labels,
    ledger,
    recorders,
    replicas,
    spot_checks,
    spot_reviews,
    target_worm,
)

R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class NamedEntry:
    """The entry a row's ``ledger_seq`` names, as far as a row check needs it. ``kind`` None:
    no entry has that number; ``data`` None: there is one, but its data is not a JSON object
    (the chain check reports that entry)."""

    seq: int | None
    kind: str | None
    item: str | None
    station: str | None
    at: str | None
    data: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class Backed(Generic[R]):
    """A row and the entry it names."""

    row: R
    entry: NamedEntry


@dataclass(frozen=True, kw_only=True)
class ItemRow:
    sha256: str
    size: int
    station: str
    stored_at: str
    recorder: str
    officer: str
    original_name: str
    recorded_start: str
    recorded_end: str
    time_source: str
    retention_class: str
    retain_until: str | None
    hold: bool
    local_present: bool
    audited_at: str | None


@dataclass(frozen=True, kw_only=True)
class LabelRow:
    id: int
    item: str
    case_no: str
    party: str
    officer: str
    case_type: str | None


@dataclass(frozen=True, kw_only=True)
class FlagRow:
    item: str
    flag: str


@dataclass(frozen=True, kw_only=True)
class JustificationRow:
    id: int
    item: str
    flag: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AcquisitionRow:
    id: int
    item: str | None
    path: str
    size: int


@dataclass(frozen=True, kw_only=True)
class RecorderRow:
    serial: str
    officer: str
    active: bool


@dataclass(frozen=True, kw_only=True)
class ReplicaRow:
    item: str
    target: str
    state: str
    key: str
    size: int | None
    remote_sha256: str | None
    location: str
    proven_at: str | None


@dataclass(frozen=True, kw_only=True)
class SpotCheckRow:
    id: int
    item: str
    officer: str
    period_start: str
    fixity: str
    decode: str
    result: str


@dataclass(frozen=True, kw_only=True)
class SpotReviewRow:
    id: int
    item: str
    by: str
    result: str
    note: str
    check_seq: int | None  # the entry of the spot check it reviews (None: that row is gone)


@dataclass(frozen=True, kw_only=True)
class WormRow:
    target: str
    location: str
    passed: bool
    checked_at: str


@dataclass(frozen=True, kw_only=True)
class KeyRow:
    key_id: str
    station: str
    public_key: str
    retired_at: str | None


@dataclass(frozen=True, kw_only=True)
class RowlessEntry:
    """An entry whose row is gone."""

    seq: int
    item: str | None


class BackedTable(StrEnum):
    """The tables whose rows are each made by one entry that names them by ``ledger_seq``."""

    LABELS = "labels"
    FLAGS = "flags"
    JUSTIFICATIONS = "justifications"
    ACQUISITIONS = "acquisitions"
    SPOT_CHECKS = "spot_checks"
    SPOT_REVIEWS = "spot_reviews"


_TABLES: dict[BackedTable, Table] = {
    BackedTable.LABELS: labels, BackedTable.FLAGS: flags,
    BackedTable.JUSTIFICATIONS: justifications, BackedTable.ACQUISITIONS: acquisitions,
    BackedTable.SPOT_CHECKS: spot_checks, BackedTable.SPOT_REVIEWS: spot_reviews,
}

_E = ledger.alias("e")


def _conn(tx: CatalogTx) -> Connection:
    """The connection under a catalog transaction: these checks read the tables themselves,
    and every ``CatalogTx`` ingestd hands out is the catalog's own ``Tx``."""
    assert isinstance(tx, Tx), tx
    return tx.conn


def _stream(tx: CatalogTx, table: Table, *where: Any,
            also: Sequence[Any] = (), joined: Any = None,
            ) -> Iterator[tuple[RowMapping, NamedEntry]]:
    """A table's rows, each with the entry its ``ledger_seq`` names (or none); ``also``:
    more columns, from ``joined`` (the table, outer-joined to more)."""
    source = (table if joined is None else joined).outerjoin(_E, _E.c.seq == table.c.ledger_seq)
    query = (select(table, *also, _E.c.kind.label("e_kind"), _E.c.item.label("e_item"),
                    _E.c.data.label("e_data"), _E.c.station.label("e_station"),
                    _E.c.at.label("e_at"))
             .select_from(source).where(*where))
    for row in _conn(tx).execute(query).mappings():
        yield row, _named(row)


def _named(row: RowMapping, prefix: str = "e", seq: str = "ledger_seq") -> NamedEntry:
    """The entry a row names by its ``seq`` column, read from the columns the join gave it
    (``prefix``: the alias they came from)."""
    kind = row[f"{prefix}_kind"]
    data: Mapping[str, Any] | None = None
    if kind is not None:
        try:
            parsed = json.loads(row[f"{prefix}_data"])
        except (TypeError, ValueError):
            parsed = None
        data = parsed if isinstance(parsed, dict) else None
    return NamedEntry(seq=row[seq], kind=kind, item=row[f"{prefix}_item"],
                      station=row[f"{prefix}_station"], at=row[f"{prefix}_at"], data=data)


# -- rows with their entries -----------------------------------------------------------------


def item_rows(tx: CatalogTx) -> Iterator[Backed[ItemRow]]:
    for row, entry in _stream(tx, items):
        yield Backed(entry=entry, row=ItemRow(
            sha256=row["sha256"], size=row["size"], station=row["station"],
            stored_at=row["stored_at"], recorder=row["recorder"], officer=row["officer"],
            original_name=row["original_name"], recorded_start=row["recorded_start"],
            recorded_end=row["recorded_end"], time_source=row["time_source"],
            retention_class=row["retention_class"], retain_until=row["retain_until"],
            hold=bool(row["hold"]), local_present=bool(row["local_present"]),
            audited_at=row["audited_at"]))


def label_rows(tx: CatalogTx) -> Iterator[Backed[LabelRow]]:
    for row, entry in _stream(tx, labels):
        yield Backed(entry=entry, row=LabelRow(
            id=row["id"], item=row["item"], case_no=row["case_no"], party=row["party"],
            officer=row["officer"], case_type=row["case_type"]))


def flag_rows(tx: CatalogTx) -> Iterator[Backed[FlagRow]]:
    for row, entry in _stream(tx, flags):
        yield Backed(entry=entry, row=FlagRow(item=row["item"], flag=row["flag"]))


def justification_rows(tx: CatalogTx) -> Iterator[Backed[JustificationRow]]:
    for row, entry in _stream(tx, justifications):
        yield Backed(entry=entry, row=JustificationRow(
            id=row["id"], item=row["item"], flag=row["flag"], reason=row["reason"]))


def acquisition_rows(tx: CatalogTx) -> Iterator[Backed[AcquisitionRow]]:
    """Acquisitions that name an entry (one still copying, or failed, names none)."""
    for row, entry in _stream(tx, acquisitions, acquisitions.c.ledger_seq.is_not(None)):
        yield Backed(entry=entry, row=AcquisitionRow(
            id=row["id"], item=row["item"], path=row["path"], size=row["size"]))


def recorder_rows(tx: CatalogTx) -> Iterator[Backed[RecorderRow]]:
    for row, entry in _stream(tx, recorders):
        yield Backed(entry=entry, row=RecorderRow(
            serial=row["serial"], officer=row["officer"], active=bool(row["active"])))


def replica_rows(tx: CatalogTx) -> Iterator[Backed[ReplicaRow]]:
    for row, entry in _stream(tx, replicas):
        yield Backed(entry=entry, row=ReplicaRow(
            item=row["item"], target=row["target"], state=row["state"], key=row["key"],
            size=row["size"], remote_sha256=row["remote_sha256"],
            location=row["location"] or "", proven_at=row["proven_at"]))


def spot_check_rows(tx: CatalogTx) -> Iterator[Backed[SpotCheckRow]]:
    for row, entry in _stream(tx, spot_checks):
        yield Backed(entry=entry, row=SpotCheckRow(
            id=row["id"], item=row["item"], officer=row["officer"],
            period_start=row["period_start"], fixity=row["fixity"], decode=row["decode"],
            result=row["result"]))


def spot_review_rows(tx: CatalogTx) -> Iterator[Backed[SpotReviewRow]]:
    """Reviews, each with the entry of the spot check it names."""
    joined = spot_reviews.outerjoin(spot_checks, spot_checks.c.id == spot_reviews.c.check_id)
    for row, entry in _stream(tx, spot_reviews, joined=joined,
                              also=[spot_checks.c.ledger_seq.label("check_seq")]):
        yield Backed(entry=entry, row=SpotReviewRow(
            id=row["id"], item=row["item"], by=row["by"], result=row["result"],
            note=row["note"], check_seq=row["check_seq"]))


def worm_rows(tx: CatalogTx) -> Iterator[Backed[WormRow]]:
    """Each target's WORM standing, with the ``worm_checked`` entry it names."""
    for row, entry in _stream(tx, target_worm):
        yield Backed(entry=entry, row=WormRow(
            target=row["target"], location=row["location"], passed=bool(row["passed"]),
            checked_at=row["checked_at"]))


def key_rows(tx: CatalogTx) -> Iterator[KeyRow]:
    """The ``keys`` table: a cache of the keys the chain proves."""
    for row in _conn(tx).execute(select(keys).order_by(keys.c.created_at)).mappings():
        yield KeyRow(key_id=row["key_id"], station=row["station"],
                     public_key=row["public_key"], retired_at=row["retired_at"])


@dataclass(frozen=True, kw_only=True)
class CaseRow:
    case_no: str
    closed_at: str
    archived_at: str | None
    archive_location: str | None
    archive_package: str | None
    archive: NamedEntry | None  # the entry its archive_seq names (None: it names none)


_A = ledger.alias("a")


def case_rows(tx: CatalogTx) -> Iterator[Backed[CaseRow]]:
    """Closed cases, each with its ``case_closed`` entry and the entry of its archive."""
    joined = cases.outerjoin(_A, _A.c.seq == cases.c.archive_seq)
    also = [_A.c.kind.label("a_kind"), _A.c.item.label("a_item"), _A.c.data.label("a_data"),
            _A.c.station.label("a_station"), _A.c.at.label("a_at")]
    for row, entry in _stream(tx, cases, joined=joined, also=also):
        archive = (None if row["archive_seq"] is None
                   else _named(row, prefix="a", seq="archive_seq"))
        yield Backed(entry=entry, row=CaseRow(
            case_no=row["case_no"], closed_at=row["closed_at"],
            archived_at=row["archived_at"], archive_location=row["archive_location"],
            archive_package=row["archive_package"], archive=archive))


# -- entries whose rows are gone -------------------------------------------------------------


def rowless_entries(tx: CatalogTx, table: BackedTable, kind: str) -> Iterator[RowlessEntry]:
    """The ``kind`` entries that no row of ``table`` names."""
    rows = _TABLES[table]
    query = (select(ledger.c.seq, ledger.c.item)
             .select_from(ledger.outerjoin(rows, rows.c.ledger_seq == ledger.c.seq))
             .where(ledger.c.kind == kind, rows.c.ledger_seq.is_(None))
             .order_by(ledger.c.seq))
    for row in _conn(tx).execute(query):
        yield RowlessEntry(seq=row.seq, item=row.item)


def itemless_entries(tx: CatalogTx, kind: str) -> Iterator[RowlessEntry]:
    """The ``kind`` entries whose item has no ``items`` row (an item's row is its bytes'
    record, named by its hash, not by the entry)."""
    query = (select(ledger.c.seq, ledger.c.item)
             .select_from(ledger.outerjoin(items, items.c.sha256 == ledger.c.item))
             .where(ledger.c.kind == kind, items.c.sha256.is_(None))
             .order_by(ledger.c.seq))
    for row in _conn(tx).execute(query):
        yield RowlessEntry(seq=row.seq, item=row.item)
