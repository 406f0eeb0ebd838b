"""The retention sweep: the local store keeps only what is not yet safe off-site."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    open_station,
    run_cli,
    store_objects,
)

from tests.support import catalog

pytestmark = pytest.mark.integration


def _station(tmp_path: Path, clips: Clips, *, local_keep: str = "0s",
             target: bool = True) -> tuple[Path, list[str]]:
    nas = tmp_path / "nas"
    nas.mkdir(parents=True)
    config = f'[retention]\nlocal_keep = "{local_keep}"\n'
    if target:
        config += (f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                   'same_filesystem_ok = true\n')
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b,
                                            "DCIM/c.mp4": clips.c})
    ingest = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert ingest.exit_code == 0, ingest.stderr
    return home, [i["sha256"] for i in ingest.json()["items"]]


def test_only_items_verified_offsite_and_past_local_keep_leave_the_store(
        tmp_path: Path, clips: Clips) -> None:
    home, shas = _station(tmp_path, clips)
    replicate = run_cli(home, "replicate", "--limit", "2", "--json")
    assert replicate.exit_code == 0, replicate.stderr
    copied = {v["sha256"] for v in replicate.json()["verified"]}
    held = sorted(copied)[0]
    assert run_cli(home, "hold", held[:12], "--reason", "complaint").exit_code == 0

    dry = run_cli(home, "retention", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert set(store_objects(home)) == set(shas), "a dry run removes nothing"

    swept = run_cli(home, "retention", "--json").json()

    gone = {e["sha256"] for e in swept["evicted"]}
    assert gone == copied - {held}
    assert swept["kept"] == 2  # the held one and the one not yet off-site
    assert set(store_objects(home)) == set(shas) - gone
    for sha in gone:
        shown = run_cli(home, "show", sha, "--json").json()
        assert shown["item"]["local"] is False
        assert [h["kind"] for h in shown["history"]][-1] == "evicted"
        # Still our evidence: verify by hash finds it signed, and the off-site copy is whole.
        assert run_cli(home, "verify", "--hash", sha).exit_code == 0
        assert (tmp_path / "nas" / "sha256" / sha).exists()
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_label_that_raises_the_retention_keeps_the_item_until_its_locks_follow(
        tmp_path: Path, clips: Clips) -> None:
    # Copied and proven under a routine year; then labelled evidence (30 years). Until the
    # off-site lock is extended to the new date, the off-site copy could expire before the
    # item may: the local copy stays.
    home, shas = _station(tmp_path, clips)
    assert run_cli(home, "replicate").exit_code == 0
    labelled = run_cli(home, "label", shas[0][:12], "--case", "C-1", "--party", "Li")
    assert labelled.exit_code == 0, labelled.stderr
    first = run_cli(home, "retention", "--json").json()
    assert sorted(e["sha256"] for e in first["evicted"]) == sorted(shas[1:])
    assert shas[0] in store_objects(home)
    assert run_cli(home, "replicate", "--json").json()["locks_extended"][0]["sha256"] == shas[0]
    assert [e["sha256"] for e in run_cli(home, "retention", "--json").json()["evicted"]] == [
        shas[0]]
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_nothing_leaves_without_a_required_target_or_before_local_keep(
        tmp_path: Path, clips: Clips) -> None:
    home, shas = _station(tmp_path / "no-target", clips, target=False)
    assert run_cli(home, "retention", "--json").json() == {
        "evicted": [], "kept": 3, "dry_run": False}
    assert set(store_objects(home)) == set(shas)

    home, shas = _station(tmp_path / "young", clips, local_keep="30d")
    assert run_cli(home, "replicate").exit_code == 0
    assert run_cli(home, "retention", "--json").json()["evicted"] == []
    assert set(store_objects(home)) == set(shas)


def test_a_redocked_recording_comes_back_into_the_local_store(
        tmp_path: Path, clips: Clips) -> None:
    home, shas = _station(tmp_path, clips)
    assert run_cli(home, "replicate").exit_code == 0
    assert len(run_cli(home, "retention", "--json").json()["evicted"]) == 3
    assert store_objects(home) == {}

    again = run_cli(home, "ingest", tmp_path / "rec", "--serial", SERIAL, "--json")

    assert again.exit_code == 0, again.stderr
    assert set(store_objects(home)) == set(shas)
    for sha in shas:
        assert run_cli(home, "show", sha, "--json").json()["item"]["local"] is True
    assert run_cli(home, "audit", "--all", "--decode", "0").exit_code == 0


def test_a_hold_set_while_the_sweep_rehashes_keeps_the_item(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingestd.store import Store
    from ingestd.usecases import casework, retention

    home, shas = _station(tmp_path, clips)
    assert run_cli(home, "replicate").exit_code == 0
    station = open_station(home, clock=lambda: datetime.now(UTC))
    held = shas[0]
    real_verify = Store.verify

    def verify_then_hold(self: Store, sha: str, size: int | None = None):  # type: ignore[no-untyped-def]
        digest = real_verify(self, sha, size)
        if sha == held:  # a supervisor's hold lands while the sweep is busy with this item
            casework.set_hold(station, [held], hold=True, reason="complaint", actor="supervisor")
        return digest

    monkeypatch.setattr(Store, "verify", verify_then_hold)
    try:
        report = retention.sweep(station)
    finally:
        station.close()

    assert {e["sha256"] for e in report.evicted} == set(shas) - {held}
    assert held in store_objects(home)
    assert run_cli(home, "show", held, "--json").json()["item"]["local"] is True
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_an_upload_that_races_the_sweep_flags_nothing(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep takes a local copy proven on the required target while another (optional)
    target is about to read it: that upload fails, and nothing was damaged."""
    from ingestd.targets.directory import DirectoryTarget
    from ingestd.targets.factory import build_targets
    from ingestd.usecases import retention
    from ingestd.usecases.replicate import Replicator

    home, shas = _station(tmp_path, clips)
    spare = tmp_path / "spare"
    spare.mkdir()
    with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[targets]]\nname = "spare"\ntype = "directory"\npath = "{spare}"\n'
                 'required = false\nsame_filesystem_ok = true\n')
    station = open_station(home, clock=lambda: datetime.now(UTC))
    try:
        nas, spare_target = build_targets(station.settings)
        assert Replicator(station, [nas]).run().ok  # proven on the required target
        real_put = DirectoryTarget.put_item

        def sweep_then_put(self: DirectoryTarget, sha256: str, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.name == "spare":  # the daily sweep runs as this upload starts
                retention.sweep(station)
            return real_put(self, sha256, *args, **kwargs)

        monkeypatch.setattr(DirectoryTarget, "put_item", sweep_then_put)
        report = Replicator(station, [nas, spare_target]).run(limit=1)
    finally:
        station.close()

    [failure] = report.failed
    assert "left the local store while it was being sent" in failure["error"]
    for sha in shas:
        shown = run_cli(home, "show", sha, "--json").json()
        assert "fixity_failed" not in [f["flag"] for f in shown["flags"]]
        assert (tmp_path / "nas" / "sha256" / sha).exists()  # safe where it was proven
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_home_from_before_read_back_proofs_migrates_and_proves_its_copies_again(
        tmp_path: Path, clips: Clips) -> None:
    """A catalog at the schema before replicas recorded proofs: nothing lost, the ledger
    still verifies, a copy found bad still needs rewriting, and the copies count for
    eviction once read back at the target's location."""
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    home, shas = _station(tmp_path, clips)
    assert run_cli(home, "replicate").exit_code == 0
    url = f"sqlite:///{home / 'catalog.sqlite'}"
    command.downgrade(_alembic_config(url), "0002")
    catalog.forge_replicas(home, shas[0], state="mismatch")
    # At the old schema, which ingestd's own queries no longer read: the rows as they are.
    before = catalog.raw_rows(home, "SELECT item, target, state, key, ledger_seq FROM replicas "
                                    "ORDER BY item")
    ledger = catalog.raw_rows(home, "SELECT seq, entry_hash FROM ledger ORDER BY seq")

    assert run_cli(home, "init").exit_code == 0  # migrates

    after = catalog.raw_rows(home, "SELECT * FROM replicas ORDER BY item")
    assert [{k: r[k] for k in before[0]} for r in after] == before
    assert {r["item"]: r["rewrite"] for r in after} == {s: int(s == shas[0]) for s in shas}
    assert all(r["proven_at"] is None and r["location"] == "" for r in after)
    assert catalog.raw_rows(home, "SELECT seq, entry_hash FROM ledger ORDER BY seq") == ledger
    assert run_cli(home, "ledger", "verify").exit_code == 0
    assert run_cli(home, "retention", "--json").json()["evicted"] == []

    # the next run checks each copy at the target's location (the directory reads it back)
    again = run_cli(home, "replicate", "--json")
    assert again.exit_code == 0, again.stderr
    assert sorted(v["sha256"] for v in again.json()["verified"]) == sorted(shas)
    evicted = run_cli(home, "retention", "--json").json()["evicted"]
    assert sorted(e["sha256"] for e in evicted) == sorted(shas)
