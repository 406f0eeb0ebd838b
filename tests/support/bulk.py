"""Many items at once, written straight into a station's SQLite catalog: for listings at a
bureau's scale (100,000 items), where ingesting real clips would take hours. The rows are
shaped as ingest writes them; they are not backed by ledger entries (``ledger verify`` would
say so), which listings do not read."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingestd.domain.canonical import format_time

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def add_items(home: Path, count: int, *, flag_every: int = 10, justify_every: int = 30,
              label_every: int = 7) -> list[str]:
    """Add ``count`` items to the home's catalog: every ``flag_every``-th flagged late_ingest,
    every ``justify_every``-th of those justified, every ``label_every``-th labelled.
    Returns their SHA-256s in listing order."""
    con = sqlite3.connect(home / "catalog.sqlite")
    shas = []
    try:
        base = con.execute("SELECT count(*) FROM items").fetchone()[0]
        item_rows, flag_rows, just_rows, label_rows = [], [], [], []
        for i in range(base, base + count):
            sha = hashlib.sha256(b"bulk item %d" % i).hexdigest()
            start = T0 + timedelta(minutes=i)
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
    finally:
        con.close()
    return shas
