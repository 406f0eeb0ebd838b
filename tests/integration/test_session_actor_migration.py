"""A home made before sessions said who started them migrates with nothing lost: its sessions
read as the daemon's ("ingestd", as their ledger entries say) and its ledger still verifies."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from conftest import init_station, run_cli
from sqlalchemy import create_engine

from ingestd.catalog.db import _alembic_config
from tests.support import catalog

pytestmark = pytest.mark.integration


def test_an_existing_home_migrates_and_its_sessions_read_as_the_daemons(
        tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", config='[docks]\nwatch_root = "docks"\n',
                        register={"BWC-0201": ("Ana Silva", "P-1")})
    card = tmp_path / "card" / "DCIM"
    card.mkdir(parents=True)
    (card / "0001.MP4").write_bytes(b"\0" * 1000)
    done = run_cli(home, "ingest", str(card.parent), "--serial", "BWC-0201", "--by", "Sgt. Mills")
    assert done.exit_code == 0, done.stderr
    before = catalog.raw_rows(home, "SELECT * FROM dock_sessions")
    # Back to the schema before the column, as a home of an earlier release has it.
    url = f"sqlite:///{home / 'catalog.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = _alembic_config(url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    engine.dispose()
    assert "actor" not in catalog.raw_rows(home, "SELECT * FROM dock_sessions")[0]

    status = run_cli(home, "init")  # completes what is missing and migrates the catalog
    assert status.exit_code == 0, status.stderr
    after = catalog.raw_rows(home, "SELECT * FROM dock_sessions")
    assert [r["actor"] for r in after] == ["ingestd"]
    assert [{k: v for k, v in r.items() if k != "actor"} for r in after] == [
        {k: v for k, v in r.items() if k != "actor"} for r in before]
    assert len(catalog.raw_rows(home, "SELECT * FROM items")) == 1
    verify = run_cli(home, "ledger", "verify")
    assert verify.exit_code == 0, verify.stdout + verify.stderr
