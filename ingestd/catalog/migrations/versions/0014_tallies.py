"""tallies kept by triggers, for metrics that must not scan the items

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-01 16:00:00

Every writer goes through SQL, so a trigger on each table keeps its tally in the transaction
that changes the row: ``/metrics`` reads a few dozen rows however many items there are. The
statements are the same on SQLite and PostgreSQL (an upsert, ``CASE``, boolean columns in a
condition); only the wrapping differs: an SQLite trigger holds them, a PostgreSQL trigger calls
a PL/pgSQL function that does.

What each tally counts (``station``, ``name``, ``label``: ``n``, ``bytes``, ``at``):

* ``local`` / ``evicted``: the station's items whose bytes are (are not) in the local store,
  and their bytes;
* ``ingested``: every item the station stored, and its bytes; never lowered (only raised by a
  new item);
* ``flagged`` by flag: the station's items carrying it;
* ``replicated`` by target: copies that became verified (a copy written again after a
  mismatch counts again) and their bytes; ``at`` the newest ``verified_at``;
* ``verified_local`` by target: verified copies of items still in the local store (the
  replication queue is ``local`` less this);
* ``acquired`` by state: acquisitions that ended so (stored, known, failed, interrupted);
* ``job_ok`` / ``job_failed`` by job: the daemon's runs that ended so, ``at`` the last.

A later migration that rebuilds one of these tables (Alembic's batch mode on SQLite copies
it) drops its triggers with it, and must create them again:
``tests/integration/test_metrics.py`` checks they are all there at the head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

_UPSERT = (
    " ON CONFLICT (station, name, label) DO UPDATE SET n = tallies.n + excluded.n,"
    " bytes = tallies.bytes + excluded.bytes,"
    " at = CASE WHEN tallies.at IS NULL OR excluded.at > tallies.at"
    " THEN excluded.at ELSE tallies.at END"
)
_INTO = "INSERT INTO tallies (station, name, label, n, bytes, at) "


def _where(present: str) -> str:
    return f"CASE WHEN {present} THEN 'local' ELSE 'evicted' END"


#: (name, event, table, condition or None, statements).
TRIGGERS: list[tuple[str, str, str, str | None, list[str]]] = [
    ("tally_items_insert", "INSERT", "items", None, [
        _INTO + f"VALUES (NEW.station, {_where('NEW.local_present')}, '', 1, NEW.size, NULL),"
        " (NEW.station, 'ingested', '', 1, NEW.size, NULL)" + _UPSERT,
    ]),
    ("tally_items_local", "UPDATE OF local_present", "items",
     "NEW.local_present <> OLD.local_present", [
         _INTO + f"VALUES (NEW.station, {_where('NEW.local_present')}, '', 1, NEW.size, NULL),"
         f" (OLD.station, {_where('OLD.local_present')}, '', -1, -OLD.size, NULL)" + _UPSERT,
         _INTO + "SELECT NEW.station, 'verified_local', r.target,"
         " CASE WHEN NEW.local_present THEN count(*) ELSE -count(*) END, 0, NULL"
         " FROM replicas r WHERE r.item = NEW.sha256 AND r.state = 'verified'"
         " GROUP BY r.target" + _UPSERT,
     ]),
    ("tally_items_delete", "DELETE", "items", None, [
        _INTO + f"VALUES (OLD.station, {_where('OLD.local_present')}, '', -1, -OLD.size, NULL)"
        + _UPSERT,
    ]),
    ("tally_flags_insert", "INSERT", "flags", None, [
        _INTO + "SELECT i.station, 'flagged', NEW.flag, 1, 0, NULL FROM items i"
        " WHERE i.sha256 = NEW.item" + _UPSERT,
    ]),
    ("tally_flags_delete", "DELETE", "flags", None, [
        _INTO + "SELECT i.station, 'flagged', OLD.flag, -1, 0, NULL FROM items i"
        " WHERE i.sha256 = OLD.item" + _UPSERT,
    ]),
    ("tally_replicas_insert", "INSERT", "replicas", "NEW.state = 'verified'", [
        _INTO + "SELECT i.station, 'replicated', NEW.target, 1, COALESCE(NEW.size, i.size),"
        " NEW.verified_at FROM items i WHERE i.sha256 = NEW.item"
        " UNION ALL SELECT i.station, 'verified_local', NEW.target, 1, 0, NULL FROM items i"
        " WHERE i.sha256 = NEW.item AND i.local_present" + _UPSERT,
    ]),
    ("tally_replicas_update", "UPDATE OF state, verified_at", "replicas",
     "NEW.state = 'verified' OR OLD.state = 'verified'", [
         # a copy that becomes verified is counted, with its bytes; one verified again keeps
         # its count and moves the time on
         _INTO + "SELECT i.station, 'replicated', NEW.target,"
         " CASE WHEN OLD.state = 'verified' THEN 0 ELSE 1 END,"
         " CASE WHEN OLD.state = 'verified' THEN 0 ELSE COALESCE(NEW.size, i.size) END,"
         " NEW.verified_at FROM items i WHERE i.sha256 = NEW.item AND NEW.state = 'verified'"
         " UNION ALL SELECT i.station, 'verified_local', NEW.target,"
         " CASE WHEN NEW.state = 'verified' THEN 1 ELSE -1 END, 0, NULL FROM items i"
         " WHERE i.sha256 = NEW.item AND i.local_present AND NEW.state <> OLD.state"
         + _UPSERT,
     ]),
    ("tally_replicas_delete", "DELETE", "replicas", "OLD.state = 'verified'", [
        _INTO + "SELECT i.station, 'verified_local', OLD.target, -1, 0, NULL FROM items i"
        " WHERE i.sha256 = OLD.item AND i.local_present" + _UPSERT,
    ]),
    ("tally_acquisitions_insert", "INSERT", "acquisitions", "NEW.state <> 'copying'", [
        _INTO + "SELECT s.station, 'acquired', NEW.state, 1, 0, NULL FROM dock_sessions s"
        " WHERE s.id = NEW.session_id" + _UPSERT,
    ]),
    ("tally_acquisitions_update", "UPDATE OF state", "acquisitions",
     "NEW.state <> OLD.state AND NEW.state <> 'copying'", [
         _INTO + "SELECT s.station, 'acquired', NEW.state, 1, 0, NULL FROM dock_sessions s"
         " WHERE s.id = NEW.session_id" + _UPSERT,
     ]),
    ("tally_job_runs_update", "UPDATE OF finished_at", "job_runs",
     "OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL", [
         _INTO + "VALUES (NEW.station, CASE WHEN NEW.ok THEN 'job_ok' ELSE 'job_failed' END,"
         " NEW.job, 1, 0, NEW.finished_at)" + _UPSERT,
     ]),
]

#: The tallies of a catalog that already holds rows (the counts ``ingested``, ``replicated``
#: and ``acquired`` start from what the rows say).
FILL = [
    _INTO + f"SELECT station, {_where('local_present')}, '', count(*), sum(size), NULL"
    " FROM items GROUP BY station, local_present",
    _INTO + "SELECT station, 'ingested', '', count(*), sum(size), NULL FROM items"
    " GROUP BY station",
    _INTO + "SELECT i.station, 'flagged', f.flag, count(*), 0, NULL FROM flags f"
    " JOIN items i ON i.sha256 = f.item GROUP BY i.station, f.flag",
    _INTO + "SELECT i.station, 'replicated', r.target, count(*), sum(COALESCE(r.size, i.size)),"
    " max(r.verified_at) FROM replicas r JOIN items i ON i.sha256 = r.item"
    " WHERE r.state = 'verified' GROUP BY i.station, r.target",
    _INTO + "SELECT i.station, 'verified_local', r.target, count(*), 0, NULL FROM replicas r"
    " JOIN items i ON i.sha256 = r.item WHERE r.state = 'verified' AND i.local_present"
    " GROUP BY i.station, r.target",
    _INTO + "SELECT s.station, 'acquired', a.state, count(*), 0, NULL FROM acquisitions a"
    " JOIN dock_sessions s ON s.id = a.session_id WHERE a.state <> 'copying'"
    " GROUP BY s.station, a.state",
    _INTO + "SELECT station, CASE WHEN ok THEN 'job_ok' ELSE 'job_failed' END, job, count(*),"
    " 0, max(finished_at) FROM job_runs WHERE finished_at IS NOT NULL GROUP BY station, ok, job",
]


def _create_trigger(dialect: str, name: str, event: str, table: str, when: str | None,
                    statements: list[str]) -> None:
    body = "".join(f"{s};\n" for s in statements)
    if dialect == "postgresql":
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                   f"BEGIN\n{body}RETURN NULL;\nEND\n$$")
        cond = f" WHEN ({when})" if when else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{cond}"
                   f" EXECUTE FUNCTION {name}()")
    else:
        cond = f" WHEN {when}" if when else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{cond}\n"
                   f"BEGIN\n{body}END")


def upgrade() -> None:
    op.create_table(
        "tallies",
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("label", sa.String(200), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("at", sa.String(32), nullable=True),
    )
    for statement in FILL:
        op.execute(statement)
    dialect = op.get_bind().dialect.name
    for name, event, table, when, statements in TRIGGERS:
        _create_trigger(dialect, name, event, table, when, statements)
    # the dock sessions still running (recorders docked now), without reading every session
    op.create_index("ix_dock_sessions_station_state", "dock_sessions", ["station", "state"])


def downgrade() -> None:
    op.drop_index("ix_dock_sessions_station_state", table_name="dock_sessions")
    dialect = op.get_bind().dialect.name
    for name, _event, table, _when, _statements in reversed(TRIGGERS):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("tallies")
