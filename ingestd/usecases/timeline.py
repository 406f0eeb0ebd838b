"""Items' custody timelines, read from the catalog and the ledger, each entry's hash and
signature checked against the keys the ledger proves: what the custody report of an export
shows, and what an item page may show."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo

from ..domain.canonical import canonical_bytes, sha256_hex
from ..domain.models import LedgerEntry, body_of
from ..domain.timeline import ItemTimeline, build_timeline
from ..errors import NotFound
from ..integrity.ledger import KeyChain
from ..ports import CatalogTx
from ..station import Station


def item_timelines(station: Station, shas: Iterable[str], *,
                   tz: tzinfo | None = None) -> Iterator[ItemTimeline]:
    """The timeline of each item of ``shas`` (full SHA-256s), in that order, one at a time:
    each is read in a read transaction of its own and handed out after it ends, so that any
    number of items is written out in the memory of one. Times are shown in ``tz`` (default:
    the station's time zone). Raises NotFound for an item the catalog does not hold."""
    tz = tz or station.settings.station_tz
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)  # proven by the chain, not the catalog
    for sha in shas:
        with station.catalog.read() as tx:
            timeline = item_timeline(tx, sha, keys=keys, tz=tz)
        yield timeline


def item_timeline(tx: CatalogTx, sha: str, *, keys: KeyChain, tz: tzinfo) -> ItemTimeline:
    """One item's timeline: its entries, the ``docked`` entry of each dock session that read
    it and the ``exported`` entry of each package that holds it (those name their items in
    their data, not as their one item), each with its signature checked against ``keys``."""
    item = tx.item(sha)
    if item is None:
        raise NotFound(f"no item {sha}")
    entries = list(tx.iter_entries(item=sha))
    sessions = {docked.acquisition.session_id for docked in tx.acquisitions_of(sha)}
    for session_id in sorted(sessions):
        session = tx.session(session_id)
        if session is None or session.ledger_seq is None:
            continue
        entry = tx.entry_to_check(session.ledger_seq)
        if isinstance(entry, LedgerEntry):
            entries.append(entry)
    entries.extend(tx.export_entries([sha]))
    return build_timeline(item, entries, tz=tz, label=tx.current_label(sha),
                          signatures={e.seq: signed(e, keys) for e in entries})


def signed(entry: LedgerEntry, keys: KeyChain) -> bool:
    """Is ``entry`` unaltered (its body hashes to its hash) and signed by a key the ledger
    vouches for?"""
    body = canonical_bytes(body_of(entry))
    return sha256_hex(body) == entry.entry_hash and not keys.signature_problems(entry, body)
