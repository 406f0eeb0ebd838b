"""Shared fixtures: a fake clock, real clips made by ffmpeg (once per session), simulated
recorders, initialised stations, and the command line run as a user runs it.

Two ways to run the CLI:

* :func:`run_cli` runs ``ingestd.cli.main`` in this process (click's ``CliRunner`` isolation), so
  exit codes and messages are exactly what ``main`` produces, at in-process speed;
* :func:`run_ingestd` runs the installed console script in a subprocess, for kills and
  concurrency.

:func:`cli_json` and :func:`ingestd_json` are the same with ``--json`` for a command that must
succeed. What a test checks it reads through the commands (``show``, ``items``, ``status``...)
or, for what no command shows, through ``tests/support/catalog.py``, the one module of the
tests that knows the catalog's tables; ``tests/support/damage.py`` flips bits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from click.testing import CliRunner

from ingestd import config as config_mod
from ingestd.domain.models import Recorder
from ingestd.media import probe
from ingestd.simulate import make_clip
from ingestd.station import Station
from ingestd.usecases import registry
from ingestd.usecases.home import init_home

if TYPE_CHECKING:
    from tests.support.servers import S3Endpoint
    from tests.support.tsa import LocalTsa

# A command's width is the one its test gives it: no width of whatever runs the tests (the
# parallel runner's workers are given COLUMNS=80 and LINES=24). The CLI's console reads both
# as they were when it was imported, so they go before anything imports it.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

ROOT = Path(__file__).resolve().parents[1]
#: The console script installed next to the interpreter running the tests (.venv/bin/ingestd).
INGESTD = Path(sys.executable).with_name("ingestd")

#: When the simulated recorders' clips were recorded (UTC): half a day before the tests run, so
#: that the CLI (which runs on the real clock) ingests them within the 24 h window. Tests that
#: need exact times use the Python API with a FakeClock, starting at STATION_T0.
RECORDED_T0 = (datetime.now(UTC) - timedelta(hours=12)).replace(microsecond=0)
STATION_T0 = RECORDED_T0 + timedelta(hours=6)

SERIAL = "BWC-0001"
OFFICER = "Wang Fang"
OFFICER_ID = "PS-1001"


# -- environment -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own settings only: no INGESTD_* from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("INGESTD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INGESTD_ACTOR", "tester")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (loop devices, mounts)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


# -- time ------------------------------------------------------------------------------------


class FakeClock:
    """A station clock that moves only when a test moves it."""

    def __init__(self, start: datetime = STATION_T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return moment

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- media -----------------------------------------------------------------------------------


def sha256_of(path: Path | bytes) -> str:
    if isinstance(path, bytes | bytearray):
        return hashlib.sha256(path).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ClipFile:
    """A file a test puts on a recorder, with the facts it compares against: a real MP4 made
    by ffmpeg, or (:func:`shared_random_file`) bytes no player can read."""

    path: Path
    sha256: str
    size: int
    recorded: datetime | None = None  # creation_time written into the file, if any
    duration: float = 0.0  # as ffprobe reports it

    @property
    def recorded_end(self) -> datetime:
        assert self.recorded is not None
        return self.recorded + timedelta(seconds=self.duration)


def make_test_clip(path: Path, *, seconds: float, recorded: datetime | None) -> ClipFile:
    """A real MP4 of ``seconds`` (320x240, 10 frames a second), with ``recorded`` as its
    creation_time (none if None)."""
    make_clip(path, seconds=seconds, recorded=recorded, size="320x240", rate=10)
    info = probe(path)
    assert info.ok and info.duration, f"ffmpeg made an unreadable clip {path}: {info.error}"
    return ClipFile(path=path, sha256=sha256_of(path), size=path.stat().st_size,
                    recorded=recorded, duration=info.duration)


def make_noise_clip(path: Path, *, seconds: float, tag: str,
                    recorded: datetime | None = None) -> ClipFile:
    """A clip of a few MiB: lossless H.264 of random noise does not compress. ``tag`` (written
    as metadata) makes each clip's bytes distinct."""
    args = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
            "-i", "nullsrc=s=320x240:r=25,geq=lum='random(1)*255':cb=128:cr=128",
            "-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
            "-metadata", f"comment={tag}"]
    if recorded is not None:
        args += ["-metadata", f"creation_time={recorded.strftime('%Y-%m-%dT%H:%M:%S.000000Z')}"]
    subprocess.run([*args, str(path)], check=True, capture_output=True, timeout=120)
    info = probe(path)
    assert info.ok and info.duration, info.error
    return ClipFile(path=path, sha256=sha256_of(path), size=path.stat().st_size,
                    recorded=recorded, duration=info.duration)


@dataclass(frozen=True)
class Clips:
    a: ClipFile  # 1 s, recorded RECORDED_T0
    b: ClipFile  # 2 s, recorded RECORDED_T0 + 1 h
    c: ClipFile  # 1 s, recorded RECORDED_T0 + 2 h
    plain: ClipFile  # 1 s, no creation_time: time comes from the name or the file
    truncated: bytes  # the first half of ``b``: an MP4 ffprobe cannot read

    def all(self) -> list[ClipFile]:
        return [self.a, self.b, self.c]


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.fail("ffmpeg and ffprobe are needed (Debian package ffmpeg; scripts/setup --test)")
    folder = tmp_path_factory.mktemp("clips")
    a = make_test_clip(folder / "a.mp4", seconds=1, recorded=RECORDED_T0)
    b = make_test_clip(folder / "b.mp4", seconds=2, recorded=RECORDED_T0 + timedelta(hours=1))
    c = make_test_clip(folder / "c.mp4", seconds=1, recorded=RECORDED_T0 + timedelta(hours=2))
    plain = make_test_clip(folder / "plain.mp4", seconds=1, recorded=None)
    data = b.path.read_bytes()
    return Clips(a=a, b=b, c=c, plain=plain, truncated=data[: len(data) // 2])


def shared_random_file(tmp_path_factory: pytest.TempPathFactory, mib: int) -> ClipFile:
    """``mib`` MiB of random bytes (a multiple of 4), written once per test session and shared
    by every module that asks for that size."""
    path = tmp_path_factory.getbasetemp() / f"random-{mib}MiB.bin"
    if not path.exists():
        tmp = path.with_suffix(".part")
        with open(tmp, "wb") as fh:
            for _ in range(mib // 4):
                fh.write(os.urandom(4 << 20))
        os.replace(tmp, path)
    return ClipFile(path=path, sha256=sha256_of(path), size=path.stat().st_size)


def random_file(path: Path, size: int) -> ClipFile:
    """``size`` random bytes at ``path`` (no player can read them)."""
    data = os.urandom(size)
    path.write_bytes(data)
    return ClipFile(path=path, sha256=sha256_of(data), size=size)


@pytest.fixture(scope="session")
def big_clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipFile]:
    """Five distinct clips of about 3 MiB each, for kills and disk-full tests."""
    folder = tmp_path_factory.mktemp("bigclips")
    return [make_noise_clip(folder / f"big{i}.mp4", seconds=1, tag=f"big-{i}",
                            recorded=RECORDED_T0 + timedelta(minutes=10 * i)) for i in range(5)]


# -- waiting ---------------------------------------------------------------------------------

T = TypeVar("T")

#: A generous bound for anything to happen on a busy 2-core machine.
WAIT = 90.0


def wait_for(check: Callable[[], T], *, timeout: float = WAIT, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- recorders -------------------------------------------------------------------------------


def build_recorder(root: Path, files: Mapping[str | bytes, ClipFile | bytes | Path]) -> Path:
    """A recorder folder: each relative path gets a clip (copied with its times), raw bytes,
    or a copy of a file."""
    root.mkdir(parents=True, exist_ok=True)
    base = os.fsencode(root)
    for rel, content in files.items():
        target = os.path.join(base, os.fsencode(rel))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, ClipFile):
            shutil.copy2(content.path, target)
        elif isinstance(content, Path):
            shutil.copy2(content, target)
        else:
            with open(target, "wb") as fh:
                fh.write(content)
    return root


def place(source: Path, dest: Path) -> None:
    """Put a file on a recorder: a hard link when possible (instant, same bytes and times; a
    wipe removes only the link), else a copy with its times."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def snapshot_tree(root: Path) -> dict[bytes, tuple[str, int, int]]:
    """Every entry under ``root`` (not following links): kind, size or link text hash, mtime."""
    out: dict[bytes, tuple[str, int, int]] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, base)
            if os.path.islink(full):
                out[rel] = ("link", hash(os.readlink(full)), st.st_mtime_ns)
            elif os.path.isdir(full):
                out[rel] = ("dir", 0, 0)
            else:
                with open(full, "rb") as fh:
                    out[rel] = (hashlib.sha256(fh.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


# -- stations --------------------------------------------------------------------------------


def write_config(home: Path, body: str) -> None:
    """Write HOME/ingestd.toml before ``init`` so that init keeps it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / config_mod.CONFIG_NAME).write_text(body, encoding="utf-8")


def init_station(home: Path, *, config: str = "", clock: Callable[[], datetime] | None = None,
                 register: Mapping[str, tuple[str, str]] | None = None) -> Path:
    """Initialise a station in ``home`` (with extra configuration lines), register recorders
    (serial -> (officer, officer id)) through the CLI, and return ``home``."""
    if config:
        write_config(home, 'station = "station-01"\n' + config)
    station, _ = init_home(home, clock=clock or FakeClock())
    # Registered on the station's own clock, as `devices add` would on that station: a test
    # clock behind the entries would date what follows at the ledger's time instead.
    for serial, (officer, officer_id) in (register or {}).items():
        registry.register(station, Recorder(serial=serial, officer=officer,
                                            officer_id=officer_id), actor="tester")
    station.close()
    return home


def open_station(home: Path, clock: Callable[[], datetime] | None = None) -> Station:
    settings = config_mod.load(home / config_mod.CONFIG_NAME)
    return Station.open(settings, clock=clock or FakeClock())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A station with one registered recorder (SERIAL, carried by OFFICER)."""
    return init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})


@pytest.fixture
def station(home: Path, clock: FakeClock) -> Iterator[Station]:
    st = open_station(home, clock)
    yield st
    st.close()


# -- the command line ------------------------------------------------------------------------


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def _reset_ingestd_logging() -> None:
    # main() attaches a handler to the captured stderr and stops propagation; undo both so later
    # tests (and pytest's log capture) are not affected.
    logger = logging.getLogger("ingestd")
    for handler in list(logger.handlers):
        if handler.get_name() == "ingestd":
            logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def run_cli(home: Path | None, *args: object, env: Mapping[str, str | None] | None = None,
            input: str | None = None) -> CliResult:
    """``ingestd --home HOME ARGS...`` through ``ingestd.cli.main``, in this process."""
    from ingestd.cli import main

    argv = ["ingestd", *(["--home", str(home)] if home is not None else []),
            *(os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args)]
    runner = CliRunner()
    old_argv = sys.argv
    with runner.isolation(input=input, env=dict(env or {})) as (out, err, _mixed):
        sys.argv = argv
        code: int
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = old_argv
            sys.stdout.flush()
            sys.stderr.flush()
            _reset_ingestd_logging()
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return CliResult(exit_code=code, stdout=stdout, stderr=stderr)


def cli_json(home: Path | None, *args: object,
             env: Mapping[str, str | None] | None = None) -> Any:
    """Run a command with ``--json`` through :func:`run_cli`; it must succeed: its answer."""
    result = run_cli(home, *args, "--json", env=env)
    assert result.exit_code == 0, f"ingestd {' '.join(map(str, args))}: {result}"
    return result.json()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of an ingestd process a test starts: none of the caller's ingestd,
    AWS or systemd settings (a daemon must not notify the caller's service manager), output
    unbuffered (so that a log is read as it is written)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INGESTD_", "AWS_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update({"INGESTD_ACTOR": "tester", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1", **extra})
    return env


def run_ingestd(home: Path, *args: object,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script, in a subprocess, as a user or a script runs it."""
    return subprocess.run(
        [str(INGESTD), "--home", str(home), *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env=subprocess_env(), check=False,
    )


def ingestd_json(home: Path, *args: object) -> Any:
    """:func:`cli_json` in a process of its own: for tests whose own threads log meanwhile
    (``run_cli`` takes the ``ingestd`` logger over while it runs)."""
    result = run_ingestd(home, *args, "--json")
    assert result.returncode == 0, f"ingestd {' '.join(map(str, args))}: {result.stderr}"
    return json.loads(result.stdout)


def start_ingestd(home: Path, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(INGESTD), "--home", str(home), *map(str, args)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )


# -- what a test checks after ingest ---------------------------------------------------------


def store_objects(home: Path) -> dict[str, Path]:
    """Every file under the store's objects folder, by name."""
    objects = home / "store" / "objects" / "sha256"
    return {p.name: p for p in objects.rglob("*") if p.is_file() or p.is_symlink()}


def ledger_lines(home: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The custody ledger's JSON-lines mirror as an auditor reads it (entries of one
    ``kind``, if given)."""
    text = (home / "ledger.jsonl").read_text(encoding="utf-8")
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in entries if kind is None or e["kind"] == kind]


def item_record(home: Path, ref: str) -> dict[str, Any]:
    """An item's catalog record (recorded times, deadlines, retention...), as ``show --json``
    gives it."""
    record: dict[str, Any] = cli_json(home, "show", ref)["record"]
    return record


def item_records(home: Path) -> list[dict[str, Any]]:
    """Every item's record, in listing order."""
    return [item_record(home, item["sha256"]) for item in cli_json(home, "items")["items"]]


def every_label(home: Path) -> list[dict[str, Any]]:
    """Every label of every item, oldest first for each item, as ``show --json`` gives them."""
    return [label for item in cli_json(home, "items")["items"]
            for label in cli_json(home, "show", item["sha256"])["labels"]]


def ledger_problems(home: Path) -> tuple[int, list[tuple[str, int | None]]]:
    """``ledger verify --json``: its exit code and every discrepancy as (kind, entry)."""
    result = run_cli(home, "ledger", "verify", "--json")
    report = result.json()
    assert report["ok"] is (result.exit_code == 0)
    return result.exit_code, [(p["kind"], p["seq"]) for p in report["problems"]]


def partial_files(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*.partial"))


# -- services --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/support/servers.py); yields the
    SQLAlchemy URL of its first database. Missing PostgreSQL skips, or fails when CI is set."""
    from tests.support.servers import ServiceUnavailable, postgres

    try:
        server = postgres(tmp_path_factory.mktemp("pg"))
        url = server.__enter__()
    except ServiceUnavailable as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"PostgreSQL missing on CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is not available: {exc}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A new, empty database on the session's PostgreSQL server, for one test."""
    import re

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    name = f"{name}_{os.getpid()}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(postgres_server).set(database=name).render_as_string(hide_password=False)


# -- S3 servers: one of each per test module that asks (tests/support/servers.py) --------------


@pytest.fixture(scope="module")
def moto() -> Iterator[S3Endpoint]:
    """A moto S3 server over HTTP, for one test module."""
    from tests.support.servers import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A one-node Ceph RADOS Gateway, for one test module: skipped when Ceph is not installed,
    an error when it is installed but fails."""
    from tests.support.servers import ServiceUnavailable, ceph_rgw

    stack = contextlib.ExitStack()
    try:
        endpoint = stack.enter_context(ceph_rgw(tmp_path_factory.mktemp("ceph")))
    except ServiceUnavailable as exc:
        pytest.skip(f"Ceph RGW not installed: {exc}")
    with stack:
        yield endpoint


# -- a local RFC 3161 time-stamping authority (tests/support/tsa.py) ---------------------------


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    """A time-stamping authority on 127.0.0.1 for one test module: its own test CA
    (``tsa.ca_file``), ``tsa.url`` to POST RFC 3161 requests to; ``tsa.mode`` back to "ok"
    after each use that changes it is the test's business."""
    from tests.support.tsa import LocalTsa

    with LocalTsa(tmp_path_factory.mktemp("tsa")) as server:
        yield server
