"""Engine, connection discipline and migrations.

SQLite (WAL, synchronous FULL) is the embedded default; a PostgreSQL URL puts many stations on one
catalog. Writes go through :meth:`Catalog.write`, and there is one writer at a time on both:
SQLite takes its write lock at BEGIN (``BEGIN IMMEDIATE``), so two writers never deadlock
upgrading a read lock; PostgreSQL takes a transaction-scoped advisory lock first thing. Every
write transaction therefore reads what all earlier ones committed, so "is this item new?"
and "what is the ledger's head?" have one answer across processes and stations.

A catalog opened ``read_only`` (the reporting commands) never writes: SQLite opens it with
``mode=ro``, or ``immutable=1`` where its folder or disk cannot take the shared-memory file
(a read-only mount, a full disk). Whatever the driver raises about the file itself (damaged
pages, a file that is not a database, a disk that fails) becomes a :class:`CatalogError`
naming the file and what to do.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..domain.text import redact_url, redact_urls
from ..errors import CatalogError
from ..modes import make_dir
from ..ports import CatalogTx
from .queries import Tx

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
SCHEMA_HEAD = "0019"


def _why(exc: BaseException | None) -> str:
    """A driver's error for a message: it may quote the URL, password included."""
    return redact_urls(str(exc))


def _alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: The catalog file's mode: it holds party names and case numbers. SQLite gives its -wal and
#: -shm files the main file's mode.
CATALOG_MODE = 0o640

class CatalogFault(StrEnum):
    """What a fault of the catalog file itself means for the operator."""

    DAMAGED = "damaged"  # its pages are not a sound database
    FULL = "full"  # its file system is full
    UNUSABLE = "unusable"  # the file, its folder or its disk cannot be used as asked


#: SQLite's primary result codes that say the file itself is damaged...
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
#: ... or that the file, its folder or its disk cannot be used as asked.
_UNUSABLE_CODES = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                             sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM})


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for a PostgreSQL one, or SQLite in memory)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_catalog_file(path: Path) -> None:
    """Create an empty catalog file with :data:`CATALOG_MODE` whatever the umask, before SQLite
    creates it with 0644 less the umask; tighten an existing one (and its -wal, -shm)."""
    make_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, CATALOG_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if name.stat().st_mode & 0o777 & ~CATALOG_MODE:
                os.chmod(name, CATALOG_MODE)
        except FileNotFoundError:
            continue


def damage_advice(where: str, problem: str, *, fault: CatalogFault) -> str:
    """The message for a fault of the catalog file itself (``problem``: SQLite's words, or
    what ``quick_check`` found), with what to do."""
    if fault == CatalogFault.DAMAGED:
        return (f"catalog {where} is damaged ({problem}): stop ingestd, keep this file for "
                "examination, restore the catalog from its latest backup, then run `ingestd "
                "ledger verify --offsite` to compare it with the ledger mirror (ledger.jsonl) "
                "and the signed off-site checkpoints")
    if fault == CatalogFault.FULL:
        return (f"catalog {where}: {problem}: free space on its file system; nothing was "
                "changed by the command that failed")
    return (f"catalog {where} cannot be used ({problem}): check that the file and its folder "
            "exist, are readable (and writable, for a command that changes anything) by this "
            "user, and that the disk is mounted and healthy")


def file_fault(exc: BaseException) -> CatalogFault | None:
    """What a driver error says of the catalog file itself, by SQLite's result code (None:
    nothing; constraint and schema errors, a busy database, are the caller's)."""
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(
            exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes add high bits
    if primary in _DAMAGED_CODES:
        return CatalogFault.DAMAGED
    if primary == sqlite3.SQLITE_FULL:
        return CatalogFault.FULL
    if primary in _UNUSABLE_CODES:
        return CatalogFault.UNUSABLE
    if isinstance(exc, sqlite3.OperationalError):
        return None
    return CatalogFault.UNUSABLE  # a plain DatabaseError: the file is at fault, somehow


def _sqlite_sync(conn: Connection, level: str) -> None:
    conn.connection.driver_connection.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]


def _restore_full_sync(conn: Connection) -> None:
    """Back to synchronous=FULL before the connection goes back to the pool; one that cannot
    be put back is thrown away, so no later commit runs on it unsynced."""
    try:
        _sqlite_sync(conn, "FULL")
    except Exception:  # noqa: BLE001 - the original error, if any, is the one raised
        conn.invalidate()


def _sqlite_engine(url: str, *, read_only: bool) -> Engine:
    path = sqlite_path(url)
    where = str(path) if path is not None else url
    if read_only and path is not None:
        # Checked per connection: a folder that becomes writable again is used normally.
        def connect() -> sqlite3.Connection:
            return _connect_read_only(path)

        engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    else:
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={WRITE_WAIT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("ingestd_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # At connect and mid-query alike: a damaged or unusable file is named, never a
        # traceback. Constraint and schema errors stay the driver's, for callers that expect
        # them.
        exc = context.original_exception
        fault = file_fault(exc)
        if fault is not None:
            raise CatalogError(damage_advice(where, str(exc), fault=fault)) from exc

    return engine


def _no_side_files_here(folder: Path) -> bool:
    """Whether SQLite cannot make its -wal and -shm files in ``folder``: a read-only mount, a
    full disk, or a folder this user may not write. Then no ingestd can write there either."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return True
    return bool(fs.f_flag & os.ST_RDONLY) or fs.f_bavail == 0 or not os.access(folder, os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open for reading only. ``mode=ro`` sees what a live writer committed to the WAL, but
    needs the -shm file, which a read-only folder or a full disk cannot give when no writer
    has it open: then ``immutable=1``, which reads the main file alone (no writer can have
    left anything in a WAL that does not exist)."""
    if not path.exists():
        missing = sqlite3.OperationalError("unable to open database file (it does not exist)")
        missing.sqlite_errorcode = sqlite3.SQLITE_CANTOPEN  # as SQLite would say it
        raise missing
    base = "file:" + quote(str(path.resolve()))
    kw: dict[str, Any] = {"uri": True, "timeout": 60, "check_same_thread": False}
    conn: sqlite3.Connection = sqlite3.connect(base + "?mode=ro", **kw)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise  # committed data waits in the WAL: reading the main file alone would lie
        if not _no_side_files_here(path.parent):
            # Where a writer could work, the main file alone may change under the reader:
            # the error is the real one.
            raise
        log.debug("catalog %s: read-only open failed (%s); opening it immutable", path, exc)
        conn = sqlite3.connect(base + "?mode=ro&immutable=1", **kw)
    return conn


class Catalog:
    """A handle on the catalog database. Thread-safe: each call takes its own connection."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.read_only = read_only
        try:
            if self.is_sqlite:
                self.engine = _sqlite_engine(url, read_only=read_only)
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
    def read(self, *, snapshot: bool = False) -> Iterator[CatalogTx]:
        """A read transaction. With ``snapshot``, every statement in it sees the catalog as of
        its first one (SQLite does so anyway; PostgreSQL needs REPEATABLE READ)."""
        try:
            with self.engine.connect() as raw:
                conn = raw
                if snapshot and not self.is_sqlite:
                    conn = raw.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield Tx(conn)
        except OperationalError as exc:
            raise CatalogError(f"catalog {self.safe_url}: {_why(exc.orig)}") from None

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[CatalogTx]:
        """A write transaction, one writer at a time. ``durable=False`` is for a row that may
        be lost to a power cut without harm (a copy started): on SQLite its commit does not
        wait for the disk. It is still atomic, never reordered, and made durable by the next
        durable commit, which writes everything before it; a power cut takes the station and
        its catalog down together. A PostgreSQL server can fail alone, the station writing
        on without the row: there every commit waits for the disk."""
        if self.read_only:
            raise CatalogError(f"catalog {self.safe_url} was opened read-only: this command "
                               "cannot change it")
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(ingestd_write=True)
                if self.is_sqlite and not durable:
                    # On the driver's connection: through SQLAlchemy it would begin first,
                    # and SQLite takes no change of safety level inside a transaction.
                    _sqlite_sync(raw, "NORMAL")
                try:
                    with conn.begin():
                        if not self.is_sqlite:
                            conn.execute(text(f"SET LOCAL lock_timeout = {WRITE_WAIT_MS}"))
                            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                         {"k": WRITE_LOCK})
                        yield Tx(conn, writing=True)
                finally:
                    if self.is_sqlite and not durable:
                        _restore_full_sync(raw)
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

    def damage(self) -> list[str]:
        """What SQLite's ``quick_check`` finds wrong in the catalog's pages (nothing: [])."""
        if not self.is_sqlite:
            return []
        try:
            with self.engine.connect() as conn:
                rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check")]
        except CatalogError as exc:
            return [str(exc.__cause__ or exc)]
        return [] if rows == ["ok"] else rows

    def dispose(self) -> None:
        self.engine.dispose()


def open_catalog(url: str, *, migrate: bool = True, read_only: bool = False) -> Catalog:
    """Open the catalog; ``migrate`` (what ``init`` does) checks its pages first and brings
    its schema to the head, otherwise it must be at the head already."""
    path = sqlite_path(url)
    if path is not None and not read_only:
        create_catalog_file(path)
    catalog = Catalog(url, read_only=read_only)
    if migrate:
        problems = catalog.damage()
        if problems:
            raise CatalogError(damage_advice(catalog.safe_url, "; ".join(problems[:5]),
                                             fault=CatalogFault.DAMAGED))
        catalog.upgrade()
    else:
        catalog.check_current()
    return catalog
