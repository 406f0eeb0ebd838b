"""Flags: set once on an item, each with its signed ledger entry, and never taken away (what
resolved one is read from the ledger). Every use case that flags an item does it here."""

from __future__ import annotations

import logging
from datetime import datetime

from ..domain.flags import Flag
from ..domain.models import EventKind
from ..ports import CatalogTx
from ..station import Station

# Flags were logged by ingest's logger, wherever they were set: the JSON log's ``event``
# (``ingest``), which a collector watching for flags matches, stays what it was.
log = logging.getLogger("ingestd.usecases.ingest")


def set_flag(station: Station, tx: CatalogTx, sha: str, flag: Flag, *, at: datetime,
             actor: str, detail: str) -> bool:
    """Set a flag once, in ``tx`` (a custody transaction); returns False when it was
    already set."""
    if tx.has_flag(sha, flag):
        return False
    entry = station.custody.record(tx, kind=EventKind.FLAGGED, actor=actor, item=sha,
                                   data={"flag": str(flag), "detail": detail}, at=at)
    tx.insert_flag(item=sha, flag=flag, set_at=entry.at, detail=detail, ledger_seq=entry.seq)
    log.warning("item %s flagged %s: %s", sha[:12], flag, detail)
    return True
