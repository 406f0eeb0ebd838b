"""Audits and verification, as the use cases: ``audit`` re-hashes every item (or a sample)
and reads off-site copies back, flagging what no longer hashes to its item; ``audit_fast``
looks at every object without reading it, finds what is missing or of another size, and
changes nothing in the store; ``verify_files`` and ``verify_hash`` say whether bytes are this
station's evidence, intact and signed."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERIAL, sha256_of, snapshot_tree
from usecase_helpers import MEDIA, TARGET, Bench, bench, photo, photo_name

from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind
from ingestd.domain.records import ReplicaState
from ingestd.errors import TargetError, UsageError
from ingestd.integrity.discrepancy import DiscrepancyKind as K
from ingestd.targets import Target
from ingestd.targets.factory import build_targets, target_locations
from ingestd.usecases.audit import OrphanAction, audit, audit_fast
from ingestd.usecases.replicate import Replicator
from ingestd.usecases.retention import sweep
from ingestd.usecases.verify import verify_files, verify_hash
from tests.support.damage import flip_bit


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path) as made:
        yield made


def stored(b: Bench, count: int = 3) -> list[str]:
    shas = [i.sha256 for i in b.dock(b.photos("rec", count)).items]
    b.clock.advance(minutes=1)
    return shas


def flags(b: Bench, sha: str) -> set[Flag]:
    with b.station.catalog.read() as tx:
        return {f.flag for f in tx.item_flags(sha)}


def writable(path: Path) -> Path:
    path.chmod(0o640)  # the store and the target keep their files read-only
    return path


# -- the full audit ---------------------------------------------------------------------------


def test_an_intact_store_passes_and_each_item_gets_its_entry(b: Bench) -> None:
    shas = stored(b)
    before = snapshot_tree(b.station.store.root)

    report = audit(b.station, sample=None, actor="tester")

    assert report.ok and (report.checked, report.decoded, report.orphans) == (3, 0, [])
    audited = b.entries([EventKind.AUDITED])
    assert sorted(e.item or "" for e in audited) == sorted(shas)
    assert all(e.data["fixity"] == "ok" and e.actor == "tester" for e in audited)
    assert all(flags(b, sha) == set() for sha in shas)
    assert snapshot_tree(b.station.store.root) == before
    b.assert_ledger_verifies()


def test_a_damaged_and_a_missing_object_are_found_and_flagged(b: Bench) -> None:
    damaged, missing, intact = stored(b)
    flip_bit(b.object(damaged), 20)
    b.object(missing).unlink()

    report = audit(b.station, sample=None, actor="tester")

    assert not report.ok and report.checked == 3
    assert sorted((d.item, d.kind) for d in report.found) == sorted(
        [(damaged, K.CHECKSUM_MISMATCH), (missing, K.OBJECT_MISSING)])
    assert flags(b, damaged) == flags(b, missing) == {Flag.FIXITY_FAILED}
    assert flags(b, intact) == set()
    (entry,) = b.entries([EventKind.AUDITED], item=damaged)
    assert entry.data["fixity"].startswith(f"object {damaged} is damaged")
    assert b.object(damaged).exists(), "an audit moved an item's object"
    b.assert_ledger_verifies()


@pytest.mark.parametrize("sample", [0, 2, 5])
def test_a_sample_checks_as_many_items_as_asked(b: Bench, sample: int) -> None:
    shas = stored(b)
    report = audit(b.station, sample=sample, actor="tester", rng=random.Random(7))
    assert report.checked == min(sample, 3)
    audited = [e.item for e in b.entries([EventKind.AUDITED])]
    assert len(set(audited)) == len(audited) == report.checked
    assert set(audited) <= set(shas)


def test_off_site_copies_are_read_back_and_a_bad_one_is_written_again(tmp_path: Path) -> None:
    with bench(tmp_path, target=True) as b:
        bad, good = stored(b, 2)
        assert Replicator(b.station, actor="tester").run().ok
        b.clock.advance(minutes=1)
        copy = writable(b.copy_on_target(bad))
        copy.write_bytes(b"not the evidence")
        targets = build_targets(b.station.settings)

        report = audit(b.station, sample=None, targets=targets, actor="tester")

        assert [(d.kind, d.item) for d in report.found] == [(K.REPLICA_MISMATCH, bad)]
        replica = b.replica(bad)
        assert replica is not None
        assert (replica.state, replica.rewrite, replica.proven_at) == (
            ReplicaState.MISMATCH, True, None)
        assert Flag.REPLICA_MISMATCH in flags(b, bad)
        kept = b.replica(good)
        assert kept is not None and kept.proven_at == b.clock.now  # proven again, by the audit
        with b.station.catalog.read() as tx:
            assert tx.proven_targets(bad, target_locations(b.station.settings)) == set()

        b.clock.advance(minutes=1)
        again = Replicator(b.station, actor="tester").run()
        assert [v["sha256"] for v in again.verified] == [bad]
        assert sha256_of(b.copy_on_target(bad)) == bad
        assert b.nas is not None and len(list((b.nas / "bwc" / "damaged").iterdir())) == 1
        b.assert_ledger_verifies()


def test_a_target_that_cannot_be_reached_says_nothing_of_its_copies(tmp_path: Path) -> None:
    with bench(tmp_path, target=True) as b:
        (sha,) = stored(b, 1)
        assert Replicator(b.station, actor="tester").run().ok
        before = b.replica(sha)
        assert b.nas is not None
        b.nas.rename(tmp_path / "unmounted")

        report = audit(b.station, sample=None, targets=build_targets(b.station.settings),
                       actor="tester")

        assert [(d.kind, d.item) for d in report.found] == [(K.REPLICA_NOT_CHECKED, sha)]
        assert b.replica(sha) == before
        assert flags(b, sha) == set()


def test_an_orphan_is_kept_once_recorded_and_a_damaged_one_is_quarantined(b: Bench) -> None:
    stored(b, 1)
    loose = b.tmp / "loose.jpg"
    loose.write_bytes(photo(3000))
    fd = os.open(loose, os.O_RDONLY)
    try:  # bytes a killed ingest left in the store, never recorded as an item
        orphan = b.station.store.put_from_fd(fd).digest.sha256
    finally:
        os.close(fd)
    wrong = "ab" * 32  # a name that is not what its bytes hash to
    path = b.object(wrong)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"put there by hand")

    report = audit(b.station, sample=None, actor="tester")

    by_action = {o["action"]: o for o in report.orphans}  # (in the order of their names)
    assert len(report.orphans) == 2
    assert by_action[str(OrphanAction.KEPT)] == {"sha256": orphan, "size": loose.stat().st_size,
                                                 "action": str(OrphanAction.KEPT)}
    quarantined = by_action[str(OrphanAction.QUARANTINED)]
    assert quarantined["sha256"] == wrong
    assert [(d.kind, d.item) for d in report.found] == [(K.UNEXPECTED_OBJECT, wrong)]
    assert b.object(orphan).is_file() and not path.exists()
    moved = b.station.store.root / quarantined["quarantined_to"]
    assert moved.read_bytes() == b"put there by hand"
    assert sorted((e.data["action"], e.item or "") for e in b.entries([EventKind.ORPHAN])) == [
        ("kept", orphan), ("quarantined", "")]  # a name that is not its bytes names no item

    b.clock.advance(minutes=1)
    again = audit(b.station, sample=None, actor="tester")
    assert [o["sha256"] for o in again.orphans] == [orphan] and again.ok
    assert len(b.entries([EventKind.ORPHAN])) == 2, "an orphan was recorded twice"


# -- the fast check ---------------------------------------------------------------------------


def test_the_fast_check_passes_an_intact_store_and_records_the_run(b: Bench) -> None:
    stored(b)
    report = audit_fast(b.station, actor="tester")
    assert report.ok and (report.checked, report.found, report.unexpected) == (3, [], [])
    (run,) = b.entries([EventKind.AUDITED])
    assert run.item is None
    assert (run.data["check"], run.data["checked"], run.data["found"]) == ("fast", 3, {})


def test_the_fast_check_finds_a_removed_and_a_truncated_object_and_changes_nothing(
        b: Bench) -> None:
    removed, truncated, rewritten = stored(b)
    b.object(removed).unlink()
    os.truncate(writable(b.object(truncated)), 10)
    flip_bit(b.object(rewritten), 5)  # same size: the fast check cannot see it
    before = snapshot_tree(b.station.store.root)

    report = audit_fast(b.station, actor="tester")

    assert not report.ok and report.checked == 3
    assert sorted((d.item, d.kind) for d in report.found) == sorted(
        [(removed, K.OBJECT_MISSING), (truncated, K.SIZE_MISMATCH)])
    assert snapshot_tree(b.station.store.root) == before, "the fast check changed the store"
    assert flags(b, removed) == flags(b, truncated) == {Flag.FIXITY_FAILED}
    assert flags(b, rewritten) == set()
    by_item = {e.item: e.data for e in b.entries([EventKind.AUDITED])}
    detail = {d.item: d.detail for d in report.found}
    assert by_item[truncated] == {"check": "fast", "found": "size_mismatch",
                                  "problem": detail[truncated]}
    assert detail[truncated].endswith("is 10 bytes, not the "
                                      f"{b.item(truncated).size} stored (cut short)")
    assert rewritten not in by_item, "the fast check claimed to have re-hashed an item"
    assert by_item[None]["found"] == {"object_missing": 1, "size_mismatch": 1}
    b.assert_ledger_verifies()


def test_the_fast_check_lists_an_orphan_without_moving_it(b: Bench) -> None:
    stored(b, 1)
    loose = b.tmp / "loose.jpg"
    loose.write_bytes(photo(100))
    fd = os.open(loose, os.O_RDONLY)
    try:
        orphan = b.station.store.put_from_fd(fd).digest.sha256
    finally:
        os.close(fd)
    report = audit_fast(b.station, actor="tester")
    assert report.ok
    assert [(u.item, u.size) for u in report.unexpected] == [(orphan, loose.stat().st_size)]
    assert report.as_dict()["orphans"] == [{"sha256": orphan, "size": loose.stat().st_size,
                                            "action": "unchecked"}]
    assert b.object(orphan).is_file() and b.entries([EventKind.ORPHAN]) == []


# -- verify -----------------------------------------------------------------------------------


def test_verify_files_says_which_files_are_this_stations_evidence(b: Bench) -> None:
    rec = b.photos("rec", 1)
    (item,) = b.dock(rec).items
    evidence = rec / MEDIA / photo_name(0)
    stranger = b.tmp / "stranger.jpg"
    stranger.write_bytes(photo(500))

    def no_reach() -> list[Target]:
        raise AssertionError("targets built for bytes that are here")

    ours, other, folder, nothing = verify_files(
        b.station, [evidence, stranger, b.tmp, b.tmp / "gone.jpg"], targets=no_reach)

    assert ours.match and ours.problems == [] and ours.sha256 == item.sha256
    assert ours.item is not None and (ours.item["recorder"], ours.item["size"]) == (
        SERIAL, item.size)
    assert ours.held == {"station": b.station.name, "local": True, "targets": [],
                         "checked": "here"}
    assert not other.match
    assert other.problems == ["not evidence held by this catalog (no item has this SHA-256)"]
    assert not folder.match and "not a regular file" in folder.problems[0]
    assert not nothing.match and "No such file or directory" in nothing.problems[0]


def test_verify_hash_checks_the_stored_bytes_and_the_signatures(b: Bench) -> None:
    sha, damaged = stored(b, 2)
    assert verify_hash(b.station, f"  {sha.upper()} \n").match
    flip_bit(b.object(damaged), 7)
    verdict = verify_hash(b.station, damaged)
    assert not verdict.match
    assert verdict.problems == [f"the stored copy is damaged: object {damaged} is damaged: "
                                f"it now hashes to {sha256_of(b.object(damaged))} "
                                f"({b.item(damaged).size} bytes)"]
    with pytest.raises(UsageError, match="full SHA-256"):
        verify_hash(b.station, sha[:12])


def test_verify_of_an_item_kept_only_off_site_reads_the_copy_there(tmp_path: Path) -> None:
    with bench(tmp_path, target=True, config='[retention]\nlocal_keep = "1d"\n') as b:
        (sha,) = stored(b, 1)
        assert Replicator(b.station, actor="tester").run().ok
        b.clock.advance(days=2)
        assert [e["sha256"] for e in sweep(b.station, actor="tester").evicted] == [sha]
        built: list[str] = []

        def targets() -> list[Target]:
            built.append("targets")
            return build_targets(b.station.settings)

        verdict = verify_hash(b.station, sha, targets=targets)

        assert verdict.match and verdict.held is not None
        assert verdict.held["checked"] == f"offsite:{TARGET}"
        assert f"the copy on {TARGET} was read back in full: intact" in verdict.notes
        writable(b.copy_on_target(sha)).write_bytes(b"x")
        assert not verify_hash(b.station, sha, targets=targets).match
        blind = verify_hash(b.station, sha)  # no target within reach: nothing claimed
        assert blind.held is not None and blind.held["checked"] == "not-checked-here"
        assert built == ["targets", "targets"], "built only for the copies kept elsewhere"

        def unusable() -> list[Target]:
            raise TargetError("target 'nas': cannot read credentials file /x: PermissionError")

        refused = verify_hash(b.station, sha, targets=unusable)
        assert refused.held is not None and refused.held["checked"] == "not-checked-here"
        assert (refused.match, refused.problems) == (blind.match, blind.problems), (
            "nothing claimed of the bytes either way")
        assert any("cannot use the targets: target 'nas': cannot read credentials" in n
                   for n in refused.notes), refused.notes
