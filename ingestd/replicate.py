"""Off-site replication: every stored item to every configured target, verified, under WORM.

Items go oldest replication deadline first. During an upload the local copy is hashed as it
is read (a damaged local copy never becomes a copy off-site); after it, the target's own answer
(size and the whole-file SHA-256) must match, or the copy is not counted. Next to each object
goes its signed manifest. When a label raises an item's retention class or a hold is set, the
off-site lock is extended. Signed ledger checkpoints go to every target, so a rewritten local
ledger is caught by ``ledger verify --offsite``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .catalog import queries as q
from .config import TargetSettings
from .domain.canonical import canonical_bytes, format_time, parse_time
from .domain.flags import Flag
from .domain.models import EventKind
from .errors import ObjectDamaged, TargetError
from .ingest import set_flag
from .integrity.ledger import Discrepancy, DiscrepancyKind, KeyChain
from .station import Station
from .targets import Lock, RemoteObject, Target
from .targets.directory import DirectoryTarget

log = logging.getLogger(__name__)

K = DiscrepancyKind
CHECKPOINT_VERSION = 2  # 2: carries the pinned fingerprint of the ledger's first key


def build_target(spec: TargetSettings, station: Station) -> Target:
    if spec.type == "directory":
        assert spec.path is not None
        return DirectoryTarget(spec.name, station.settings.path(spec.path), spec.prefix,
                               spec.required)
    assert spec.bucket is not None
    from .targets.s3 import S3Target  # boto3 is heavy to import: only when a bucket is used

    return S3Target(
        name=spec.name, bucket=spec.bucket, endpoint_url=spec.endpoint_url, prefix=spec.prefix,
        region=spec.region, object_lock=spec.object_lock, required=spec.required,
        credentials_file=station.settings.path(spec.credentials_file)
        if spec.credentials_file else None,
        profile=spec.profile,
        ca_bundle=station.settings.path(spec.ca_bundle) if spec.ca_bundle else None,
        sse=spec.sse, kms_key_id=spec.kms_key_id,
        multipart_threshold=spec.multipart_threshold,
        multipart_chunksize=spec.multipart_chunksize, max_concurrency=spec.max_concurrency,
        bandwidth_limit=spec.bandwidth_limit, max_attempts=spec.max_attempts,
        readback=spec.readback,
    )


def build_targets(station: Station) -> list[Target]:
    return [build_target(spec, station) for spec in station.settings.targets]


@dataclass(kw_only=True)
class ReplicationReport:
    verified: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    locks_extended: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "verified": self.verified, "failed": self.failed,
                "locks_extended": self.locks_extended, "pending": self.pending}

    def summary(self) -> str:
        return (f"{len(self.verified)} copies verified, {len(self.failed)} failed, "
                f"{len(self.locks_extended)} locks extended, {self.pending} still waiting")


#: S3 COMPLIANCE retention needs a date. Footage kept long-term (never expires) is locked this
#: long after it was recorded: longer than any rule asks, and no one can shorten it.
LONG_TERM_LOCK = timedelta(days=365 * 100)

#: The latest retain-until date asked of a server. Ceph RGW (16.2 at least) keeps the date in
#: 32-bit seconds: a later one wraps round to the 1970s or 1980s, which it accepts even under
#: COMPLIANCE, leaving the object deletable. 2^32 s after the epoch is 2106-02-07T06:28:16Z.
MAX_RETAIN_UNTIL = datetime(2106, 1, 1, tzinfo=UTC)


def lock_for(item: Mapping[str, Any]) -> Lock:
    """The WORM lock an item's off-site copies must carry: its retain-until date (or the
    long-term date), at most ``MAX_RETAIN_UNTIL``, and legal hold when it is held."""
    until = item["retain_until"]
    if until:
        retain_until = parse_time(until)
    else:
        retain_until = parse_time(item["recorded_start"]) + LONG_TERM_LOCK
    return Lock(retain_until=min(retain_until, MAX_RETAIN_UNTIL),
                legal_hold=bool(item["hold"]))


def _lock_in_place(replica: Mapping[str, Any], lock: Lock) -> bool:
    """Whether the replica row already records ``lock`` (retention at least as long, same
    hold)."""
    if bool(replica["hold"]) != lock.legal_hold:
        return False
    have = replica["retain_until"]
    if lock.retain_until is None:
        return True
    return bool(have) and parse_time(str(have)) >= lock.retain_until


@dataclass(frozen=True, kw_only=True)
class _Sent:
    """One upload's outcome, before it is recorded."""

    target: Target
    lock: Lock
    remote: RemoteObject | None = None
    error: str = ""
    flag: Flag | None = None
    unreachable: bool = False


class Replicator:
    def __init__(self, station: Station, targets: list[Target] | None = None, *,
                 actor: str = "ingestd", cancel: threading.Event | None = None) -> None:
        self.station = station
        self.targets = targets if targets is not None else build_targets(station)
        self.actor = actor
        self.cancel = cancel or threading.Event()

    def check(self) -> None:
        """Every target must be usable (reachable; Object Lock where it is required)."""
        for target in self.targets:
            target.check()

    # -- manifests -----------------------------------------------------------------------

    def manifest(self, sha: str) -> bytes:
        station = self.station
        station.custody.check_signing_key()
        with station.catalog.read() as conn:
            item = dict(q.item(conn, sha) or {})
            label = q.current_label(conn, sha)
            acqs = q.acquisitions_of(conn, sha)
        body = {
            "version": 1, "item": sha, "size": item["size"], "station": item["station"],
            "recorder": item["recorder"], "officer": item["officer"],
            "recorded_start": item["recorded_start"], "recorded_end": item["recorded_end"],
            "stored_at": item["stored_at"], "original_name": item["original_name"],
            "media": json.loads(item["media"] or "{}"),
            "label": {"case": label["case_no"], "party": label["party"],
                      "officer": label["officer"], "by": label["by"], "at": label["at"]}
            if label else None,
            "retention": {"class": item["retention_class"], "until": item["retain_until"],
                          "hold": bool(item["hold"])},
            "acquisitions": [{"serial": a["serial"], "path": a["path"], "size": a["size"],
                              "state": a["state"], "at": a["finished_at"],
                              "station": a["station"]} for a in acqs],
            "signed_at": format_time(station.clock()), "key_id": station.key.key_id,
        }
        data = canonical_bytes(body)
        return canonical_bytes({"manifest": body, "signature": station.key.sign(data)})

    # -- one copy ------------------------------------------------------------------------

    def _send(self, target: Target, item: dict[str, Any]) -> _Sent:
        """Upload one copy and check it (I/O only: what it means is recorded by _settle)."""
        sha = item["sha256"]
        station = self.station
        lock = lock_for(item)
        if not station.store.has(sha):
            # Left the local store (retention) since the queue was read: nothing to send, and
            # nothing wrong with the item.
            return _Sent(target=target, lock=lock,
                         error=f"{sha[:12]} is no longer in the local store")
        with station.catalog.write() as conn:
            prior = q.replica(conn, sha, target.name)
            q.upsert_replica(conn, sha, target.name, state="uploading",
                             updated_at=format_time(station.clock()),
                             attempts=(prior["attempts"] if prior else 0) + 1)
        try:
            # The target hashes the local copy as it reads it: a damaged one is never copied.
            remote = target.put_item(sha, station.store.path_of(sha), item["size"], lock,
                                     rewrite=bool(prior and prior["state"] == "mismatch"))
            if remote.sha256 != sha or remote.size != item["size"]:
                raise TargetError(
                    f"target {target.name}: replica mismatch for {sha}: it reports "
                    f"{remote.size} bytes, SHA-256 {remote.sha256}")
            target.put_manifest(sha, self.manifest(sha), lock)
        except ObjectDamaged as exc:
            return _Sent(target=target, lock=lock, error=exc.message, flag=Flag.FIXITY_FAILED)
        except TargetError as exc:
            mismatch = "mismatch" in exc.message
            return _Sent(target=target, lock=lock, error=exc.message,
                         flag=Flag.REPLICA_MISMATCH if mismatch else None,
                         unreachable=not mismatch)
        return _Sent(target=target, lock=lock, remote=remote)

    def _settle(self, outcomes: list[tuple[dict[str, Any], _Sent]],
                report: ReplicationReport) -> None:
        """Record copies' outcomes, in the order given: a signed ``replicated`` entry for each
        verified copy, or the failure. Verified copies next to each other share one
        transaction: one commit and one mirror sync for several entries, not one each."""
        verified: list[tuple[dict[str, Any], _Sent]] = []
        for item, sent in outcomes:
            if sent.remote is not None:
                verified.append((item, sent))
                continue
            self._record_verified(verified, report)
            verified = []
            self._record_failure(item["sha256"], sent, report)
        self._record_verified(verified, report)

    def _record_failure(self, sha: str, sent: _Sent, report: ReplicationReport) -> None:
        station = self.station
        self._failed(sent.target, sha, sent.error, report)
        if sent.flag is not None:
            with station.custody.transaction() as conn:
                set_flag(station, conn, sha, sent.flag, at=station.clock(),
                         actor=self.actor, detail=sent.error)

    def _record_verified(self, verified: list[tuple[dict[str, Any], _Sent]],
                         report: ReplicationReport) -> None:
        if not verified:
            return
        station = self.station
        with station.custody.transaction() as conn:
            for item, sent in verified:
                sha, target, lock, remote = item["sha256"], sent.target, sent.lock, sent.remote
                assert remote is not None
                done = station.clock()
                entry = station.custody.record(
                    conn, kind=EventKind.REPLICATED, actor=self.actor, item=sha, at=done,
                    data={"target": target.name, "key": remote.key, "size": remote.size,
                          "sha256": remote.sha256, "version_id": remote.version_id,
                          "retain_until": format_time(remote.retain_until)
                          if remote.retain_until else None, "legal_hold": remote.legal_hold},
                )
                q.upsert_replica(
                    conn, sha, target.name, state="verified", key=remote.key, size=remote.size,
                    remote_sha256=remote.sha256, last_error="", updated_at=format_time(done),
                    verified_at=format_time(done), ledger_seq=entry.seq,
                    retain_until=format_time(lock.retain_until) if lock.retain_until else None,
                    hold=lock.legal_hold,
                )
        # only once committed: the report never claims a copy the catalog does not record
        report.verified.extend({"sha256": item["sha256"], "target": sent.target.name}
                               for item, sent in verified)

    def _failed(self, target: Target, sha: str, error: str, report: ReplicationReport) -> None:
        with self.station.catalog.write() as conn:
            q.upsert_replica(conn, sha, target.name, state="failed", last_error=error[:2000],
                             updated_at=format_time(self.station.clock()))
        report.failed.append({"sha256": sha, "target": target.name, "error": error})
        log.error("replication of %s to %s failed: %s", sha[:12], target.name, error,
                  extra={"event": "replication_failed"})

    # -- the run -------------------------------------------------------------------------

    def run(self, *, limit: int | None = None) -> ReplicationReport:
        """One pass over the queue. Only one pass runs at a time on a station (the daemon's
        job and an operator's command would otherwise abort each other's uploads)."""
        lock_path = self.station.settings.home / ".replicate.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TargetError("another replication is running on this station; "
                                  "try again when it has finished") from None
            return self._run(limit=limit)
        finally:
            os.close(fd)

    def _run(self, *, limit: int | None) -> ReplicationReport:
        report = ReplicationReport()
        station = self.station
        station.custody.check_signing_key()  # before any copy leaves unsigned
        with station.catalog.write() as conn:
            q.interrupt_uploads(conn, station.clock())
        names = [t.name for t in self.targets]
        with station.catalog.read() as conn:
            queue = [dict(r) for r in q.replication_queue(conn, names, limit=limit,
                                                              station=station.name)]
        down: set[str] = set()  # unreachable this run: tried again at the next one
        guard = threading.Lock()

        def send_all(item: dict[str, Any]) -> list[_Sent]:
            if self.cancel.is_set():
                return []
            with station.catalog.read() as conn:
                have = q.verified_targets(conn, item["sha256"])
            out = []
            for target in self.targets:
                with guard:
                    if target.name in have or target.name in down:
                        continue
                sent = self._send(target, item)
                if sent.unreachable:
                    with guard:
                        down.add(target.name)
                out.append(sent)
            return out

        # The first item goes alone: a target that is down is found with one item, not with
        # as many as run at once. Then several travel at once (small ones are mostly round
        # trips); each starts in deadline order and is recorded in that order, so the ledger
        # follows the deadlines. What has finished by the time the next in line is recorded
        # is recorded with it, in one transaction.
        if queue:
            self._settle([(queue[0], one) for one in send_all(queue[0])], report)
        parallel = station.settings.scheduler.replication_parallel
        with ThreadPoolExecutor(max_workers=parallel,
                                thread_name_prefix="ingestd-replicate") as pool:
            waiting = deque((item, pool.submit(send_all, item)) for item in queue[1:])
            while waiting:
                waiting[0][1].result()  # the next in deadline order; its error ends the run
                ready: list[tuple[dict[str, Any], _Sent]] = []
                while waiting and waiting[0][1].done():
                    item, future = waiting.popleft()
                    ready.extend((item, one) for one in future.result())
                self._settle(ready, report)
        report.locks_extended = self.extend_locks(report)
        with station.catalog.read() as conn:
            report.pending = len(q.replication_queue(conn, names, station=station.name))
        return report

    def extend_locks(self, report: ReplicationReport | None = None) -> list[dict[str, Any]]:
        """Raise the off-site lock wherever an item's retention grew or its hold changed.

        A lock that cannot be set is kept as the replica's last error (``status`` shows it),
        added to ``report.failed`` and tried again at the next run."""
        station = self.station
        by_name = {t.name: t for t in self.targets}
        done: list[dict[str, Any]] = []
        with station.catalog.read() as conn:
            rows = [dict(r) for r in q.locks_behind(conn, station=station.name)]
        for row in rows:
            target = by_name.get(row["target"])
            if target is None:
                continue
            until = row["item_retain_until"]
            lock = lock_for({"retain_until": until, "recorded_start": row["recorded_start"],
                             "hold": row["item_hold"]})
            if _lock_in_place(row, lock):
                # already as wanted: a long-term item (no retain-until in the catalog) or a
                # date capped at MAX_RETAIN_UNTIL, which locks_behind cannot see in SQL
                continue
            try:
                remote = target.set_lock(row["item"], lock)
            except TargetError as exc:
                log.error("cannot extend lock of %s on %s: %s", row["item"][:12],
                          target.name, exc.message, extra={"event": "lock_failed"})
                with station.catalog.write() as conn:
                    q.upsert_replica(conn, row["item"], target.name,
                                     last_error=exc.message[:2000],
                                     updated_at=format_time(station.clock()))
                if report is not None:
                    report.failed.append({"sha256": row["item"], "target": target.name,
                                          "error": exc.message})
                continue
            now = station.clock()
            with station.custody.transaction() as conn:
                station.custody.record(
                    conn, kind=EventKind.RETENTION, actor=self.actor, item=row["item"], at=now,
                    data={"target": target.name, "class": row["retention_class"],
                          "retain_until": format_time(remote.retain_until)
                          if remote.retain_until else None, "legal_hold": remote.legal_hold},
                )
                q.upsert_replica(conn, row["item"], target.name,
                                 retain_until=format_time(lock.retain_until)
                                 if lock.retain_until else None,
                                 hold=bool(row["item_hold"]), last_error="",
                                 updated_at=format_time(now))
            done.append({"sha256": row["item"], "target": target.name,
                         "retain_until": format_time(lock.retain_until)
                         if lock.retain_until else "", "hold": bool(row["item_hold"])})
        return done

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Sign the ledger head and send it to every target."""
        station = self.station
        station.custody.check_signing_key()
        station.custody.sync_mirror()
        with station.catalog.read() as conn:
            seq, head = q.ledger_head(conn)
        body = {"version": CHECKPOINT_VERSION, "station": station.name, "seq": seq,
                "head_hash": head, "at": format_time(station.clock()),
                "key_id": station.key.key_id,
                "genesis_fingerprint": station.custody.pin}
        data = canonical_bytes(body)
        signed = canonical_bytes({"checkpoint": body, "signature": station.key.sign(data),
                                  "public_key": station.key.public.hex})
        name = f"{station.name}-{seq:012d}.json"
        sent: list[str] = []
        errors: list[str] = []
        for target in self.targets:
            with station.catalog.read() as conn:
                last = q.last_checkpoint(conn, target.name)
            if last is not None and last["seq"] == seq:
                continue  # nothing new since the last one: a checkpoint is never rewritten
            try:
                target.put_checkpoint(name, signed)
            except TargetError as exc:
                errors.append(exc.message)
                continue
            with station.catalog.write() as conn:
                q.add_checkpoint(conn, target=target.name, name=name, seq=seq,
                                 head_hash=head or "", at=body["at"])
            sent.append(target.name)
        return {"name": name, "seq": seq, "head_hash": head, "sent": sent, "errors": errors,
                "unchanged": [t.name for t in self.targets if t.name not in sent
                              and not any(t.name in e for e in errors)]}


def verify_offsite(station: Station, targets: list[Target]) -> list[Discrepancy]:
    """Compare the local ledger with every signed checkpoint the targets hold."""
    problems: list[Discrepancy] = []
    with station.catalog.read(snapshot=True) as conn:
        keys = station.custody.trusted_keys(conn)
        hashes = {e.seq: e.entry_hash for e in q.iter_entries(conn)}
    head = max(hashes, default=0)
    for target in targets:
        try:
            names = target.list_checkpoints()
        except TargetError as exc:
            problems.append(Discrepancy(kind=K.OFFSITE_UNREACHABLE, seq=None,
                                        detail=exc.message))
            continue
        for name in names:
            try:
                raw = json.loads(target.get_checkpoint(name))
                body = raw["checkpoint"]
                signature = raw["signature"]
            except (TargetError, ValueError, KeyError, TypeError) as exc:
                problems.append(Discrepancy(kind=K.CHECKPOINT_UNREADABLE, seq=None,
                                            detail=f"{target.name}/{name}: {exc}"))
                continue
            if body.get("station") != station.name:
                continue  # another station's checkpoint on a shared target
            problems.extend(_checkpoint_problems(station, keys, hashes, head,
                                                 f"{target.name}/{name}", body, signature))
    return problems


def _checkpoint_problems(station: Station, keys: KeyChain, hashes: Mapping[int, str],
                         head: int, where: str, body: dict[str, Any],
                         signature: Any) -> list[Discrepancy]:
    problems = []
    # Checkpoints before version 2 carry no fingerprint; those that do must carry ours. A
    # home rewritten with a key of its own, pin included, differs here first.
    if "genesis_fingerprint" in body and body["genesis_fingerprint"] != station.custody.pin:
        problems.append(Discrepancy(
            kind=K.PIN_MISMATCH, seq=body.get("seq"),
            detail=f"{where} pins the first key {body['genesis_fingerprint']}, this home "
                   f"pins {station.custody.pin or 'none'}"))
    key = keys.keys.get(str(body.get("key_id")))
    if key is None or key.station not in (None, station.name) or not key.public.verify(
            str(signature), canonical_bytes(body)):
        problems.append(Discrepancy(
            kind=K.CHECKPOINT_BAD_SIGNATURE, seq=body.get("seq"),
            detail=f"{where} is not signed by a key the ledger vouches for"))
        return problems
    seq = int(body["seq"])
    if seq > head:
        problems.append(Discrepancy(
            kind=K.LEDGER_TRUNCATED, seq=seq,
            detail=f"{where} vouches for entry {seq}, but the local ledger ends at {head}"))
    elif seq and hashes.get(seq) != body["head_hash"]:
        problems.append(Discrepancy(
            kind=K.LEDGER_REWRITTEN, seq=seq,
            detail=f"entry {seq} differs from what {where} vouches for"))
    return problems


def replicate_once(station: Station, *, limit: int | None = None) -> ReplicationReport:
    replicator = Replicator(station)
    replicator.check()
    return replicator.run(limit=limit)

