"""`retention list` says what each item is kept for and why; `retention sweep` is the cache
sweep, and `retention` alone still is, for the scripts that call it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    init_station,
    item_record,
    ledger_lines,
    run_cli,
    store_objects,
)

from ingestd.domain.canonical import format_time, parse_time

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path, clips: Clips) -> Path:
    nas = tmp_path / "nas"
    nas.mkdir()
    config = ('[retention]\nlocal_keep = "0s"\n\n[retention.case_types]\npenalty = "18250d"\n'
              f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
              'same_filesystem_ok = true\n')
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b,
                                            "DCIM/c.mp4": clips.c})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    return home


def listed(home: Path, *args: str) -> dict[str, dict[str, object]]:
    return {r["sha256"]: r for r in cli_json(home, "retention", "list", *args)["items"]}


def test_each_item_says_which_rule_kept_it(home: Path, clips: Clips) -> None:
    a, b, c = clips.a.sha256, clips.b.sha256, clips.c.sha256
    cli_json(home, "label", a, "--case", "C-1", "--party", "P")
    cli_json(home, "label", b, "--case", "C-2", "--party", "P", "--case-type", "penalty")
    rows = listed(home)
    assert set(rows) == {a, b, c}
    assert rows[a]["rule"] == "evidence" and rows[a]["retention_class"] == "evidence"
    assert rows[b]["rule"] == "case-type" and rows[b]["case_type"] == "penalty"
    assert rows[b]["period_seconds"] == 18250 * 86400
    start = parse_time(str(rows[b]["since"]))
    assert rows[b]["retain_until"] == format_time(start + timedelta(days=18250))
    assert rows[b]["retain_until"] == item_record(home, b)["retain_until"]
    (typed,) = [e for e in ledger_lines(home, "labelled") if e["item"] == b]
    assert rows[b]["label"] == {"id": 2, "seq": typed["seq"], "case": "C-2",
                                "categories": [], "case_type": "penalty"}
    assert rows[b]["stated_by"] == typed["seq"]
    assert rows[c]["rule"] == "routine" and rows[c]["label"] is None
    assert rows[c]["retain_until"] == item_record(home, c)["retain_until"]

    text = run_cli(home, "retention", "list", "--item", b[:12])
    assert text.exit_code == 0
    assert "case type penalty, 18250d from" in text.stdout
    assert b[:16] in text.stdout and a[:16] not in text.stdout


def test_category_hold_and_an_earlier_grant_are_named(home: Path, clips: Clips) -> None:
    a, b = clips.a.sha256, clips.b.sha256
    cli_json(home, "label", a, "--case", "C-1", "--party", "P", "--category", "dispute")
    assert listed(home, "--item", a)[a]["rule"] == "category"
    assert listed(home, "--item", a)[a]["category"] == "dispute"
    # A relabel without the category keeps the item long-term: the earlier grant decided.
    cli_json(home, "label", a, "--category", "routine")
    row = listed(home, "--item", a)[a]
    assert row["rule"] == "granted" and row["retention_class"] == "long-term"
    assert row["retain_until"] is None
    held = cli_json(home, "hold", b, "--reason", "complaint")["hold"]
    row = listed(home, "--item", b)[b]
    assert row["hold"] is True and row["hold_entry"] == held[0]["seq"]
    assert row["rule"] == "routine"
    assert "on legal hold (entry" in str(row["why"])


def test_list_filters_by_class(home: Path, clips: Clips) -> None:
    cli_json(home, "label", clips.a.sha256, "--case", "C-1", "--party", "P")
    assert set(listed(home, "--class", "evidence")) == {clips.a.sha256}
    assert set(listed(home, "--class", "routine")) == {clips.b.sha256, clips.c.sha256}
    assert listed(home, "--class", "long-term") == {}
    assert listed(home, "--item", clips.a.sha256, "--class", "routine") == {}
    assert run_cli(home, "retention", "list", "--class", "forever").exit_code != 0


def test_retention_alone_is_still_the_sweep(home: Path, clips: Clips) -> None:
    assert run_cli(home, "replicate").exit_code == 0
    def undated(report: dict[str, list[dict[str, object]]]) -> object:
        return {**report, "evicted": [{k: v for k, v in e.items() if k != "at"}
                                      for e in report["evicted"]]}

    alone = cli_json(home, "retention", "--dry-run")
    assert undated(cli_json(home, "retention", "sweep", "--dry-run")) == undated(alone)
    assert len(alone["evicted"]) == 3 and alone["dry_run"] is True
    assert len(store_objects(home)) == 3, "a dry run removes nothing"
    helped = run_cli(home, "retention", "--help")
    assert "no subcommand" in " ".join(helped.stdout.split())
    swept = cli_json(home, "retention", "sweep")
    assert len(swept["evicted"]) == 3 and store_objects(home) == {}
    assert [r["sha256"] for r in cli_json(home, "retention")["evicted"]] == []
