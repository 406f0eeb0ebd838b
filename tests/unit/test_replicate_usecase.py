"""Replication to a directory target, as the use case: each copy is recorded verified and,
read back, proven, with its signed manifest beside it; a damaged local copy is never sent; a
label's longer retention extends the lock before the copy counts as safe again; a target that
cannot be reached keeps the queue; signed checkpoints are written once, read back and checked
against the ledger."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from usecase_helpers import PREFIX, TARGET, Bench, bench

from ingestd.domain.canonical import canonical_bytes
from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind, Recorder, RetentionClass
from ingestd.domain.records import Checkpoint, ReplicaState
from ingestd.integrity.discrepancy import DiscrepancyKind
from ingestd.targets.factory import build_targets, target_locations
from ingestd.usecases import registry
from ingestd.usecases import replicate as replicate_module
from ingestd.usecases.casework import label
from ingestd.usecases.replicate import Replicator, checkpoint_name, verify_offsite
from tests.support.damage import flip_bit


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, target=True) as made:
        yield made


def replicate(b: Bench) -> Replicator:
    b.clock.advance(minutes=1)
    return Replicator(b.station, actor="tester")


def proven(b: Bench, sha: str) -> set[str]:
    with b.station.catalog.read() as tx:
        return tx.proven_targets(sha, target_locations(b.station.settings))


def test_each_copy_is_recorded_verified_and_proven_with_its_manifest(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]

    report = replicate(b).run()

    assert report.ok and report.pending == 0
    assert sorted(v["sha256"] for v in report.verified) == sorted(shas)
    assert {v["target"] for v in report.verified} == {TARGET}
    (location,) = target_locations(b.station.settings).values()
    for sha in shas:
        assert b.copy_on_target(sha).read_bytes() == b.object(sha).read_bytes()
        replica = b.replica(sha)
        assert replica is not None
        assert (replica.state, replica.remote_sha256, replica.size, replica.location) == (
            ReplicaState.VERIFIED, sha, b.item(sha).size, location)
        assert replica.proven_at == b.clock.now and not replica.rewrite
        item = b.item(sha)
        assert replica.retain_until is not None and item.retain_until is not None
        assert replica.retain_until >= item.retain_until
        assert proven(b, sha) == {TARGET}
        (entry,) = b.entries([EventKind.REPLICATED], item=sha)
        assert (entry.actor, entry.data["target"], entry.data["sha256"]) == (
            "tester", TARGET, sha)
        assert replica.ledger_seq == entry.seq
        assert b.nas is not None
        signed = json.loads((b.nas / PREFIX / "manifests" / f"{sha}.json").read_bytes())
        body = signed["manifest"]
        assert (body["item"], body["recorder"], body["size"]) == (sha, item.recorder, item.size)
        assert b.station.key.public.verify(signed["signature"], canonical_bytes(body))

    head = b.head()
    again = replicate(b).run()
    assert (again.verified, again.failed, again.pending) == ([], [], 0)
    assert b.head() == head, "a copy made already was recorded again"
    b.assert_ledger_verifies()


def test_a_damaged_local_copy_is_never_sent(b: Bench) -> None:
    bad, good = (i.sha256 for i in b.dock(b.photos("rec", 2)).items)
    flip_bit(b.object(bad), 50)

    report = replicate(b).run()

    assert not report.ok
    assert [v["sha256"] for v in report.verified] == [good]
    assert [(f["sha256"], f["target"]) for f in report.failed] == [(bad, TARGET)]
    assert report.pending == 1
    # Nothing of it off-site: no copy, no partial file beside the good one.
    assert sorted(p.name for p in b.copy_on_target(good).parent.iterdir()) == [good]
    replica = b.replica(bad)
    assert replica is not None and replica.state == ReplicaState.FAILED
    assert replica.last_error == report.failed[0]["error"]
    assert proven(b, bad) == set()
    with b.station.catalog.read() as tx:
        assert tx.has_flag(bad, Flag.FIXITY_FAILED)
    assert [e.data["flag"] for e in b.entries([EventKind.FLAGGED], item=bad)] == [
        Flag.FIXITY_FAILED]
    b.assert_ledger_verifies()


def test_a_longer_retention_extends_the_lock_before_the_copy_counts_as_safe(b: Bench) -> None:
    (sha,) = (i.sha256 for i in b.dock(b.photos("rec", 1)).items)
    assert replicate(b).run().ok
    b.clock.advance(minutes=1)
    label(b.station, [sha], case="(2026)JX-0001", party="Zhao Lei", actor="tester")
    item = b.item(sha)
    assert item.retention_class == RetentionClass.EVIDENCE and item.retain_until is not None
    assert proven(b, sha) == set(), "a copy whose lock is shorter than the item's counted"

    report = replicate(b).run()

    assert [(x["sha256"], x["target"]) for x in report.locks_extended] == [(sha, TARGET)]
    replica = b.replica(sha)
    assert replica is not None and replica.retain_until is not None
    assert replica.retain_until >= item.retain_until
    assert proven(b, sha) == {TARGET}
    (extended,) = [e for e in b.entries([EventKind.RETENTION], item=sha)
                   if e.data.get("target") == TARGET]
    assert extended.data["class"] == RetentionClass.EVIDENCE
    assert b.nas is not None
    sidecar = json.loads((b.nas / PREFIX / "locks" / "sha256" / f"{sha}.json").read_text())
    assert sidecar["retain_until"] >= item.retain_until.strftime("%Y-%m-%dT%H:%M:%S")
    b.assert_ledger_verifies()


def test_a_target_that_cannot_be_reached_keeps_the_queue(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]
    assert b.nas is not None
    b.nas.rmdir()  # the share did not mount

    report = replicate(b).run()

    assert report.verified == [] and report.pending == 2
    assert [(f["sha256"], f["target"]) for f in report.failed] == [("", TARGET)]
    assert "is not a directory" in report.failed[0]["error"]
    assert report.as_dict()["unusable"] == {TARGET: report.failed[0]["error"]}
    assert all(b.replica(sha) is None for sha in shas)
    assert b.entries([EventKind.REPLICATED]) == []

    b.nas.mkdir()  # mounted again: the next run sends them
    again = replicate(b).run()
    assert again.ok and sorted(v["sha256"] for v in again.verified) == sorted(shas)


def test_a_checkpoint_is_written_once_and_read_back(b: Bench) -> None:
    b.dock(b.photos("rec", 1))
    replicator = replicate(b)
    assert replicator.run().ok
    with b.station.catalog.read() as tx:
        seq, head_hash = tx.ledger_head()

    sent = replicator.checkpoint()

    name = checkpoint_name(b.station.name, seq)
    assert (sent["name"], sent["seq"], sent["head_hash"], sent["sent"], sent["errors"]) == (
        name, seq, head_hash, [TARGET], [])
    assert b.nas is not None
    folder = b.nas / PREFIX / "checkpoints"
    assert [p.name for p in folder.iterdir()] == [name]
    with b.station.catalog.read() as tx:
        last = tx.last_checkpoint(TARGET, station=b.station.name)
    assert last == Checkpoint(target=TARGET, name=name, seq=seq, head_hash=head_hash or "",
                              at=b.clock.now)
    targets = build_targets(b.station.settings)
    assert verify_offsite(b.station, targets) == []  # read back: it vouches for this ledger

    # Nothing new: nothing rewritten. New entries: a checkpoint of its own.
    b.clock.advance(minutes=1)
    unchanged = replicator.checkpoint()
    assert (unchanged["sent"], unchanged["unchanged"]) == ([], [TARGET])
    registry.register(b.station, Recorder(serial="BWC-0002", officer="Li Na", officer_id="2"),
                      actor="tester")
    with b.station.catalog.read() as tx:
        # the entry recording the first checkpoint, then the registration
        grown, _ = tx.ledger_head()
        assert [e.kind for e in tx.iter_entries(after=seq)] == ["checkpointed", "registry"]
    later = replicator.checkpoint()
    assert later["sent"] == [TARGET] and later["seq"] == grown == seq + 2
    assert sorted(p.name for p in folder.iterdir()) == [name, later["name"]]
    assert verify_offsite(b.station, targets) == []

    # A checkpoint altered on the share no longer vouches for anything.
    path = folder / name
    signed = json.loads(path.read_bytes())
    signed["checkpoint"]["head_hash"] = "0" * 64
    path.chmod(0o644)
    path.write_bytes(canonical_bytes(signed))
    found = verify_offsite(b.station, targets)
    assert [(p.kind, p.seq) for p in found] == [
        (DiscrepancyKind.CHECKPOINT_BAD_SIGNATURE, seq)]


def test_a_fault_in_the_copy_that_tries_a_target_first_starts_no_other(b: Bench) -> None:
    """Not a refusal the target answers but a fault in ingestd's own copy: the run ends with
    it, the items behind it are not sent meanwhile, and the next run sends them all."""
    shas = [i.sha256 for i in b.dock(b.photos("rec", 5)).items]
    (target,) = build_targets(b.station.settings)
    real = target.put_item
    tried: list[str] = []

    def faulty(sha256: str, *args: Any, **kwargs: Any) -> Any:
        tried.append(sha256)
        if len(tried) == 1:
            raise RuntimeError("a fault in the copy")
        return real(sha256, *args, **kwargs)

    target.put_item = faulty  # type: ignore[method-assign]
    b.clock.advance(minutes=1)
    with pytest.raises(RuntimeError, match="a fault in the copy"):
        Replicator(b.station, [target], actor="tester").run()

    assert len(tried) == 1, tried
    assert all(not b.copy_on_target(sha).exists() for sha in shas)
    assert b.entries([EventKind.REPLICATED]) == []

    again = replicate(b).run()
    assert again.ok and sorted(v["sha256"] for v in again.verified) == sorted(shas)
    for sha in shas:
        assert b.copy_on_target(sha).read_bytes() == b.object(sha).read_bytes()


def test_the_first_item_in_line_tries_the_target_however_late_its_thread_comes(
        b: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is tried first by the first item in deadline order, not by whichever copy
    reached it first: here the first item's thread is held back until another item's copy
    has started, as a loaded machine may do, and the others still wait for it."""
    first = [i.sha256 for i in b.dock(b.photos("rec1", 1)).items]
    b.clock.advance(hours=2)
    later = [i.sha256 for i in b.dock(b.photos("rec2", 3, first=10)).items]
    (target,) = build_targets(b.station.settings)
    real_put = target.put_item
    puts: list[str] = []

    def put(sha256: str, *args: Any, **kwargs: Any) -> Any:
        puts.append(sha256)
        return real_put(sha256, *args, **kwargs)

    target.put_item = put  # type: ignore[method-assign]
    real_send_all = Replicator._send_all
    another_started = threading.Event()

    def send_all(self: Replicator, item: Any, run: Any) -> Any:
        if item.sha256 == first[0]:
            assert another_started.wait(10), "no other item's copy started"
            time.sleep(0.3)  # time enough for it to reach the target, were it let
        else:
            another_started.set()
        return real_send_all(self, item, run)

    monkeypatch.setattr(Replicator, "_send_all", send_all)
    b.clock.advance(minutes=1)
    report = Replicator(b.station, [target], actor="tester").run()

    assert report.ok
    assert puts[0] == first[0], puts
    assert sorted(puts) == sorted(first + later)
    assert [e.item for e in b.entries([EventKind.REPLICATED])][0] == first[0]


def test_a_first_item_that_fails_before_its_copy_holds_no_other_back_and_starts_none(
        b: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The item chosen to try the target first fails before it gets there (here, its
    reading of the catalog): the others are not left waiting for it, and start no copy."""
    first = [i.sha256 for i in b.dock(b.photos("rec1", 1)).items]
    b.clock.advance(hours=2)
    later = [i.sha256 for i in b.dock(b.photos("rec2", 3, first=10)).items]
    (target,) = build_targets(b.station.settings)
    real_send_each = Replicator._send_each

    def send_each(self: Replicator, item: Any, run: Any) -> Any:
        if item.sha256 == first[0]:
            time.sleep(0.3)  # the others are at the gate by now
            raise RuntimeError("the catalog could not be read")
        return real_send_each(self, item, run)

    monkeypatch.setattr(Replicator, "_send_each", send_each)
    b.clock.advance(minutes=1)
    with pytest.raises(RuntimeError, match="the catalog could not be read"):
        Replicator(b.station, [target], actor="tester").run()

    assert all(not b.copy_on_target(sha).exists() for sha in first + later)
    assert b.entries([EventKind.REPLICATED]) == []


def test_an_item_that_loses_its_copy_after_the_plan_still_gets_a_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One copy at a time. The first item holds target B, the second holds neither A nor B,
    so the second is planned to try B first. Right after the plan, an audit running beside
    the replication finds the first item's copy on B bad: that item now has B to send
    before the second has even started. It takes B's first try in place of the second, and
    the run ends with every copy made, rather than waiting for an item that cannot start
    until it is done."""
    nas_b = tmp_path / "nas-b"
    nas_b.mkdir()
    second_target = (f'[[targets]]\nname = "nas-b"\ntype = "directory"\npath = "{nas_b}"\n'
                     f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n'
                     "[scheduler]\nreplication_parallel = 1\n")
    with bench(tmp_path, target=True, config=second_target) as b:
        a, b_target = build_targets(b.station.settings)
        assert (a.name, b_target.name) == (TARGET, "nas-b")
        (early,) = [i.sha256 for i in b.dock(b.photos("rec1", 1)).items]
        b.clock.advance(minutes=1)
        assert Replicator(b.station, [b_target], actor="tester").run().ok
        b.clock.advance(hours=2)
        (late,) = [i.sha256 for i in b.dock(b.photos("rec2", 1, first=10)).items]

        real_plan = replicate_module.first_in_line

        def plan_then_audit(tx: Any, queue: Any, names: Any) -> dict[str, str]:
            first = real_plan(tx, queue, names)
            assert first == {TARGET: early, "nas-b": late}
            with b.station.catalog.write() as audit:
                audit.replica_found_bad(early, "nas-b", version_id=None,
                                        error="the copy does not hash to the item",
                                        at=b.clock())
            return first

        runs: list[Any] = []
        real_turn = replicate_module._Pass.turn

        def turn(self: Any, target: str, item: str) -> bool:
            runs.append(self)
            return bool(real_turn(self, target, item))

        monkeypatch.setattr(replicate_module, "first_in_line", plan_then_audit)
        monkeypatch.setattr(replicate_module._Pass, "turn", turn)
        b.clock.advance(minutes=1)
        done: list[Any] = []
        worker = threading.Thread(
            target=lambda: done.append(Replicator(b.station, actor="tester").run()),
            daemon=True)
        worker.start()
        worker.join(20)
        stuck = worker.is_alive()
        if stuck:  # let it end, then fail
            for gate in runs[0].gates.values():
                gate.set()
            worker.join(20)
        assert not stuck, "the run waited for an item that could not start"

        (report,) = done
        assert report.ok, report.failed
        assert sorted((v["sha256"], v["target"]) for v in report.verified) == sorted(
            [(early, TARGET), (early, "nas-b"), (late, TARGET), (late, "nas-b")])
        for sha in (early, late):
            assert b.copy_on_target(sha).read_bytes() == b.object(sha).read_bytes()
            assert (nas_b / PREFIX / "sha256" / sha).read_bytes() == b.object(sha).read_bytes()


def queued(b: Bench) -> list[str]:
    with b.station.catalog.read() as tx:
        return [i.sha256 for i in tx.replication_queue([TARGET], station=b.station.name)]


def replicated(b: Bench) -> list[str]:
    return [e.item for e in b.entries([EventKind.REPLICATED])]


def test_a_fault_in_a_later_copy_still_records_the_copies_made_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three copies at once; the third raises (a fault, not a refusal) while the first is
    still finishing. The run ends with the fault, but the first two, made and earlier in
    deadline order, are recorded; the next run sends the third."""
    with bench(tmp_path, target=True,
               config="[scheduler]\nreplication_parallel = 3\n") as b:
        b.dock(b.photos("rec", 3))
        q0, q1, q2 = queued(b)
        (target,) = build_targets(b.station.settings)
        real_put = target.put_item
        q1_sent, q2_failed = threading.Event(), threading.Event()

        def put(sha256: str, *args: Any, **kwargs: Any) -> Any:
            if sha256 == q2:
                assert q1_sent.wait(10)
                raise RuntimeError("a fault in the third copy")
            sent = real_put(sha256, *args, **kwargs)
            if sha256 == q1:
                q1_sent.set()
            return sent

        target.put_item = put  # type: ignore[method-assign]
        real_send_all = Replicator._send_all

        def send_all(self: Replicator, item: Any, run: Any) -> Any:
            try:
                sent = real_send_all(self, item, run)
            except RuntimeError:
                q2_failed.set()
                raise
            if item.sha256 == q0:  # the first ends only once the third has failed
                assert q2_failed.wait(10)
            return sent

        monkeypatch.setattr(Replicator, "_send_all", send_all)
        b.clock.advance(minutes=1)
        with pytest.raises(RuntimeError, match="a fault in the third copy"):
            Replicator(b.station, [target], actor="tester").run()

        assert replicated(b) == [q0, q1]
        for sha in (q0, q1):
            replica = b.replica(sha)
            assert replica is not None and replica.state == ReplicaState.VERIFIED
        assert not b.copy_on_target(q2).exists()
        assert queued(b) == [q2]

        again = replicate(b).run()
        assert again.ok and [v["sha256"] for v in again.verified] == [q2]
        assert replicated(b) == [q0, q1, q2]
        for sha in (q0, q1, q2):
            assert b.copy_on_target(sha).read_bytes() == b.object(sha).read_bytes()


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_an_error_while_recording_starts_no_other_copy_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]) -> None:
    """The run fails while it records the first copies made: the catalog cannot be written
    (OSError), or an operator's Ctrl-C reaches ``ingestd replicate`` as it records
    (KeyboardInterrupt). The copies already under way may end; none of the rest starts.
    The next run sends and records every item."""
    with bench(tmp_path, target=True,
               config="[scheduler]\nreplication_parallel = 2\n") as b:
        shas = [i.sha256 for i in b.dock(b.photos("rec", 8)).items]
        (target,) = build_targets(b.station.settings)
        real_put = target.put_item
        puts: list[str] = []
        began_when_failed: list[int] = []

        def put(sha256: str, *args: Any, **kwargs: Any) -> Any:
            puts.append(sha256)
            time.sleep(0.05)
            return real_put(sha256, *args, **kwargs)

        target.put_item = put  # type: ignore[method-assign]
        real_record = Replicator._record_verified

        def record_verified(self: Replicator, verified: Any, report: Any) -> None:
            if verified:
                began_when_failed.append(len(puts))
                raise error("the catalog's disk is full")

        monkeypatch.setattr(Replicator, "_record_verified", record_verified)
        b.clock.advance(minutes=1)
        with pytest.raises(error, match="the catalog's disk is full"):
            Replicator(b.station, [target], actor="tester").run()
        # Beyond those begun when it failed: the two under way, and at most one more that a
        # worker took up in the instant before the run was marked broken.
        assert len(puts) <= began_when_failed[0] + 3, (
            f"{len(puts)} of 8 copies began, {began_when_failed[0]} before the run failed")
        assert len(puts) < len(shas)
        assert replicated(b) == []

        monkeypatch.setattr(Replicator, "_record_verified", real_record)
        again = Replicator(b.station, [target], actor="tester").run()
        assert again.ok and sorted(v["sha256"] for v in again.verified) == sorted(shas)
        assert sorted(replicated(b)) == sorted(shas)
        for sha in shas:
            assert b.copy_on_target(sha).read_bytes() == b.object(sha).read_bytes()
        b.assert_ledger_verifies()


def test_replication_goes_oldest_deadline_first(b: Bench) -> None:
    first = [i.sha256 for i in b.dock(b.photos("rec1", 1)).items]
    b.clock.advance(hours=2)
    second = [i.sha256 for i in b.dock(b.photos("rec2", 1, first=10)).items]
    assert b.item(first[0]).replication_deadline + timedelta(hours=2) == (
        b.item(second[0]).replication_deadline)

    report = replicate(b).run()

    assert [v["sha256"] for v in report.verified] == first + second
    assert [e.item for e in b.entries([EventKind.REPLICATED])] == first + second


def test_a_target_proven_by_check_is_proven_again_only_by_a_later_run(
    b: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ingestd replicate`` proves each target once (``check``, then the run); a run that
    comes later than moments after the check (the daemon's next one) proves it again."""
    b.dock(b.photos("rec", 1))
    replicator = replicate(b)
    (target,) = replicator.targets
    checks: list[str] = []
    real_check = target.check
    monkeypatch.setattr(target, "check", lambda: (checks.append(target.name), real_check()))

    replicator.check()
    assert replicator.run().ok
    assert checks == [TARGET], "proven once: by check, not again by the run that followed"

    assert replicator.run().ok
    assert checks == [TARGET, TARGET], "a second run proves it again"

    replicator.check()
    monkeypatch.setattr("ingestd.usecases.replicate.PROOF_FRESH", 0.0)
    assert replicator.run().ok
    assert checks == [TARGET] * 4, "a check long past does not spare the run its proof"
