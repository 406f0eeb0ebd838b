"""The catalog's tables (SQLAlchemy Core). Changes to them are Alembic migrations.

Every row that states a fact about evidence names the ledger entry that backs it
(``ledger_seq``), so ``ledger verify`` can prove the catalog says nothing the ledger does not.
Times are stored as RFC 3339 UTC text: they sort, they compare the same in SQLite and PostgreSQL,
and they are exactly what is signed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

Time = String(32)
Sha = String(64)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Time, nullable=False),
    Column("station", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("item", Sha, nullable=True, index=True),
    Column("data", Text, nullable=False),
    Column("prev_hash", Sha, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("entry_hash", Sha, nullable=False, unique=True),
    Column("signature", String(128), nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("station", String(64), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("retired_at", Time, nullable=True),
)

recorders = Table(
    "recorders",
    metadata,
    Column("serial", String(128), primary_key=True),
    Column("officer", String(200), nullable=False),
    Column("officer_id", String(64), nullable=False),
    Column("unit", String(200), nullable=False, default=""),
    Column("vendor", String(128), nullable=False, default=""),
    Column("model", String(128), nullable=False, default=""),
    Column("added_at", Time, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("ledger_seq", BigInteger, nullable=False),
)

dock_sessions = Table(
    "dock_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("serial", String(128), nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # manual | watch | udev
    Column("mountpoint", Text, nullable=False),
    Column("state", String(16), nullable=False),  # running | done | refused | interrupted | failed
    Column("docked_at", Time, nullable=False),
    Column("finished_at", Time, nullable=True),
    Column("officer", String(200), nullable=False, default=""),
    Column("health", Text, nullable=False, default="{}"),  # JSON: space, fs, battery, clock
    Column("files_seen", Integer, nullable=False, default=0),
    Column("files_new", Integer, nullable=False, default=0),
    Column("files_known", Integer, nullable=False, default=0),
    Column("files_failed", Integer, nullable=False, default=0),
    Column("bytes_copied", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("ledger_seq", BigInteger, nullable=True),
    # What the walk saw and did not take: how many, and a JSON count by kind.
    Column("files_skipped", Integer, nullable=False, default=0, server_default="0"),
    Column("skipped", Text, nullable=False, default="{}", server_default="{}"),
    # Which process serves the session: a session whose process is gone was interrupted.
    Column("pid", Integer, nullable=True),
    Column("host", String(255), nullable=True),
    # Who started it: "ingestd" for a dock, the person for a manual `ingestd ingest`.
    Column("actor", String(200), nullable=False, default="ingestd", server_default="ingestd"),
    Index("ix_dock_sessions_station_state", "station", "state"),  # the recorders docked now
)

items = Table(
    "items",
    metadata,
    Column("sha256", Sha, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("stored_at", Time, nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("recorder", String(128), nullable=False, index=True),
    Column("officer", String(200), nullable=False, default="", index=True),
    Column("original_name", Text, nullable=False),
    Column("recorded_start", Time, nullable=False, index=True),
    Column("recorded_end", Time, nullable=False),
    Column("time_source", String(16), nullable=False),
    Column("duration", Float, nullable=True),
    Column("media", Text, nullable=False, default="{}"),  # JSON from ffprobe
    Column("ingest_deadline", Time, nullable=False),
    Column("label_deadline", Time, nullable=False),
    Column("replication_deadline", Time, nullable=False),
    Column("retention_class", String(16), nullable=False, default="routine"),
    Column("retain_until", Time, nullable=True),
    Column("hold", Boolean, nullable=False, default=False),
    Column("local_present", Boolean, nullable=False, default=True),
    Column("ledger_seq", BigInteger, nullable=False),
    Index("ix_items_recorded", "recorded_start", "sha256"),  # listings page through this
    # the station's local items by deadline: status walks to the oldest waiting from both ends
    Index("ix_items_waiting", "station", "local_present", "replication_deadline", "sha256"),
    # what the station stored lately, summed from the index alone
    Index("ix_items_station_stored", "station", "stored_at", "size"),
    # the last re-hash that found the local copy intact, as the latest such `audited` entry
    # says (none yet: the audit cycle counts from stored_at)
    Column("audited_at", Time, nullable=True),
)

acquisitions = Table(
    "acquisitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", Integer, ForeignKey("dock_sessions.id"), nullable=False, index=True),
    Column("serial", String(128), nullable=False),
    Column("path", Text, nullable=False),  # display form, escaped
    Column("path_hex", Text, nullable=False),  # the exact bytes of the recorder path
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=True, index=True),
    Column("started_at", Time, nullable=False),
    Column("finished_at", Time, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("wiped_at", Time, nullable=True),
    Column("ledger_seq", BigInteger, nullable=True),
    Index("ix_acquisitions_source", "serial", "path_hex", "size", "mtime_ns"),
)

flags = Table(
    "flags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=False, index=True),
    Column("flag", String(32), nullable=False, index=True),
    Column("set_at", Time, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("ledger_seq", BigInteger, nullable=False),
    UniqueConstraint("item", "flag", name="uq_flags_item_flag"),
    Index("ix_flags_flag_set_at", "flag", "set_at"),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=False, index=True),
    Column("case_no", String(200), nullable=False, index=True),
    Column("party", String(200), nullable=False),
    Column("officer", String(200), nullable=False),
    Column("categories", Text, nullable=False, default="[]"),
    Column("by", String(200), nullable=False),
    Column("at", Time, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    # the case type chosen by `label --case-type` (carried over by later labels), or none
    Column("case_type", String(64), nullable=True),
)

justifications = Table(
    "justifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=False, index=True),
    Column("flag", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("by", String(200), nullable=False),
    Column("at", Time, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    Index("ix_justifications_item_flag", "item", "flag"),
)

replicas = Table(
    "replicas",
    metadata,
    Column("item", Sha, ForeignKey("items.sha256"), primary_key=True),
    Column("target", String(64), primary_key=True),
    # queued | uploading | verified | failed | mismatch (found not to hash to the item)
    Column("state", String(16), nullable=False),
    Column("key", Text, nullable=False, default=""),
    Column("size", BigInteger, nullable=True),
    Column("remote_sha256", Sha, nullable=True),
    Column("retain_until", Time, nullable=True),
    Column("hold", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("updated_at", Time, nullable=False),
    Column("verified_at", Time, nullable=True),
    Column("ledger_seq", BigInteger, nullable=True),
    # when ingestd last read the copy's bytes back and hashed them to the item: only such a
    # copy lets a local copy or a recorder file go
    Column("proven_at", Time, nullable=True),
    # where the copy was made (targets.*_location): a target re-pointed elsewhere under the
    # same name does not inherit it
    Column("location", Text, nullable=False, default=""),
    # the object at the key was found not to hash to the item: a new one is written and read
    # back before the copy counts again, however its metadata looks
    Column("rewrite", Boolean, nullable=False, default=False),
    # versions found bad, space separated: kept by their lock, never counted again
    Column("bad_versions", Text, nullable=False, default=""),
)

target_identities = Table(
    "target_identities",
    metadata,
    # the random id a directory target wrote at its first use, so that a share that is not
    # mounted (an empty folder on the local disk) is told from the share itself
    Column("target", String(64), primary_key=True),
    Column("location", Text, primary_key=True),
    Column("identity", String(64), nullable=False),
    Column("recorded_at", Time, nullable=False),
)

#: Each target's standing from its last WORM check, made by that check's ``worm_checked``
#: entry: a target that failed holds no copy that counts as safe until it passes again.
target_worm = Table(
    "target_worm",
    metadata,
    Column("target", String(64), primary_key=True),
    Column("location", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("checked_at", Time, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("head_hash", Sha, nullable=False),
    Column("at", Time, nullable=False),
)

#: Per station and target, the newest checkpoint known to be on the target (sent by this
#: station or seen by ``ledger verify --offsite``): a target that later holds less was cut.
checkpoints_seen = Table(
    "checkpoints_seen",
    metadata,
    Column("station", String(64), primary_key=True),
    Column("target", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("head_hash", Sha, nullable=False),
    Column("at", Time, nullable=False),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("started_at", Time, nullable=False),
    Column("finished_at", Time, nullable=True),
    Column("ok", Boolean, nullable=True),
    Column("summary", Text, nullable=False, default=""),
    # JSON: what the run said besides its summary, for the alerts (replicate: ``unusable``)
    Column("detail", Text, nullable=False, default="{}", server_default="{}"),
)

#: A sampled item re-hashed from the store and decoded end to end (``spot_checked``).
spot_checks = Table(
    "spot_checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=False, index=True),
    Column("officer", String(200), nullable=False, index=True),
    Column("checked_at", Time, nullable=False),
    Column("period_start", Time, nullable=False),
    Column("fixity", Text, nullable=False),
    Column("decode", Text, nullable=False),
    Column("result", String(16), nullable=False),  # ok | damaged | fixity_failed
    Column("ledger_seq", BigInteger, nullable=False),
)

#: A supervisor's playback of a spot-checked item (``spot_reviewed``).
spot_reviews = Table(
    "spot_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("check_id", Integer, ForeignKey("spot_checks.id"), nullable=False, index=True),
    Column("item", Sha, ForeignKey("items.sha256"), nullable=False),
    Column("by", String(200), nullable=False),
    Column("result", String(16), nullable=False),  # ok | problem
    Column("note", Text, nullable=False),
    Column("at", Time, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
)

#: A case whose enforcement ended (``case_closed``, which ``ledger_seq`` names) and its
#: archive, once made (``case_archived``, named by ``archive_seq``): a case past its archive
#: window without one is late.
cases = Table(
    "cases",
    metadata,
    Column("case_no", String(200), primary_key=True),
    Column("closed_at", Time, nullable=False),
    Column("closed_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    Column("archived_at", Time, nullable=True),
    Column("archive_location", Text, nullable=True),
    Column("archive_package", String(200), nullable=True),
    Column("archive_seq", BigInteger, nullable=True),
)

#: Alerts (``usecases/alerts``): each by key, firing or resolved, when it was last sent, and the
#: channels that have not yet taken its last notice. Not evidence: no ledger entry backs it.
alerts = Table(
    "alerts",
    metadata,
    Column("station", String(64), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("condition", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("summary", Text, nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("since", Time, nullable=False),
    Column("last_sent", Time, nullable=True),
    Column("resolved_at", Time, nullable=True),
    Column("owed", Text, nullable=False),  # JSON list of channel names
)

#: Tallies kept by triggers in the transaction that changes their rows (migration 0014, which
#: says what each counts), so that metrics read a few rows, not every item. Per station, tally
#: name and label (a flag, a target, a job, an acquisition state; "" for none): a count, a sum
#: of bytes, and the newest time, as the migration's triggers define them.
tallies = Table(
    "tallies",
    metadata,
    Column("station", String(64), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("label", String(200), primary_key=True),
    Column("n", BigInteger, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    Column("at", Time, nullable=True),
)


def declare_partial_indexes() -> None:
    """Add to :data:`metadata` the indexes that cover only some rows (migration 0018 makes
    them). Their WHERE clause is given per dialect, and naming a dialect imports it: the
    PostgreSQL one costs a command on a SQLite catalog more than all its queries. So they are
    declared only where the whole schema is wanted (Alembic's environment), not by the commands
    that query. Calling it again adds nothing."""
    if any(index.name == "ix_replicas_errors" for index in replicas.indexes):
        return
    # the copies that recorded an error, newest last: a target's last error without reading
    # every copy
    Index("ix_replicas_errors", replicas.c.target, replicas.c.updated_at,
          sqlite_where=text("last_error <> ''"), postgresql_where=text("last_error <> ''"))
