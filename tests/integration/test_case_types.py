"""Evidence retention by case type: `label --case-type NAME` keeps an item its type's period
from `[retention.case_types]` when that is longer; a later label carries it over, never
shortens, and the label row's case type is checked against its signed entry."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    every_label,
    init_station,
    item_record,
    ledger_lines,
    ledger_problems,
    run_cli,
)

from ingestd.domain.canonical import format_time, parse_time
from tests.support import catalog

pytestmark = pytest.mark.integration

TYPES = '[retention.case_types]\npenalty = "18250d"\nminor = "400d"\n'
PENALTY = timedelta(days=18250)


def typed_home(tmp_path: Path, clips: Clips, types: str = TYPES) -> Path:
    home = init_station(tmp_path / "home", config=types,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/A.MP4": clips.a, "DCIM/B.MP4": clips.b})
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    return home


def start_of(home: Path, sha: str) -> datetime:
    record = item_record(home, sha)
    return max(parse_time(record["recorded_end"]), parse_time(record["stored_at"]))


def test_a_case_type_keeps_the_item_its_period_and_is_signed(tmp_path: Path,
                                                              clips: Clips) -> None:
    home = typed_home(tmp_path, clips)
    sha = clips.a.sha256
    done = cli_json(home, "label", sha, "--case", "C-1", "--party", "P", "--case-type",
                    "penalty")["labelled"]
    start = start_of(home, sha)
    assert done[0]["case_type"] == "penalty"
    assert done[0]["retain_until"] == format_time(start + PENALTY)
    assert item_record(home, sha)["retain_until"] == format_time(start + PENALTY)
    (entry,) = ledger_lines(home, "labelled")
    assert entry["data"]["case_type"] == "penalty"
    assert [lb["case_type"] for lb in every_label(home)] == ["penalty"]
    assert ledger_problems(home) == (0, [])

    # A label without a case type keeps its own entries' form: no case_type in them.
    cli_json(home, "label", clips.b.sha256, "--case", "C-2", "--party", "P")
    plain = [e for e in ledger_lines(home, "labelled") if e["item"] == clips.b.sha256]
    assert "case_type" not in plain[0]["data"]
    assert item_record(home, clips.b.sha256)["retain_until"] == format_time(
        start_of(home, clips.b.sha256) + timedelta(days=365 * 30))


def test_a_later_label_carries_the_case_type_and_never_shortens(tmp_path: Path,
                                                                 clips: Clips) -> None:
    home = typed_home(tmp_path, clips)
    sha = clips.a.sha256
    cli_json(home, "label", sha, "--case", "C-1", "--party", "P", "--case-type", "penalty")
    granted = item_record(home, sha)["retain_until"]
    cli_json(home, "label", sha, "--party", "P2")
    assert [lb["case_type"] for lb in every_label(home)] == ["penalty", "penalty"]
    cli_json(home, "label", sha, "--case-type", "minor")
    assert every_label(home)[-1]["case_type"] == "minor"
    assert item_record(home, sha)["retain_until"] == granted
    assert ledger_problems(home) == (0, [])


def test_an_unknown_case_type_is_refused_with_the_known_ones(tmp_path: Path,
                                                             clips: Clips) -> None:
    home = typed_home(tmp_path, clips)
    result = run_cli(home, "label", clips.a.sha256, "--case", "C-1", "--party", "P",
                     "--case-type", "felony")
    assert result.exit_code != 0
    assert "unknown case type 'felony'" in result.stderr
    assert "known: minor, penalty" in result.stderr
    assert every_label(home) == []
    assert ledger_lines(home, "labelled") == []


def test_a_label_row_whose_case_type_was_changed_is_found(tmp_path: Path,
                                                         clips: Clips) -> None:
    home = typed_home(tmp_path, clips)
    cli_json(home, "label", clips.a.sha256, "--case", "C-1", "--party", "P",
             "--case-type", "minor")
    assert catalog.forge_labels(home, case_type="penalty") == 1
    code, problems = ledger_problems(home)
    assert code != 0
    assert [kind for kind, _ in problems] == ["row_differs"]
    detail = run_cli(home, "ledger", "verify", "--json").json()["problems"][0]
    assert "case_type is 'penalty' but the ledger says 'minor'" in detail["detail"]


def test_init_redates_by_a_case_type_that_grew(tmp_path: Path, clips: Clips) -> None:
    home = typed_home(tmp_path, clips)
    sha = clips.a.sha256
    cli_json(home, "label", sha, "--case", "C-1", "--party", "P", "--case-type", "penalty")
    config = home / "ingestd.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('"18250d"', '"20000d"'),
                      encoding="utf-8")
    assert run_cli(home, "init").exit_code == 0
    start = start_of(home, sha)
    assert item_record(home, sha)["retain_until"] == format_time(
        start + timedelta(days=20000))
    (redated,) = [e for e in ledger_lines(home, "retention") if e["item"] == sha]
    assert redated["data"]["retention"]["retain_until"] == format_time(
        start + timedelta(days=20000))
    assert ledger_problems(home) == (0, [])
