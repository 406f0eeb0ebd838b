"""A commit not waited onto the disk (a copy's start) is still a commit, and leaves every
later commit on the same pooled connection waited onto the disk, on SQLite and PostgreSQL."""

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


def test_postgresql_a_write_not_waited_for_is_only_that_transaction(postgres_url: str) -> None:
    catalog = open_catalog(postgres_url)
    show = sa.text("SHOW synchronous_commit")
    try:
        with catalog.write() as tx:
            # The server's own setting (a test server may run with it off for speed).
            configured = tx.conn.execute(show).scalar_one()
            tx.conn.execute(sa.text("SET synchronous_commit = on"))  # this session's
            tx.conn.execute(sa.text("DELETE FROM keys WHERE key_id LIKE 'sync-%'"))
        with catalog.write(durable=False) as tx:
            assert tx.conn.execute(show).scalar_one() == "off"
            tx.conn.execute(INSERT, {"k": "sync-quick"})
        with catalog.write() as tx:
            assert tx.conn.execute(show).scalar_one() == "on", configured
            tx.conn.execute(INSERT, {"k": "sync-durable"})
        with catalog.read() as tx:
            found = tx.conn.execute(sa.text(
                "SELECT key_id FROM keys WHERE key_id LIKE 'sync-%' ORDER BY key_id")).scalars()
            assert list(found) == ["sync-durable", "sync-quick"]
    finally:
        catalog.dispose()
