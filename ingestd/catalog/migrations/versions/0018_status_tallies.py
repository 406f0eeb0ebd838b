"""tallies and indexes for a status that does not scan the items

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-01 16:15:00

``status`` (the command, ``/api/status`` and the page) reads, like ``/metrics``, tallies kept
by triggers in the transaction that changes the row (migration 0014 says how), and a few
walks on indexes that stop early. This adds what 0014's tallies do not hold:

* ``labelled``: the station's items with at least one label;
* ``replica_<state>`` by target (``replica_verified``, ``replica_uploading``, ...): the copies
  of the station's items in that state now (0014's ``replicated`` counts copies that became
  verified, and is never lowered);
* ``proven`` by target: verified copies read back since, not to be written again;
* ``acquisitions`` by state: the acquisitions of the station's sessions in that state now,
  ``copying`` too (0014's ``acquired`` counts how acquisitions ended, and is never lowered).

And three indexes: the station's local items by replication deadline (the oldest waiting is
walked to from both ends), the copies that recorded an error by target and time (partial: the
last error without reading every copy), and the station's items by time stored with their
sizes (what the last week stored, read from the index alone).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

_UPSERT = (
    " ON CONFLICT (station, name, label) DO UPDATE SET n = tallies.n + excluded.n,"
    " bytes = tallies.bytes + excluded.bytes,"
    " at = CASE WHEN tallies.at IS NULL OR excluded.at > tallies.at"
    " THEN excluded.at ELSE tallies.at END"
)
_INTO = "INSERT INTO tallies (station, name, label, n, bytes, at) "


def _proven(row: str) -> str:
    """Whether a copy counts as ``proven`` (as ``replica_stats`` counted it from the rows)."""
    return (f"({row}.state = 'verified' AND {row}.proven_at IS NOT NULL"
            f" AND NOT {row}.rewrite)")


def _of_item(row: str) -> str:
    return f" FROM items i WHERE i.sha256 = {row}.item"


def _of_session(row: str) -> str:
    return f" FROM dock_sessions s WHERE s.id = {row}.session_id"


#: (name, event, table, condition or None, statements), as in 0014.
TRIGGERS: list[tuple[str, str, str, str | None, list[str]]] = [
    ("tally_labels_insert", "INSERT", "labels", None, [
        _INTO + "SELECT i.station, 'labelled', '', 1, 0, NULL" + _of_item("NEW")
        + " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item = NEW.item AND l.id <> NEW.id)"
        + _UPSERT,
    ]),
    ("tally_labels_delete", "DELETE", "labels", None, [
        _INTO + "SELECT i.station, 'labelled', '', -1, 0, NULL" + _of_item("OLD")
        + " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item = OLD.item)" + _UPSERT,
    ]),
    ("tally_replica_states_insert", "INSERT", "replicas", None, [
        _INTO + "SELECT i.station, 'replica_' || NEW.state, NEW.target, 1, 0, NULL"
        + _of_item("NEW")
        + " UNION ALL SELECT i.station, 'proven', NEW.target, 1, 0, NULL" + _of_item("NEW")
        + f" AND {_proven('NEW')}" + _UPSERT,
    ]),
    ("tally_replica_states_update", "UPDATE OF state, proven_at, rewrite", "replicas",
     f"NEW.state <> OLD.state OR {_proven('NEW')} <> {_proven('OLD')}", [
         _INTO + "SELECT i.station, 'replica_' || NEW.state, NEW.target, 1, 0, NULL"
         + _of_item("NEW") + " AND NEW.state <> OLD.state"
         + " UNION ALL SELECT i.station, 'replica_' || OLD.state, OLD.target, -1, 0, NULL"
         + _of_item("OLD") + " AND NEW.state <> OLD.state"
         + " UNION ALL SELECT i.station, 'proven', NEW.target,"
         f" CASE WHEN {_proven('NEW')} THEN 1 ELSE -1 END, 0, NULL" + _of_item("NEW")
         + f" AND {_proven('NEW')} <> {_proven('OLD')}" + _UPSERT,
     ]),
    ("tally_replica_states_delete", "DELETE", "replicas", None, [
        _INTO + "SELECT i.station, 'replica_' || OLD.state, OLD.target, -1, 0, NULL"
        + _of_item("OLD")
        + " UNION ALL SELECT i.station, 'proven', OLD.target, -1, 0, NULL" + _of_item("OLD")
        + f" AND {_proven('OLD')}" + _UPSERT,
    ]),
    ("tally_acquisition_states_insert", "INSERT", "acquisitions", None, [
        _INTO + "SELECT s.station, 'acquisitions', NEW.state, 1, 0, NULL" + _of_session("NEW")
        + _UPSERT,
    ]),
    ("tally_acquisition_states_update", "UPDATE OF state", "acquisitions",
     "NEW.state <> OLD.state", [
         _INTO + "SELECT s.station, 'acquisitions', NEW.state, 1, 0, NULL" + _of_session("NEW")
         + " UNION ALL SELECT s.station, 'acquisitions', OLD.state, -1, 0, NULL"
         + _of_session("OLD") + _UPSERT,
     ]),
    ("tally_acquisition_states_delete", "DELETE", "acquisitions", None, [
        _INTO + "SELECT s.station, 'acquisitions', OLD.state, -1, 0, NULL" + _of_session("OLD")
        + _UPSERT,
    ]),
]

#: The new tallies of a catalog that already holds rows.
FILL = [
    _INTO + "SELECT i.station, 'labelled', '', count(*), 0, NULL FROM items i"
    " WHERE EXISTS (SELECT 1 FROM labels l WHERE l.item = i.sha256) GROUP BY i.station",
    _INTO + "SELECT i.station, 'replica_' || r.state, r.target, count(*), 0, NULL"
    " FROM replicas r JOIN items i ON i.sha256 = r.item GROUP BY i.station, r.state, r.target",
    _INTO + "SELECT i.station, 'proven', r.target, count(*), 0, NULL"
    " FROM replicas r JOIN items i ON i.sha256 = r.item"
    f" WHERE {_proven('r')} GROUP BY i.station, r.target",
    _INTO + "SELECT s.station, 'acquisitions', a.state, count(*), 0, NULL FROM acquisitions a"
    " JOIN dock_sessions s ON s.id = a.session_id GROUP BY s.station, a.state",
]

#: The tallies this migration adds (a downgrade removes their rows).
ADDED = "name IN ('labelled', 'proven', 'acquisitions') OR substr(name, 1, 8) = 'replica_'"


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
    for statement in FILL:
        op.execute(statement)
    dialect = op.get_bind().dialect.name
    for name, event, table, when, statements in TRIGGERS:
        _create_trigger(dialect, name, event, table, when, statements)
    op.create_index("ix_items_waiting", "items",
                    ["station", "local_present", "replication_deadline", "sha256"])
    op.create_index("ix_items_station_stored", "items", ["station", "stored_at", "size"])
    op.create_index("ix_replicas_errors", "replicas", ["target", "updated_at"],
                    sqlite_where=sa.text("last_error <> ''"),
                    postgresql_where=sa.text("last_error <> ''"))


def downgrade() -> None:
    op.drop_index("ix_replicas_errors", table_name="replicas")
    op.drop_index("ix_items_station_stored", table_name="items")
    op.drop_index("ix_items_waiting", table_name="items")
    dialect = op.get_bind().dialect.name
    for name, _event, table, _when, _statements in reversed(TRIGGERS):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            op.execute(f"DROP TRIGGER {name}")
    op.execute(f"DELETE FROM tallies WHERE {ADDED}")
