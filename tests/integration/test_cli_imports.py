"""The commands that report answer at once: each imports only what it uses. Run in a process
of its own (as a user runs them), ``status``, ``items``, ``show`` and ``verify --hash`` load
none of the libraries of the daemon, the off-site targets, media, the web page, metrics,
exports or time-stamping; ``--help`` loads not even the catalog's. (Their times are measured
by ``scripts/bench cli``.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    run_cli,
    subprocess_env,
)

pytestmark = pytest.mark.integration

#: What the reporting commands must never import (top-level package names).
NOT_FOR_REPORTS = ("boto3", "botocore", "apscheduler", "fastapi", "uvicorn", "jinja2",
                   "weasyprint", "ffmpeg", "prometheus_client", "bagit", "rfc3161_client",
                   "alembic", "watchdog", "pyudev", "httpx", "aiosmtpd",
                   # the web page's request models only: the settings are msgspec Structs
                   "pydantic", "pydantic_core")

#: Runs ``ingestd ARGS...`` as the entry point does, then prints the exit code and every
#: module it imported.
PROBE = """
import json, runpy, sys
sys.argv = ["ingestd", *sys.argv[1:]]
try:
    runpy.run_module("ingestd.cli", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory, clips: Clips) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("imports")
    home = init_station(base / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(base / "rec", {"DCIM/a.mp4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    return home, clips.a.sha256


@pytest.fixture(scope="module")
def stocked_s3(tmp_path_factory: pytest.TempPathFactory, clips: Clips) -> tuple[Path, str]:
    """As ``stocked``, with an S3 target configured (never contacted: nothing listens
    there), as a production station has."""
    base = tmp_path_factory.mktemp("imports-s3")
    home = init_station(base / "home", register={SERIAL: (OFFICER, OFFICER_ID)},
                        config='\n[[targets]]\nname = "offsite"\ntype = "s3"\n'
                               'bucket = "evidence"\nendpoint_url = "http://127.0.0.1:9"\n')
    rec = build_recorder(base / "rec", {"DCIM/a.mp4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    return home, clips.a.sha256


def loaded(*args: str) -> set[str]:
    """Every module ``ingestd ARGS...`` imported, run in a process of its own."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, env=subprocess_env(), check=False, timeout=120)
    code, modules = json.loads(done.stderr.splitlines()[-1])
    assert code == 0, done.stderr
    return set(modules)


def imported(*args: str) -> set[str]:
    """The top-level packages ``ingestd ARGS...`` imported."""
    return {name.split(".")[0] for name in loaded(*args)}


def report_args(command: str, sha: str) -> list[str]:
    return {"show": ["show", sha], "verify": ["verify", "--hash", sha]}.get(
        command, command.split())


@pytest.mark.parametrize("with_s3", [False, True], ids=["no target", "s3 target"])
@pytest.mark.parametrize("command", ["status", "status --json", "items", "show", "verify"])
def test_a_report_imports_none_of_the_heavy_libraries(
    stocked: tuple[Path, str], stocked_s3: tuple[Path, str], command: str, with_s3: bool
) -> None:
    """Not even on a station with an S3 target: an item whose bytes are here is verified
    without an S3 client."""
    home, sha = stocked_s3 if with_s3 else stocked
    modules = imported("--home", str(home), *report_args(command, sha))
    assert "ingestd" in modules and "sqlalchemy" in modules  # the probe saw the command run
    assert sorted(modules.intersection(NOT_FOR_REPORTS)) == []


def test_help_imports_neither_the_catalog_nor_the_settings() -> None:
    every = loaded("--help")
    modules = {name.split(".")[0] for name in every}
    assert "click" in modules
    assert sorted(modules.intersection({*NOT_FOR_REPORTS, "sqlalchemy", "cryptography"})) == []
    # msgspec is loaded (the domain's values are its Structs), the settings are not
    assert "ingestd.config" not in every
    assert "rich.console" not in every  # click prints the help; no rich console is made


#: What every report (on a SQLite catalog) must not load beyond those: the PostgreSQL dialect
#: (a partial index names it: only Alembic's environment declares those), and the replication
#: machinery (worker threads, checkpoints, Merkle proofs): ``verify`` reads a copy elsewhere
#: through its target alone.
NOT_FOR_ANY_REPORT = ("sqlalchemy.dialects.postgresql", "ingestd.usecases.replicate",
                      "ingestd.usecases.checkpoints")

#: The cryptography library is for the reports that check a signature (``verify``): reading
#: the station key needs none.
UNSIGNED = ("cryptography",)
#: The ledger's code (its writer, chain checks and every kind of discrepancy) is for the
#: reports that check entries or bytes (``verify``): reading the catalog needs none of it.
UNCHECKED = ("ingestd.custody", "ingestd.integrity.ledger", "ingestd.integrity.discrepancy")
#: status asks ``usecases.liveness`` whether a dock's process still runs: not the ingest, nor
#: the recorder and media adapters it copies with; rich's Live only for ``--watch``.
NOT_FOR_STATUS = (*UNSIGNED, *UNCHECKED, "ingestd.usecases.ingest", "ingestd.docks",
                  "ingestd.media", "rich.live")
#: show asks ``usecases.describe``: not the audit, nor the recorder, media and off-site
#: adapters it reads copies with; no progress bar.
NOT_FOR_SHOW = (*UNSIGNED, *UNCHECKED, "ingestd.usecases.audit", "ingestd.docks", "ingestd.media",
                "ingestd.targets", "rich.progress")
#: items writes plain rows: no rich console or table either (``base.console`` is made when
#: first used).
NOT_FOR_ITEMS = (*NOT_FOR_SHOW, "rich.console", "rich.table")

#: Per command, what it must not load beyond NOT_FOR_ANY_REPORT.
NOT_LOADED: dict[str, tuple[str, ...]] = {
    "status": NOT_FOR_STATUS,
    # the status model as it is: no table, no rich console
    "status --json": (*NOT_FOR_STATUS, "rich.console", "rich.table", "rich.columns",
                      "ingestd.cli.status_view"),
    "items": NOT_FOR_ITEMS,
    "items --json": NOT_FOR_ITEMS,
    "show": NOT_FOR_SHOW,
    # the verify use case alone: no audit, media or targets (built only for an item whose
    # bytes are not here)
    "verify": ("rich.progress", "ingestd.usecases.audit", "ingestd.media", "ingestd.targets"),
}


@pytest.mark.parametrize("command", sorted(NOT_LOADED))
def test_a_report_loads_only_what_it_uses(stocked: tuple[Path, str], command: str) -> None:
    home, sha = stocked
    modules = loaded("--home", str(home), *report_args(command, sha))
    assert "ingestd.station" in modules  # the probe saw the command open the station
    unwanted = {*NOT_FOR_ANY_REPORT, *NOT_LOADED[command]}
    assert sorted(modules.intersection(unwanted)) == []


@pytest.mark.parametrize("json_out", [False, True], ids=["to a pipe", "--json"])
def test_an_ingest_nobody_watches_on_a_terminal_loads_no_progress_bar(
        tmp_path: Path, clips: Clips, json_out: bool) -> None:
    """The bar is for a person at a terminal (``test_terminal`` shows it there); a script's
    or the bench's ingest, with its output going to a pipe, pays none of its import."""
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a})
    modules = loaded("--home", str(home), "ingest", str(rec), "--serial", SERIAL,
                     *(["--json"] if json_out else []))
    assert "ingestd.usecases.ingest" in modules  # the probe saw the ingest run
    assert "rich.progress" not in modules
