"""A home audited before the catalog kept each item's last re-hash migrates with it taken from
the ledger: the latest ``audited`` entry that found the copy intact (a failed one is no
proof), and ``ledger verify`` agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from conftest import init_station, run_cli
from sqlalchemy import create_engine

from ingestd.catalog.db import _alembic_config
from tests.support import catalog
from tests.support.damage import flip_bit

pytestmark = pytest.mark.integration


def test_an_audited_home_migrates_with_each_items_last_intact_rehash(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", register={"BWC-0201": ("Ana Silva", "P-1")})
    card = tmp_path / "card" / "DCIM"
    card.mkdir(parents=True)
    (card / "0001.MP4").write_bytes(b"\1" * 1000)
    (card / "0002.MP4").write_bytes(b"\2" * 1000)
    assert run_cli(home, "ingest", str(card.parent), "--serial", "BWC-0201").exit_code == 0
    assert run_cli(home, "audit", "--all", "--decode", "0").exit_code == 0
    intact, damaged = sorted(catalog.item_shas(home))
    flip_bit(home / "store" / "objects" / "sha256" / damaged[:2] / damaged[2:4] / damaged, 9)
    assert run_cli(home, "audit", "--all", "--decode", "0").exit_code == 1
    audited = catalog.ledger_entries(home, "audited")
    last_ok = {e["item"]: e["at"] for e in audited if e["data"].get("fixity") == "ok"}
    assert set(last_ok) == {intact, damaged}
    before = {r["sha256"]: r["audited_at"]
              for r in catalog.raw_rows(home, "SELECT sha256, audited_at FROM items")}
    assert before == last_ok  # the damaged copy keeps its last intact re-hash
    url = f"sqlite:///{home / 'catalog.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = _alembic_config(url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    engine.dispose()
    assert "audited_at" not in catalog.raw_rows(home, "SELECT * FROM items")[0]

    assert run_cli(home, "init").exit_code == 0  # migrates the catalog
    after = {r["sha256"]: r["audited_at"]
             for r in catalog.raw_rows(home, "SELECT sha256, audited_at FROM items")}
    assert after == last_ok
    verify = run_cli(home, "ledger", "verify")
    assert verify.exit_code == 0, verify.stdout + verify.stderr
