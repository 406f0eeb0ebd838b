"""A commit not waited onto the disk (a copy's start) is still a commit, and leaves every
later commit on the same pooled connection waited onto the disk (SQLite); PostgreSQL waits for
every commit."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ingestd.catalog.db import open_catalog

INSERT = sa.text("INSERT INTO keys (key_id, station, public_key, created_at) "
                 "VALUES (:k, 's', 'aa', '2026-01-01T00:00:00Z')")
COUNT = sa.text("SELECT count(*) FROM keys")


def test_sqlite_a_write_not_waited_for_commits_and_the_next_waits_again(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    sync = sa.text("PRAGMA synchronous")
    try:
        for round_ in range(3):  # the pool hands the same connection back each time
            with catalog.write(durable=False) as tx:
                assert tx.conn.execute(sync).scalar_one() == 1  # NORMAL
                tx.conn.execute(INSERT, {"k": f"quick-{round_}"})
            with catalog.write() as tx:
                assert tx.conn.execute(sync).scalar_one() == 2  # FULL
                tx.conn.execute(INSERT, {"k": f"durable-{round_}"})
        with catalog.read() as tx:
            assert tx.conn.execute(COUNT).scalar_one() == 6
    finally:
        catalog.dispose()


def test_sqlite_a_failed_write_not_waited_for_leaves_the_next_one_waited(
        tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        try:
            with catalog.write(durable=False) as tx:
                tx.conn.execute(INSERT, {"k": "lost"})
                raise RuntimeError("the copy failed")
        except RuntimeError:
            pass
        with catalog.write() as tx:
            assert tx.conn.execute(sa.text("PRAGMA synchronous")).scalar_one() == 2
            assert tx.conn.execute(COUNT).scalar_one() == 0  # rolled back, not half-kept
    finally:
        catalog.dispose()


def test_postgresql_waits_for_the_disk_even_for_a_write_that_need_not(
        postgres_url: str) -> None:
    """A server can fail alone while the station writes on: a row it lost would leave the
    rows written after it naming nothing. Every commit there is waited for."""
    # The test server runs with it off, for speed: every connection of this catalog sets it on.
    sep = "&" if "?" in postgres_url else "?"
    catalog = open_catalog(f"{postgres_url}{sep}options=-csynchronous_commit%3Don")
    show = sa.text("SHOW synchronous_commit")
    try:
        with catalog.write(durable=False) as tx:
            assert tx.conn.execute(show).scalar_one() == "on"
            tx.conn.execute(INSERT, {"k": "sync-quick"})
        with catalog.read() as tx:
            assert tx.conn.execute(COUNT).scalar_one() == 1
    finally:
        catalog.dispose()
