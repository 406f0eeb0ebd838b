"""Engine, connection discipline and migrations.

SQLite (WAL, synchronous FULL) is the embedded default; a PostgreSQL URL puts many stations on one
catalog. Writes go through :meth:`Catalog.write`, and there is one writer at a time on both:
SQLite takes its write lock at BEGIN (``BEGIN IMMEDIATE``), so two writers never deadlock
upgrading a read lock; PostgreSQL takes a transaction-scoped advisory lock first thing. Every
write transaction therefore reads what all earlier ones committed, so "is this item new?"
and "what is the ledger's head?" have one answer across processes and stations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..domain.text import redact_url, redact_urls
from ..errors import CatalogError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")

#: An arbitrary constant: the PostgreSQL advisory lock that serialises write transactions.
WRITE_LOCK = 0x1D6E57D
#: How long a writer waits for another's transaction (SQLite's busy_timeout, PostgreSQL's
#: lock_timeout).
WRITE_WAIT_MS = 60_000

#: The newest migration. Every command checks the catalog is at it without loading Alembic
#: (a unit test keeps this equal to the migrations' head).
SCHEMA_HEAD = "0006"


def _why(exc: BaseException | None) -> str:
    """A driver's error for a message: it may quote the URL, password included."""
    return redact_urls(str(exc))


def _alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={WRITE_WAIT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("ingestd_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Catalog:
    """A handle on the catalog database. Thread-safe: each call takes its own connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite:
                self.engine = _sqlite_engine(url)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise CatalogError(f"cannot use catalog {self.safe_url}: {_why(exc)}") from None
        # SQLite allows one writer; serialising writers in-process avoids busy waits.
        self._write_lock = threading.RLock() if self.is_sqlite else None

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction. With ``snapshot``, every statement in it sees the catalog as of
        its first one (SQLite does so anyway; PostgreSQL needs REPEATABLE READ)."""
        try:
            with self.engine.connect() as raw:
                conn = raw
                if snapshot and not self.is_sqlite:
                    conn = raw.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise CatalogError(f"catalog {self.safe_url}: {_why(exc.orig)}") from None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(ingestd_write=True)
                with conn.begin():
                    if not self.is_sqlite:
                        conn.execute(text(f"SET LOCAL lock_timeout = {WRITE_WAIT_MS}"))
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                    yield conn
        except OperationalError as exc:
            raise CatalogError(f"catalog {self.safe_url}: {_why(exc.orig)}") from None
        finally:
            if lock is not None:
                lock.release()

    # -- migrations -------------------------------------------------------------------------

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(_alembic_config(self.url)).get_current_head()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError:
                return None  # no catalog here yet

    def upgrade(self) -> None:
        from alembic import command

        cfg = _alembic_config(self.url)
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(ingestd_write=True)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot migrate catalog {self.safe_url}: {_why(exc)}") from None

    def check_current(self) -> None:
        try:
            current = self.current_revision()
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot open catalog {self.safe_url}: {_why(exc)}") from None
        head = SCHEMA_HEAD
        if current != head:
            raise CatalogError(
                f"catalog {self.safe_url} is at schema {current or 'none'}, this ingestd needs "
                f"{head}: run `ingestd init`, which migrates it (nothing stored is changed)"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def open_catalog(url: str, *, migrate: bool = True) -> Catalog:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(url)
    if migrate:
        catalog.upgrade()
    else:
        catalog.check_current()
    return catalog
