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
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain.canonical import canonical_bytes, format_time
from ..domain.flags import Flag
from ..domain.models import EventKind, RetentionClass
from ..domain.policy import RetentionPolicy, long_term_until, worm_lock
from ..domain.records import Checkpoint, Item, ReplicaState
from ..domain.status import LockBehind
from ..domain.text import plural
from ..errors import NotFound, ObjectDamaged, ReplicaMismatch, TargetError, TimestampError
from ..integrity import merkle
from ..integrity.discrepancy import (
    BadSignature,
    CheckpointProblem,
    CheckpointRecordProblem,
    Discrepancy,
    DiscrepancyKind,
)
from ..integrity.ledger import KeyChain
from ..ports import CatalogTx
from ..station import Station
from ..targets import CheckpointVersion, Lock, RemoteObject, Target, token_name
from ..targets.factory import build_targets
from .checkpoints import (
    SignedCheckpoint,
    Timestamp,
    checkpoint_name,
    published_checkpoints,
    record_checkpoint,
    sign_checkpoint,
    timestamp_checkpoint,
    token_problem,
    tree_problem,
    tree_sizes,
)
from .flags import set_flag

log = logging.getLogger(__name__)

K = DiscrepancyKind

#: How long a target proven by ``Replicator.check`` counts as proven for the run that follows.
PROOF_FRESH = 60.0


def prove_place(station: Station, target: Target, *, adopt: bool = True) -> None:
    """The target can serve and is the place first used under its name: a directory target
    must hold the identity it was given then (recorded in the catalog at its first use).
    Raises TargetError (TargetUnreachable when it is not that place now). Without ``adopt``
    (a check that only reads, such as ``ledger verify --offsite``), only a known identity is
    checked: nothing is written to the target, and a place never used is not made one."""
    with station.catalog.read() as tx:
        known = tx.target_identity(target.name, target.location)
    if known is not None:
        target.identify(known)  # only reads: nothing is written to a place not proven
    if not adopt:
        return
    target.check()
    if known is None and (identity := target.identify(None)):
        with station.catalog.write() as tx:
            tx.record_target_identity(target.name, target.location, identity,
                                     station.clock())


@dataclass(kw_only=True)
class ReplicationReport:
    verified: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    locks_extended: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0
    #: the targets this run could not use at all (each also in ``failed``, with no item)
    unusable: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "verified": self.verified, "failed": self.failed,
                "locks_extended": self.locks_extended, "pending": self.pending,
                "unusable": self.unusable}

    def summary(self) -> str:
        copies_failed = sum(1 for f in self.failed if f["sha256"])
        said = (f"{plural(len(self.verified), 'copy', 'copies')} verified, "
                f"{copies_failed} failed, {plural(len(self.locks_extended), 'lock')} "
                f"extended, {self.pending} still waiting")
        if self.unusable:
            said += (f", {plural(len(self.unusable), 'target')} not usable "
                     f"({', '.join(sorted(self.unusable))})")
        return said


def lock_for(*, retain_until: datetime | None, retention_class: RetentionClass,
             recorded_start: datetime, hold: bool, now: datetime,
             policy: RetentionPolicy) -> Lock:
    """The WORM lock an item's off-site copies must carry, as ``policy.worm_lock`` sets it
    (``retain_until`` None: it never expires)."""
    lock = worm_lock(retain_until=retain_until, cls=retention_class, hold=hold,
                     recorded_start=recorded_start, now=now, policy=policy)
    return Lock(retain_until=lock.retain_until, legal_hold=lock.legal_hold)


def _stamp(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _lock_in_place(replica: LockBehind, lock: Lock) -> bool:
    """Whether the replica already records ``lock`` (retention at least as long, same
    hold)."""
    if replica.hold != lock.legal_hold:
        return False
    if lock.retain_until is None:
        return True
    return replica.retain_until is not None and replica.retain_until >= lock.retain_until


@dataclass(frozen=True, kw_only=True)
class _Sent:
    """One upload's outcome, before it is recorded."""

    target: Target
    lock: Lock
    remote: RemoteObject | None = None
    error: str = ""
    flag: Flag | None = None
    unreachable: bool = False
    #: the copy at the key was found not to be the item: it needs a new one, read back
    bad: bool = False
    bad_version: str | None = None


@dataclass
class _Pass:
    """What one run's copies share.

    Each target is tried by one item alone (``gates``, one per target): ``first``, the first
    item in the queue's order that has something to send there, chosen before any copy
    starts (whichever thread got there first would be a matter of timing: under load, a
    later item's). Its gate opens once the target has stored some of that item's bytes (a
    single PUT answered, a first part stored), or once that copy has ended, however it
    ended, and in any case when that item is done with; the rest wait at the gate. So a
    target that takes no writes is found with one item, not with as many as run at once,
    and the rest do not wait for all of a large item's parts. A target that takes the first
    bytes and fails later (refusing to complete, to lock) can meet up to
    ``replication_parallel`` items, as it could before once the first copy had succeeded.

    The plan can go stale: an audit running beside the run may find an earlier item's copy
    bad after the plan was made, so that item now has a target to send to whose planned
    first comes after it in the queue and, with few copies at a time, cannot start until it
    is done. An item earlier in the queue than the planned one therefore takes its place,
    as long as the planned one has not begun there (``begun``): the earliest items never
    wait for later ones, and one item alone still tries each target first.

    ``down``: the targets found unusable this run. ``broken``: a copy that tried a target
    first raised rather than failed (a fault, not a refusal): the rest start no copy."""

    down: set[str]
    gates: dict[str, threading.Event]
    first: dict[str, str] = field(default_factory=dict)  # target: the item that tries it
    order: dict[str, int] = field(default_factory=dict)  # item: its place in the queue
    begun: set[str] = field(default_factory=set)  # targets their first item has reached
    broken: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)

    def turn(self, target: str, item: str) -> bool:
        """Wait until ``target`` may be sent to; True if ``item`` is the one to try it
        first (it must then open the gate: ``taken``, and when its copy ends)."""
        with self.guard:
            planned = self.first.get(target)
            if planned == item or (target not in self.begun and (
                    planned is None or self._place(item) < self._place(planned))):
                self.first[target] = item
                self.begun.add(target)
                return True
        self.gates[target].wait()
        return False

    def _place(self, item: str) -> int:
        return self.order.get(item, len(self.order))

    def release(self, item: str) -> None:
        """Open every gate ``item`` was to open: it is done with, however it ended."""
        with self.guard:
            mine = [target for target, sha in self.first.items() if sha == item]
        for target in mine:
            self.gates[target].set()


def first_in_line(tx: CatalogTx, queue: Sequence[Item], targets: Sequence[str],
                  ) -> dict[str, str]:
    """For each target, the first item of ``queue`` it does not hold verified."""
    first: dict[str, str] = {}
    for item in queue:
        if len(first) == len(targets):
            break
        have = tx.verified_targets(item.sha256)
        for name in targets:
            if name not in have:
                first.setdefault(name, item.sha256)
    return first


class Replicator:
    def __init__(self, station: Station, targets: list[Target] | None = None, *,
                 actor: str = "ingestd", cancel: threading.Event | None = None) -> None:
        self.station = station
        self.targets = targets if targets is not None else build_targets(station.settings)
        self.actor = actor
        self.cancel = cancel or threading.Event()
        #: targets ``check`` proved, by name and place, with when (monotonic): the run that
        #: follows at once (``ingestd replicate``) does not ask them the same again
        self._proven: dict[tuple[str, str], float] = {}

    def check(self) -> None:
        """Every target must be usable (reachable; Object Lock where it is required) and be
        the place first used under its name. Nothing is asked of a target before the ledger
        vouches for the key this station signs with."""
        self._proven.clear()
        self.station.custody.check_signing_key()
        for target in self.targets:
            prove_place(self.station, target)
            self._proven[target.name, target.location] = time.monotonic()

    def _proven_just_now(self, target: Target) -> bool:
        """Whether ``check`` proved this target moments ago (once: a later run proves it
        again)."""
        at = self._proven.pop((target.name, target.location), None)
        return at is not None and time.monotonic() - at < PROOF_FRESH

    # -- manifests -----------------------------------------------------------------------

    def manifest(self, sha: str) -> bytes:
        station = self.station
        station.custody.check_signing_key()
        with station.catalog.read() as tx:
            item = tx.item(sha)
            label = tx.current_label(sha)
            acqs = tx.acquisitions_of(sha)
        if item is None:
            raise NotFound(f"no item {sha}")
        body = {
            "version": 1, "item": sha, "size": item.size, "station": item.station,
            "recorder": item.recorder, "officer": item.officer,
            "recorded_start": format_time(item.recorded_start),
            "recorded_end": format_time(item.recorded_end),
            "stored_at": format_time(item.stored_at), "original_name": item.original_name,
            "media": item.media,
            "label": {"case": label.case, "party": label.party, "officer": label.officer,
                      "by": label.by, "at": format_time(label.at)}
            if label else None,
            "retention": {"class": str(item.retention_class), "until": _stamp(item.retain_until),
                          "hold": item.hold},
            "acquisitions": [{"serial": a.acquisition.serial, "path": a.acquisition.path,
                              "size": a.acquisition.size, "state": str(a.acquisition.state),
                              "at": _stamp(a.acquisition.finished_at), "station": a.station}
                             for a in acqs],
            "signed_at": format_time(station.clock()), "key_id": station.key.key_id,
        }
        data = canonical_bytes(body)
        return canonical_bytes({"manifest": body, "signature": station.key.sign(data)})

    # -- one copy ------------------------------------------------------------------------

    def _send(self, target: Target, item: Item, *,
              taken: Callable[[], None] | None = None) -> _Sent:
        """Upload one copy and check it (I/O only: what it means is recorded by _settle).
        ``taken``: passed to the target, called once it has stored some of the bytes."""
        sha = item.sha256
        station = self.station
        lock = lock_for(retain_until=item.retain_until, retention_class=item.retention_class,
                        recorded_start=item.recorded_start, hold=item.hold, now=station.clock(),
                        policy=station.settings.retention.policy())
        if not station.store.has(sha):
            # Left the local store (retention) since the queue was read: nothing to send, and
            # nothing wrong with the item.
            return _Sent(target=target, lock=lock,
                         error=f"{sha[:12]} is no longer in the local store")
        with station.catalog.write() as tx:
            prior = tx.replica(sha, target.name)
            # No copy of it was ever begun at this place (under this name or another): there
            # is nothing there of ours to find or resume, so the target need not be asked
            # first. (Should something be there after all, a new copy goes on top of it.)
            first = (prior is None or prior.attempts == 0) and \
                not tx.copy_begun_at(sha, target.location)
            tx.replica_uploading(sha, target.name, attempts=(prior.attempts if prior else 0) + 1,
                                 at=station.clock())
        # Known bad until a new object is read back: a failed or interrupted repair does not
        # make the bad object good on its metadata.
        rewrite = bool(prior and (prior.rewrite or prior.state == ReplicaState.MISMATCH))
        try:
            # The target hashes the local copy as it reads it: a damaged one is never copied.
            remote = target.put_item(sha, station.store.path_of(sha), item.size, lock,
                                     rewrite=rewrite, first=first, taken=taken)
            if remote.sha256 != sha or remote.size != item.size:
                raise ReplicaMismatch(
                    f"target {target.name}: replica mismatch for {sha}: it reports "
                    f"{remote.size} bytes, SHA-256 {remote.sha256}")
            if rewrite and not remote.read_back:
                raise ReplicaMismatch(f"target {target.name}: the copy of {sha} that replaces "
                                      "a bad one was not read back")
            target.put_manifest(sha, self.manifest(sha), lock, first=first)
        except ObjectDamaged as exc:
            if not station.store.has(sha):
                # the retention sweep took the local copy while this upload was opening it:
                # nothing is damaged, the item is safe where the sweep found it proven
                return _Sent(target=target, lock=lock,
                             error=f"{sha[:12]} left the local store while it was being sent")
            return _Sent(target=target, lock=lock, error=exc.message, flag=Flag.FIXITY_FAILED)
        except ReplicaMismatch as exc:
            return _Sent(target=target, lock=lock, error=exc.message,
                         flag=Flag.REPLICA_MISMATCH, bad=True,
                         bad_version=version_at(target, sha))
        except TargetError as exc:
            # cannot be used now (down, refused, full): tried again at the next run
            return _Sent(target=target, lock=lock, error=exc.message, unreachable=True)
        return _Sent(target=target, lock=lock, remote=remote)

    def _settle(self, outcomes: list[tuple[Item, _Sent]], report: ReplicationReport) -> None:
        """Record copies' outcomes, in the order given: a signed ``replicated`` entry for each
        verified copy, or the failure. Verified copies next to each other share one
        transaction: one commit and one mirror sync for several entries, not one each."""
        verified: list[tuple[Item, _Sent]] = []
        for item, sent in outcomes:
            if sent.remote is not None:
                verified.append((item, sent))
                continue
            self._record_verified(verified, report)
            verified = []
            self._record_failure(item.sha256, sent, report)
        self._record_verified(verified, report)

    def _record_failure(self, sha: str, sent: _Sent, report: ReplicationReport) -> None:
        station = self.station
        self._failed(sent.target, sha, sent.error, report, bad=sent.bad,
                     bad_version=sent.bad_version)
        if sent.flag is not None:
            with station.custody.transaction() as tx:
                set_flag(station, tx, sha, sent.flag, at=station.clock(),
                         actor=self.actor, detail=sent.error)

    def _record_verified(self, verified: list[tuple[Item, _Sent]],
                         report: ReplicationReport) -> None:
        if not verified:
            return
        station = self.station
        with station.custody.transaction() as tx:
            for item, sent in verified:
                sha, target, lock, remote = item.sha256, sent.target, sent.lock, sent.remote
                assert remote is not None
                done = station.clock()
                entry = station.custody.record(
                    tx, kind=EventKind.REPLICATED, actor=self.actor, item=sha, at=done,
                    data={"target": target.name, "key": remote.key, "size": remote.size,
                          "sha256": remote.sha256, "version_id": remote.version_id,
                          "retain_until": format_time(remote.retain_until)
                          if remote.retain_until else None, "legal_hold": remote.legal_hold,
                          "location": target.location, "read_back": remote.read_back,
                          **({"set_aside": remote.set_aside} if remote.set_aside else {})},
                )
                # counted as sent; proven (so that copies elsewhere may go) only if read back
                tx.replica_verified(
                    sha, target.name, key=remote.key, size=remote.size,
                    remote_sha256=remote.sha256, retain_until=lock.retain_until,
                    hold=lock.legal_hold, location=target.location, read_back=remote.read_back,
                    at=done, ledger_seq=entry.seq,
                )
        # only once committed: the report never claims a copy the catalog does not record
        report.verified.extend({"sha256": item.sha256, "target": sent.target.name}
                               for item, sent in verified)

    def _failed(self, target: Target, sha: str, error: str, report: ReplicationReport, *,
                bad: bool = False, bad_version: str | None = None) -> None:
        with self.station.catalog.write() as tx:
            if bad:
                tx.replica_found_bad(sha, target.name, version_id=bad_version,
                                    error=error, at=self.station.clock())
            else:
                tx.replica_failed(sha, target.name, error=error[:2000], at=self.station.clock())
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

    def _prepare(self, report: ReplicationReport) -> set[str]:
        """Before a run: each target proven the place it was (else left out of this run, and
        its name returned), interrupted uploads queued again, and copies recorded at another
        location than a target's present one no longer counted."""
        station = self.station
        down: set[str] = set()
        for target in self.targets:
            if self._proven_just_now(target):
                continue
            try:
                prove_place(station, target)
            except TargetError as exc:
                down.add(target.name)
                report.unusable[target.name] = exc.message
                report.failed.append({"sha256": "", "target": target.name,
                                      "error": exc.message})
                log.error("target %s cannot be used: %s", target.name, exc.message,
                          extra={"event": "target_unusable"})
        with station.catalog.write() as tx:
            tx.interrupt_uploads(station.clock())
            for target in self.targets:
                if target.name not in down:
                    tx.relocate_replicas(target.name, target.location, station.clock(),
                                        station=station.name)
        return down

    def _run(self, *, limit: int | None) -> ReplicationReport:
        report = ReplicationReport()
        station = self.station
        station.custody.check_signing_key()  # before any copy leaves unsigned
        down = self._prepare(report)  # unreachable this run: tried again at the next one
        names = [t.name for t in self.targets]
        with station.catalog.read() as tx:
            queue = tx.replication_queue(names, limit=limit, station=station.name)
            first = first_in_line(tx, queue, names)
        run = _Pass(down=down, gates={target.name: threading.Event() for target in self.targets},
                    first=first, order={item.sha256: n for n, item in enumerate(queue)})
        # Several items travel at once (small ones are mostly round trips); each starts in
        # deadline order and is recorded in that order, so the ledger follows the deadlines.
        # What has finished by the time the next in line is recorded is recorded with it, in
        # one transaction. A copy that raised ends the run, but what finished before it in
        # that order is recorded first (those copies are made). An error here (recording, an
        # interrupt) ends it too: no copy not yet begun starts while the pool winds down.
        parallel = station.settings.scheduler.replication_parallel
        with ThreadPoolExecutor(max_workers=parallel,
                                thread_name_prefix="ingestd-replicate") as pool:
            waiting = deque((item, pool.submit(self._send_all, item, run)) for item in queue)
            try:
                while waiting:
                    waiting[0][1].result()  # the next in deadline order; its error ends the run
                    ready: list[tuple[Item, _Sent]] = []
                    while (waiting and waiting[0][1].done()
                           and waiting[0][1].exception() is None):
                        item, future = waiting.popleft()
                        ready.extend((item, one) for one in future.result())
                    self._settle(ready, report)
            except BaseException:
                run.broken = True
                raise
        report.locks_extended = self.extend_locks(report)
        with station.catalog.read() as tx:
            report.pending = len(tx.replication_queue(names, station=station.name))
        return report

    def _send_all(self, item: Item, run: _Pass) -> list[_Sent]:
        """Send one item to every target that lacks it and can be used, each in its turn
        (see ``_Pass``)."""
        try:
            return self._send_each(item, run)
        except BaseException:
            run.broken = True  # its error ends the run: no other copy starts meanwhile
            raise
        finally:
            run.release(item.sha256)  # stopped, broken or done: none waits on it

    def _send_each(self, item: Item, run: _Pass) -> list[_Sent]:
        if self.cancel.is_set() or run.broken:
            return []
        with self.station.catalog.read() as tx:
            have = tx.verified_targets(item.sha256)
        out = []
        for target in self.targets:
            if target.name in have:
                continue
            gate = run.gates[target.name]
            first = run.turn(target.name, item.sha256)
            try:
                if self.cancel.is_set() or run.broken:
                    break
                with run.guard:
                    if target.name in run.down:
                        continue
                sent = self._send(target, item, taken=gate.set if first else None)
                if sent.unreachable:
                    with run.guard:
                        run.down.add(target.name)  # before the gate opens
                out.append(sent)
            except BaseException:
                if first:
                    run.broken = True  # before the gate opens: the rest stop there
                raise
            finally:
                if first:
                    gate.set()
        return out

    def extend_locks(self, report: ReplicationReport | None = None) -> list[dict[str, Any]]:
        """Raise the off-site lock wherever an item's retention grew or its hold changed.

        A lock that cannot be set is kept as the replica's last error (``status`` shows it),
        added to ``report.failed`` and tried again at the next run."""
        station = self.station
        by_name = {t.name: t for t in self.targets}
        done: list[dict[str, Any]] = []
        with station.catalog.read() as tx:
            behind = tx.locks_behind(station=station.name)
        for replica in behind:
            target = by_name.get(replica.target)
            if target is None:
                continue
            lock = lock_for(retain_until=replica.item_retain_until,
                            retention_class=replica.retention_class,
                            recorded_start=replica.recorded_start,
                            hold=replica.item_hold, now=station.clock(),
                            policy=station.settings.retention.policy())
            if _lock_in_place(replica, lock):
                # already as wanted: a long-term item (no retain-until in the catalog) or a
                # date capped at MAX_RETAIN_UNTIL, which locks_behind cannot see in SQL
                continue
            try:
                remote = target.set_lock(replica.item, lock)
            except TargetError as exc:
                log.error("cannot extend lock of %s on %s: %s", replica.item[:12],
                          target.name, exc.message, extra={"event": "lock_failed"})
                with station.catalog.write() as tx:
                    tx.replica_lock_failed(replica.item, target.name,
                                           error=exc.message[:2000], at=station.clock())
                if report is not None:
                    report.failed.append({"sha256": replica.item, "target": target.name,
                                          "error": exc.message})
                continue
            with station.custody.transaction() as tx:
                now = station.custody.now(tx)
                station.custody.record(
                    tx, kind=EventKind.RETENTION, actor=self.actor, item=replica.item, at=now,
                    data={"target": target.name, "class": replica.retention_class,
                          "retain_until": format_time(remote.retain_until)
                          if remote.retain_until else None, "legal_hold": remote.legal_hold},
                )
                tx.replica_locked(replica.item, target.name, retain_until=lock.retain_until,
                                  hold=replica.item_hold, at=now)
            done.append({"sha256": replica.item, "target": target.name,
                         "retain_until": format_time(lock.retain_until)
                         if lock.retain_until else "", "hold": replica.item_hold})
        return done

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Sign the ledger head and send it to every target, locked like evidence.

        A target whose newest checkpoint vouches for a head this ledger does not have (a
        fork, or entries this ledger lacks: a home restored from an older copy) gets none: we
        would publish a history that contradicts what the target already witnesses.

        With ``[timestamping] url``, the checkpoint is time-stamped before it is sent and the
        token goes beside it (``<name>.tsr``, under the same lock). An authority that fails is
        logged and the checkpoint goes without a token; the next one asks again. Whatever was
        published is recorded in a ``checkpointed`` ledger entry, token included; a ledger
        that has grown by such entries only has nothing new to publish."""
        station = self.station
        station.custody.sync_mirror()
        signed = sign_checkpoint(station)
        seq, head = signed.seq, signed.head_hash
        with station.catalog.read() as tx:
            keys = station.custody.trusted_keys(tx)
        now = station.clock()
        name = checkpoint_name(station.name, seq)
        lock = Lock(retain_until=long_term_until(now))
        sent: list[str] = []
        errors: list[str] = []
        failed: set[str] = set()  # the targets those errors are about
        stamp: Timestamp | None = None
        stamp_error: str | None = None
        asked = False
        for target in self.targets:
            with station.catalog.read() as tx:
                last = tx.last_checkpoint(target.name, station=station.name)
                fresh = last is None or not _only_checkpoints_since(tx, last.seq, seq)
            try:
                # asked even with nothing new: a home put back from an older copy is found at
                # the next run, not only once it has grown
                fork = self._fork_on(target, keys, seq)
                if fork is not None:
                    log.error("ALARM: %s", fork, extra={"event": "checkpoint_fork"})
                    errors.append(fork)
                    failed.add(target.name)
                    continue
                if not fresh:
                    continue  # nothing new since the last one: a checkpoint is never rewritten
                if not asked:
                    asked = True
                    stamp, stamp_error = self._timestamp(signed)
                target.put_checkpoint(name, signed.to_bytes(), lock)
                if stamp is not None:
                    target.put_checkpoint(token_name(name), stamp.token, lock)
            except TargetError as exc:
                errors.append(exc.message)
                failed.add(target.name)
                continue
            with station.catalog.write() as tx:
                tx.add_checkpoint(target=target.name, name=name, seq=seq, head_hash=head or "",
                                  at=now)
                tx.remember_checkpoint(station=station.name, target=target.name,
                                      name=name, seq=seq, head_hash=head or "", at=now)
            sent.append(target.name)
        if sent:
            record_checkpoint(station, signed, stamp, sent=sent, stamp_error=stamp_error,
                              actor=self.actor)
        return {"name": name, "seq": seq, "head_hash": head, "sent": sent, "errors": errors,
                "unchanged": [t.name for t in self.targets
                              if t.name not in sent and t.name not in failed],
                "timestamp": {"tsa": stamp.tsa, "gen_time": format_time(stamp.gen_time),
                              "sha256": stamp.sha256} if stamp is not None else None,
                "timestamp_error": stamp_error}

    def _timestamp(self, signed: SignedCheckpoint) -> tuple[Timestamp | None, str | None]:
        """The checkpoint's time-stamp, or why there is none: a failing authority never
        keeps a checkpoint from being published."""
        try:
            return timestamp_checkpoint(self.station, signed), None
        except TimestampError as exc:
            log.error("checkpoint of entry %d goes without a time-stamp: %s", signed.seq,
                      exc.message, extra={"event": "timestamp_failed"})
            return None, exc.message

    def _fork_on(self, target: Target, keys: KeyChain,
                 head_seq: int) -> str | None:
        """Why publishing on ``target`` would fork its history, or None. Its newest checkpoint
        (of every version, a misnamed copy skipped) must name an entry of this ledger."""
        station = self.station
        mine = [v for v in target.checkpoint_versions()
                if v.name.startswith(f"{station.name}-")]
        for version in sorted(mine, key=lambda v: (v.name, v.latest), reverse=True):
            found, _ = _read_checkpoints(target, [version], station, keys)
            if not found or found[0].misnamed:
                continue
            newest = found[0]
            with station.catalog.read() as tx:
                entry = next(tx.iter_entries(after=newest.seq - 1, batch=1), None)
            if newest.seq > head_seq or entry is None or entry.seq != newest.seq:
                return (f"target {target.name} holds checkpoint {newest.where} of entry "
                        f"{newest.seq}, but this ledger ends at {head_seq}: not publishing "
                        "(was the home restored from an older copy?)")
            if newest.seq and entry.entry_hash != newest.head_hash:
                return (f"target {target.name} holds checkpoint {newest.where} whose entry "
                        f"{newest.seq} differs from this ledger's: not publishing a forked "
                        "history")
            return None
        return None


@dataclass(frozen=True, kw_only=True)
class _Witness:
    """One signed checkpoint of this station, as a target holds it."""

    name: str
    where: str
    seq: int
    head_hash: str
    misnamed: bool
    body: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes = b""  # as the target holds it
    latest: bool = True  # the version a plain read gets


def _only_checkpoints_since(tx: CatalogTx, last: int, head: int) -> bool:
    """Whether the ledger has grown since entry ``last`` by ``checkpointed`` entries only (or
    not at all): then the checkpoint published at ``last`` still says all there is to say."""
    if head == last:
        return True
    if head < last:
        return False
    return all(e.kind == EventKind.CHECKPOINTED for e in tx.iter_entries(after=last, upto=head))


def _read_checkpoints(target: Target, versions: list[CheckpointVersion], station: Station,
                      keys: KeyChain) -> tuple[list[_Witness], list[Discrepancy]]:
    """This station's signed checkpoints among ``versions``, and what is wrong with others."""
    found: list[_Witness] = []
    problems: list[Discrepancy] = []
    for version in versions:
        where = f"{target.name}/{version.name}"
        if version.version_id and not version.latest:
            where += f" (earlier version {version.version_id})"
        try:
            published = target.get_checkpoint(version.name, version.version_id)
            raw = json.loads(published)
            body = raw["checkpoint"]
            signature = raw["signature"]
            seq = int(body["seq"])
        except (TargetError, ValueError, KeyError, TypeError) as exc:
            problems.append(CheckpointProblem(kind=K.CHECKPOINT_UNREADABLE,
                                              detail=f"{where}: {exc}"))
            continue
        if body.get("station") != station.name:
            continue  # another station's checkpoint on a shared target
        # Checkpoints before version 2 carry no fingerprint; those that do must carry ours. A
        # home rewritten with a key of its own, pin included, differs here first.
        pinned = body.get("genesis_fingerprint")
        if pinned is not None and pinned != station.custody.pin:
            problems.append(BadSignature(
                kind=K.PIN_MISMATCH, seq=seq,
                detail=f"{where} pins the first key {pinned}, this home pins "
                       f"{station.custody.pin or 'none'}"))
        key = keys.keys.get(str(body.get("key_id")))
        if key is None or key.station not in (None, station.name) or not key.public.verify(
                str(signature), canonical_bytes(body)):
            problems.append(CheckpointProblem(
                kind=K.CHECKPOINT_BAD_SIGNATURE, seq=seq,
                detail=f"{where} is not signed by a key the ledger vouches for"))
            continue
        misnamed = version.name != checkpoint_name(station.name, seq)
        if misnamed:
            problems.append(CheckpointProblem(
                kind=K.CHECKPOINT_MISNAMED, seq=seq,
                detail=f"{where} holds the checkpoint of entry {seq}, not the one its name "
                       "says: a checkpoint copied over another"))
        found.append(_Witness(name=version.name, where=where, seq=seq,
                              head_hash=str(body.get("head_hash") or ""), misnamed=misnamed,
                              body=body, raw=published,
                              latest=not version.version_id or version.latest))
    return found, problems


def _against_ledger(witness: _Witness, hashes: Mapping[int, str],
                    head: int) -> Discrepancy | None:
    if witness.seq > head:
        return CheckpointProblem(
            kind=K.LEDGER_TRUNCATED, seq=witness.seq,
            detail=f"{witness.where} vouches for entry {witness.seq}, but the local ledger "
                   f"ends at {head}")
    if witness.seq and hashes.get(witness.seq) != witness.head_hash:
        return CheckpointProblem(
            kind=K.LEDGER_REWRITTEN, seq=witness.seq,
            detail=f"entry {witness.seq} differs from what {witness.where} vouches for")
    return None


def version_at(target: Target, sha: str) -> str | None:
    """The version of the object now at the item's key (to remember a bad one), if known."""
    try:
        remote = target.head_item(sha)
    except TargetError:
        return None
    return remote.version_id if remote else None


def verify_offsite(station: Station, targets: list[Target]) -> list[Discrepancy]:
    """Compare the local ledger with every version of every signed checkpoint the targets
    hold, and with the newest one each target was ever seen to hold; a version-3 checkpoint's
    Merkle tree with the ledger's at its size, and each time-stamp token kept beside a
    checkpoint with that checkpoint (and ``[timestamping] ca_file``)."""
    problems: list[Discrepancy] = []
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)
        hashes = {e.seq: e.entry_hash for e in tx.entries_to_check()}
        known = {t.name: tx.newest_checkpoint_seen(station=station.name, target=t.name)
                 for t in targets}
        # (checkpoint, target) of every token the ledger records as sent
        stamped = {(p.name, sent) for p in published_checkpoints(tx, station=station.name)
                   if p.token is not None for sent in p.sent}
    head = max(hashes, default=0)
    witnessed: list[_Witness] = []
    for target in targets:
        try:
            # A share that did not mount lists no checkpoints: that must not read as intact.
            prove_place(station, target, adopt=False)
            versions = target.checkpoint_versions()
            tokens = target.checkpoint_versions(tokens=True)
        except TargetError as exc:
            problems.append(CheckpointProblem(kind=K.OFFSITE_UNREACHABLE, detail=exc.message))
            continue
        found, unreadable = _read_checkpoints(target, versions, station, keys)
        problems.extend(_token_problems(station, target, found, tokens, stamped))
        problems.extend(unreadable)
        for witness in found:
            behind = _against_ledger(witness, hashes, head)
            if behind is not None:
                problems.append(behind)
            else:
                witnessed.append(witness)  # its head is the ledger's: now its tree
        problems.extend(_lost(target.name, found, known[target.name], hashes, head))
        named = [w for w in found if not w.misnamed]
        newest = max(named, key=lambda w: w.seq, default=None)
        if newest is not None:
            with station.catalog.write() as tx:
                tx.remember_checkpoint(station=station.name, target=target.name,
                                      name=newest.name, seq=newest.seq,
                                      head_hash=newest.head_hash, at=station.clock())
    problems.extend(_tree_problems(witnessed, hashes, head))
    return problems


def _tree_problems(witnessed: list[_Witness], hashes: Mapping[int, str],
                   head: int) -> list[Discrepancy]:
    """Each version-3 checkpoint's tree against the ledger's at its size: every root wanted
    computed in one pass over the ledger's leaves."""
    sizes = tree_sizes(w.body for w in witnessed)
    if not sizes or any(seq not in hashes for seq in range(1, min(max(sizes), head) + 1)):
        return []  # a gap in the chain: its check names it, and no root can be trusted
    leaves = (merkle.leaf_hash(bytes.fromhex(hashes[seq])) for seq in range(1, head + 1))
    roots = merkle.roots_at(leaves, sizes)
    return [p for w in witnessed if (p := tree_problem(w.body, roots, w.where, w.seq))]


def _token_problems(station: Station, target: Target, found: list[_Witness],
                    tokens: list[CheckpointVersion],
                    stamped: set[tuple[str, str]]) -> list[Discrepancy]:
    """The time-stamp token beside each checkpoint (its current version): it must be a
    trusted time-stamp of that checkpoint's bytes, and be there when the ledger records it
    sent there."""
    current = {v.name: v for v in tokens if not v.version_id or v.latest}
    problems: list[Discrepancy] = []
    for witness in found:
        if not witness.latest or witness.misnamed:
            continue
        token = current.get(token_name(witness.name))
        if token is None:
            if (witness.name, target.name) in stamped:
                problems.append(CheckpointRecordProblem(
                    kind=K.TIMESTAMP_MISSING, seq=witness.seq,
                    detail=f"{target.name} no longer holds {token_name(witness.name)}, the "
                           f"time-stamp the ledger records sent there with {witness.name}"))
            continue
        where = f"{target.name}/{token.name}"
        try:
            body = target.get_checkpoint(token.name, token.version_id)
        except TargetError as exc:
            problems.append(CheckpointRecordProblem(
                kind=K.TIMESTAMP_INVALID, seq=witness.seq,
                detail=f"{where} cannot be read: {exc.message}"))
            continue
        why = token_problem(station, body, witness.raw, where)
        if why is not None:
            problems.append(CheckpointRecordProblem(
                kind=K.TIMESTAMP_INVALID, seq=witness.seq,
                detail=f"{why} (the time-stamp of {witness.where})"))
    return problems


def _lost(target: str, found: list[_Witness], known: Checkpoint | None,
          hashes: Mapping[int, str], head: int) -> list[Discrepancy]:
    """A target that holds less than it was once seen to hold was cut (or rolled back)."""
    if known is None:
        return []
    newest = max((w.seq for w in found if not w.misnamed), default=0)
    if newest >= known.seq:
        return []
    seen = format_time(known.at)
    remembered = _Witness(name=known.name, seq=known.seq,
                          where=f"{target}/{known.name} (seen there {seen})",
                          head_hash=known.head_hash, misnamed=False)
    out: list[Discrepancy] = [CheckpointProblem(
        kind=K.CHECKPOINT_MISSING, seq=remembered.seq,
        detail=f"{target} no longer holds {remembered.name} (entry {remembered.seq}, seen there "
               f"{seen}); the newest it holds is entry {newest or 'none'}")]
    behind = _against_ledger(remembered, hashes, head)
    if behind is not None:
        out.append(behind)
    return out
