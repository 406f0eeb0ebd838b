"""The recorder registry: which recorder (by serial) is carried by which officer.

Every change is a signed ``registry`` entry written with the row it backs, so ``ledger
verify`` can prove the registry; a recorder taken out keeps its history.
"""

from __future__ import annotations

from ..domain.models import EventKind, Recorder
from ..errors import NotFound
from ..ports import CatalogTx
from ..station import Station


def register(station: Station, rec: Recorder, *, actor: str,
             only_if_new: bool = False) -> bool:
    """Register ``rec`` (or give a registered serial to another officer). With
    ``only_if_new``, a serial registered already is left as it is. Returns whether anything
    was written."""
    with station.custody.transaction() as tx:
        if only_if_new and tx.recorder(rec.serial) is not None:
            return False
        _register(station, tx, rec, actor=actor)
    return True


def _register(station: Station, tx: CatalogTx, rec: Recorder, *, actor: str) -> None:
    entry = station.custody.record(
        tx, kind=EventKind.REGISTRY, actor=actor,
        data={"serial": rec.serial, "officer": rec.officer, "officer_id": rec.officer_id,
              "unit": rec.unit, "vendor": rec.vendor, "model": rec.model, "active": True},
    )
    tx.upsert_recorder(rec, at=entry.at, ledger_seq=entry.seq)


def unregister(station: Station, serial: str, *, actor: str) -> None:
    """Take a recorder out of the registry; raises NotFound if it is not registered."""
    with station.custody.transaction() as tx:
        if tx.recorder(serial) is None:
            raise NotFound(f"recorder {serial} is not registered")
        entry = station.custody.record(tx, kind=EventKind.REGISTRY, actor=actor,
                                       data={"serial": serial, "officer": None,
                                             "active": False})
        tx.deactivate_recorder(serial, ledger_seq=entry.seq)
