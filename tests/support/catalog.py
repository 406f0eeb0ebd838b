"""The catalog, from the tests' side, in one place.

* **Reading** what no command shows (dock sessions in full, every acquisition, replica rows,
  the history of job runs, the ledger as the catalog holds it), through the catalog's own
  transactions (``Catalog.read()`` and the methods of its ``Tx``), on a catalog opened
  read-only. Each reader returns plain values (str, int, bool, None, and dicts and lists of
  them; times as the RFC 3339 UTC text the catalog keeps), whatever the ``Tx`` methods hand
  out: when those change, this module is adapted and the tests are not. Where a command does
  show a fact (``show``, ``items``, ``status``, ``devices list``, ``keys show``, ``ledger
  verify``, all with ``--json``), a test asks the command instead.
* **Tampering**: an insider who changes the catalog behind ingestd's back with ``sqlite3``
  (the attack tests). The tables and columns are named here, not in the tests.
* **Bulk rows** for listings at a bureau's scale, and the **file** itself for damage tests.
* **Raw rows** (:func:`raw_rows`) only for tests of migrations and of the schema, which look
  at a catalog ingestd's own queries cannot read yet (or at the schema itself).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingestd import config as config_mod
from ingestd.catalog import schema
from ingestd.catalog.db import open_catalog, sqlite_path
from ingestd.catalog.queries import Tx
from ingestd.config import Settings
from ingestd.domain.canonical import format_time
from ingestd.domain.models import LedgerEntry
from ingestd.integrity.ledger import to_json
from ingestd.integrity.signing import StationKey
from ingestd.targets.factory import target_locations

#: More rows than any test makes: "all of them" for queries that take a limit.
ALL = 1_000_000_000

# -- reading -----------------------------------------------------------------------------------


@contextmanager
def reading(home: Path) -> Iterator[tuple[Tx, Settings]]:
    """One read transaction on the home's catalog, opened read-only (nothing is written, not
    even while a daemon or another process works on it), with the home's settings."""
    settings = config_mod.load(home / config_mod.CONFIG_NAME)
    catalog = open_catalog(settings.catalog_url, migrate=False, read_only=True)
    try:
        with catalog.read() as tx:
            yield tx, settings
    finally:
        catalog.dispose()


def _get(record: Any, name: str) -> Any:
    """A field of what a ``Tx`` method returned: a mapping from the database, or a record."""
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def _text(value: Any) -> Any:
    """A time as the catalog keeps it (RFC 3339 UTC text); anything else as it is."""
    return format_time(value) if isinstance(value, datetime) else value


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _doc(value: Any) -> Any:
    """A JSON document kept in the catalog, as Python values."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _pick(record: Any, fields: Iterable[str], *, times: Iterable[str] = (),
          flags: Iterable[str] = (), docs: Iterable[str] = ()) -> dict[str, Any]:
    out = {name: _get(record, name) for name in fields}
    for name in times:
        out[name] = _text(out[name])
    for name in flags:
        out[name] = _flag(out[name])
    for name in docs:
        out[name] = _doc(out[name])
    return out


_SESSION = ("id", "serial", "station", "source", "mountpoint", "state", "docked_at",
            "finished_at", "officer", "actor", "health", "files_seen", "files_new",
            "files_known", "files_failed", "files_skipped", "skipped", "bytes_copied", "error",
            "ledger_seq", "pid", "host")


def dock_sessions(home: Path, serial: str | None = None) -> list[dict[str, Any]]:
    """The station's dock sessions, oldest first (of one recorder, if ``serial``), with their
    health and what they did not take as documents."""
    with reading(home) as (tx, settings):
        rows = [tx.session(s.id) for s in reversed(tx.recent_sessions(ALL,
                                                                     station=settings.station))]
        found = [_pick(r, _SESSION, times=("docked_at", "finished_at"),
                       docs=("health", "skipped")) for r in rows if r is not None]
    return [s for s in found if serial is None or s["serial"] == serial]


_ACQUISITION = ("id", "session_id", "serial", "path", "path_hex", "size", "mtime_ns", "state",
                "item", "started_at", "finished_at", "error", "wiped_at", "ledger_seq")


def acquisitions(home: Path, *, session_id: int | None = None, path: str | None = None,
                 state: str | None = None, item: str | None = None) -> list[dict[str, Any]]:
    """Every file a dock read or began to read (those that failed too), in order, or those
    of one session, path, state or item."""
    # No Tx method lists acquisitions whatever their item (a failed one has none): read the
    # table itself, here alone.
    table = schema.acquisitions
    query = select(table).order_by(table.c.id)
    for column, value in (("session_id", session_id), ("path", path), ("state", state),
                          ("item", item)):
        if value is not None:
            query = query.where(table.c[column] == value)
    with reading(home) as (tx, _):
        rows = tx.conn.execute(query).mappings().all()
        return [_pick(r, _ACQUISITION, times=("started_at", "finished_at", "wiped_at"))
                for r in rows]


def item_shas(home: Path) -> list[str]:
    """Every item in the catalog (of every station sharing it), in listing order."""
    with reading(home) as (tx, _):
        return [listed.item.sha256 for listed in tx.search_items()]


_REPLICA = ("item", "target", "state", "key", "size", "remote_sha256", "retain_until", "hold",
            "attempts", "last_error", "updated_at", "verified_at", "ledger_seq", "proven_at",
            "location", "rewrite", "bad_versions")


def replicas(home: Path, item: str | None = None) -> list[dict[str, Any]]:
    """The off-site copies the catalog records (of one item, if ``item``), by item and target.
    They are in the catalog of every station that shares it."""
    with reading(home) as (tx, _):
        shas = [item] if item is not None else [listed.item.sha256
                                                for listed in tx.search_items()]
        out = []
        for sha in sorted(shas):
            by_target = tx.replicas_of(sha)
            for target in sorted(by_target):
                row = _pick(by_target[target], _REPLICA, flags=("hold", "rewrite"),
                            times=("retain_until", "updated_at", "verified_at", "proven_at"))
                if not isinstance(row["bad_versions"], str):  # the catalog keeps them as text
                    row["bad_versions"] = " ".join(row["bad_versions"])
                out.append(row)
        return out


def job_runs(home: Path, job: str) -> list[dict[str, Any]]:
    """Every run of a scheduled job at this station, oldest first (``status`` shows the last
    of each)."""
    # Only the last run of each job has a Tx method (status): the history is read here alone.
    table = schema.job_runs
    with reading(home) as (tx, settings):
        rows = tx.conn.execute(
            select(table).where(table.c.job == job, table.c.station == settings.station)
            .order_by(table.c.id)).mappings().all()
        return [_pick(r, ("id", "job", "station", "started_at", "finished_at", "ok", "summary"),
                      times=("started_at", "finished_at"), flags=("ok",)) for r in rows]


def target_identities(home: Path) -> dict[str, str | None]:
    """For each configured target, the identity recorded for it at the place it has now
    (None: the place was never used)."""
    with reading(home) as (tx, settings):
        return {name: tx.target_identity(name, location)
                for name, location in target_locations(settings).items()}


def ledger_entries(home: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The custody ledger as the catalog holds it (of one ``kind``, if given), each entry in
    the form of its line in the mirror, ``ledger.jsonl`` (``integrity.ledger.from_json``
    makes it an entry again)."""
    with reading(home) as (tx, _):
        entries = [to_json(e) for e in tx.iter_entries(kinds=None if kind is None else [kind])]
    return entries


def ledger_entry(home: Path, seq: int) -> dict[str, Any]:
    """One entry as the catalog holds it, read even when others beside it cannot be."""
    with reading(home) as (tx, _):
        entry = tx.entry_to_check(seq)
    assert isinstance(entry, LedgerEntry), f"entry {seq} cannot be read: {entry}"
    return to_json(entry)


# -- tampering: an insider with sqlite3 --------------------------------------------------------


def _catalog_file(home: Path) -> Path:
    settings = config_mod.load(home / config_mod.CONFIG_NAME)
    path = sqlite_path(settings.catalog_url)
    assert path is not None, "these tests change a SQLite catalog"
    return path


def tamper(home: Path, sql: str, *params: object) -> int:
    """Run one statement on the catalog file behind ingestd's back; the rows it changed."""
    with closing(sqlite3.connect(_catalog_file(home))) as con:
        count = con.execute(sql, params).rowcount
        con.commit()
    return count


def _set(columns: Mapping[str, object]) -> tuple[str, list[object]]:
    assert columns, "nothing to change"
    return ", ".join(f'"{name}" = ?' for name in columns), list(columns.values())


def forge_item(home: Path, sha: str, **columns: object) -> int:
    """Change an item's row (``size=...``, ``officer=...``, ``local_present=False``...)."""
    sets, values = _set(columns)
    return tamper(home, f"UPDATE items SET {sets} WHERE sha256 = ?", *values, sha)


def forge_replicas(home: Path, item: str | None = None, **columns: object) -> int:
    """Change the replica rows of one item, or of every item."""
    sets, values = _set(columns)
    if item is None:
        return tamper(home, f"UPDATE replicas SET {sets}", *values)
    return tamper(home, f"UPDATE replicas SET {sets} WHERE item = ?", *values, item)


def forge_labels(home: Path, **columns: object) -> int:
    """Change every label row (``case_no=...``, ``party=...``)."""
    sets, values = _set(columns)
    return tamper(home, f"UPDATE labels SET {sets}", *values)


def forge_keys(home: Path, **columns: object) -> int:
    """Change every row of the catalog's cache of keys (``public_key=...``)."""
    sets, values = _set(columns)
    return tamper(home, f"UPDATE keys SET {sets}", *values)


def forge_entry(home: Path, seq: int, **columns: object) -> int:
    """Change one ledger row in the catalog (``actor=...``, or ``data={...}``), without
    sealing it again."""
    if isinstance(columns.get("data"), dict):
        columns["data"] = json.dumps(columns["data"], sort_keys=True)
    sets, values = _set(columns)
    return tamper(home, f"UPDATE ledger SET {sets} WHERE seq = ?", *values, seq)


def write_entries(home: Path, entries: Sequence[LedgerEntry], *, only: bool = False) -> None:
    """Put ledger entries into the catalog (over any of the same sequence number), as a
    forger who sealed them would; with ``only``, nothing else is left in its ledger. The
    mirror is left as it is."""
    rows = [(e.seq, to_json(e)["at"], e.station, e.actor, e.kind, e.item,
             json.dumps(e.data, sort_keys=True, ensure_ascii=False), e.prev_hash, e.key_id,
             e.entry_hash, e.signature) for e in entries]
    with closing(sqlite3.connect(_catalog_file(home))) as con:
        if only:
            con.execute("DELETE FROM ledger")
        else:
            con.executemany("DELETE FROM ledger WHERE seq = ?", [(r[0],) for r in rows])
        con.executemany(
            "INSERT INTO ledger (seq, at, station, actor, kind, item, data, prev_hash, key_id, "
            "entry_hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.commit()


def delete_entries(home: Path, *, seq: int | None = None, after: int | None = None) -> int:
    """Delete one ledger row from the catalog (``seq``), or every one after ``after``."""
    if seq is not None:
        return tamper(home, "DELETE FROM ledger WHERE seq = ?", seq)
    assert after is not None
    return tamper(home, "DELETE FROM ledger WHERE seq > ?", after)


def delete_item(home: Path, sha: str) -> int:
    """Delete an item's row (its flags first: the catalog refuses it otherwise)."""
    tamper(home, "DELETE FROM flags WHERE item = ?", sha)
    return tamper(home, "DELETE FROM items WHERE sha256 = ?", sha)


def delete_flags(home: Path, item: str) -> int:
    return tamper(home, "DELETE FROM flags WHERE item = ?", item)


def delete_labels(home: Path) -> int:
    return tamper(home, "DELETE FROM labels")


def delete_justifications(home: Path) -> int:
    return tamper(home, "DELETE FROM justifications")


def forge_spot_reviews(home: Path, **columns: object) -> int:
    """Change every spot-check review row (``result=...``, ``note=...``, ``by=...``)."""
    sets, values = _set(columns)
    return tamper(home, f"UPDATE spot_reviews SET {sets}", *values)


def forge_spot_checks(home: Path, **columns: object) -> int:
    """Change every spot-check row (``result=...``, ``decode=...``, ``officer=...``)."""
    sets, values = _set(columns)
    return tamper(home, f"UPDATE spot_checks SET {sets}", *values)


def delete_spot_reviews(home: Path) -> int:
    return tamper(home, "DELETE FROM spot_reviews")


def delete_acquisition(home: Path, acquisition_id: int) -> int:
    return tamper(home, "DELETE FROM acquisitions WHERE id = ?", acquisition_id)


def delete_replicas(home: Path, *, item: str | None = None,
                    backed_after: int | None = None) -> int:
    """Delete the replica rows of one item, or those backed by entries after ``backed_after``."""
    if item is not None:
        return tamper(home, "DELETE FROM replicas WHERE item = ?", item)
    assert backed_after is not None
    return tamper(home, "DELETE FROM replicas WHERE ledger_seq > ?", backed_after)


def insert_label(home: Path, item: str, *, ledger_seq: int, case_no: str, party: str,
                 officer: str, by: str, at: str, categories: Sequence[str] = ()) -> int:
    """A label slipped into the catalog, naming whatever entry the forger chose."""
    return tamper(home, 'INSERT INTO labels (item, case_no, party, officer, categories, "by", '
                  "at, ledger_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", item, case_no, party,
                  officer, json.dumps(list(categories)), by, at, ledger_seq)


def insert_key(home: Path, key: StationKey, *, station: str = "station-01",
               created_at: str = "2026-01-01T00:00:00.000000Z") -> int:
    """A key of the forger's own, added to the catalog's cache of keys."""
    return tamper(home, "INSERT INTO keys (key_id, station, public_key, created_at) "
                  "VALUES (?, ?, ?, ?)", key.key_id, station, key.public.hex, created_at)


# -- the file --------------------------------------------------------------------------------


def checkpoint_wal(home: Path) -> None:
    """Everything in the catalog's main file, nothing left in its write-ahead log."""
    with closing(sqlite3.connect(_catalog_file(home))) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def root_page(catalog: Path, table: str) -> int:
    """The page of the catalog file where a table's b-tree starts."""
    with closing(sqlite3.connect(catalog)) as con:
        (page,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                              (table,)).fetchone()
    return int(page)


def raw_rows(home: Path, sql: str, *params: object) -> list[dict[str, Any]]:
    """Rows as ``sqlite3`` gives them: only for tests of migrations and of the schema (a
    catalog at an older schema, which ingestd's own queries do not read)."""
    with closing(sqlite3.connect(_catalog_file(home))) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params)]


# -- many items at once ----------------------------------------------------------------------

#: When the first bulk item was recorded.
BULK_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def add_items(home: Path, count: int, *, flag_every: int = 10, justify_every: int = 30,
              label_every: int = 7) -> list[str]:
    """Add ``count`` items straight into the home's catalog, for listings at a bureau's scale
    (100,000 items), where ingesting real clips would take hours: every ``flag_every``-th
    flagged late_ingest, every ``justify_every``-th of those justified, every
    ``label_every``-th labelled. The rows are shaped as ingest writes them; no ledger entry
    backs them (``ledger verify`` would say so), which listings do not read. Returns their
    SHA-256s in listing order."""
    shas = []
    with closing(sqlite3.connect(_catalog_file(home))) as con:
        base = con.execute("SELECT count(*) FROM items").fetchone()[0]
        item_rows, flag_rows, just_rows, label_rows = [], [], [], []
        for i in range(base, base + count):
            sha = hashlib.sha256(b"bulk item %d" % i).hexdigest()
            start = BULK_T0 + timedelta(minutes=i)
            t = format_time(start)
            end = format_time(start + timedelta(minutes=1))
            stored = format_time(start + timedelta(hours=2))
            item_rows.append((sha, 1_000_000 + i, stored, "station-01", f"BWC-{i % 40:04d}",
                              f"Officer {i % 40}", f"DCIM/100MEDIA/{i:08d}.MP4", t, end,
                              "media", 60.0, "{}", end, end, end, "routine", None, 0, 1,
                              i + 1))
            shas.append(sha)
            if i % flag_every == 0:
                flag_rows.append((sha, "late_ingest", stored, "stored 26 h after recording",
                                  i + 1))
                if i % justify_every == 0:
                    just_rows.append((sha, "late_ingest", "remote duty", "supervisor", stored,
                                      i + 1))
            if i % label_every == 0:
                label_rows.append((sha, f"C-{i % 500}", "Li Si", f"Officer {i % 40}", "[]",
                                   "clerk", stored, i + 1))
        con.executemany(
            "INSERT INTO items (sha256, size, stored_at, station, recorder, officer, "
            "original_name, recorded_start, recorded_end, time_source, duration, media, "
            "ingest_deadline, label_deadline, replication_deadline, retention_class, "
            "retain_until, hold, local_present, ledger_seq) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", item_rows)
        con.executemany("INSERT INTO flags (item, flag, set_at, detail, ledger_seq) "
                        "VALUES (?,?,?,?,?)", flag_rows)
        con.executemany('INSERT INTO justifications (item, flag, reason, "by", at, ledger_seq) '
                        "VALUES (?,?,?,?,?,?)", just_rows)
        con.executemany('INSERT INTO labels (item, case_no, party, officer, categories, "by", '
                        "at, ledger_seq) VALUES (?,?,?,?,?,?,?,?)", label_rows)
        con.commit()
    return shas
