"""``ingestd run`` as a real process, as systemd runs it on a docking station.

What the station relies on, checked here:

* it tells systemd READY, STATUS, WATCHDOG and STOPPING over ``NOTIFY_SOCKET``, and logs one JSON
  object a line with a stable ``event`` name when configured so;
* the first SIGTERM finishes the file being copied and stops (exit 0), and what was not taken is
  taken at the next start without copying the finished file again; a second SIGTERM aborts the
  copy in flight at once, leaving nothing marked stored and no temp file;
* killed with SIGKILL at any point and started again, it recovers (temp files removed, running
  sessions marked interrupted), ingests the rest, and every file ends stored exactly once, the
  ledger verifies, and nothing was wiped from the recorder that was not stored and verified;
* ``run --once`` serves what is docked and exits 0.

The watched root as such, and docking through the Python API, are in ``test_docking.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    INGESTD,
    ClipFile,
    ingestd_json,
    init_station,
    ledger_lines,
    make_test_clip,
    open_station,
    partial_files,
    place,
    run_ingestd,
    sha256_of,
    shared_random_file,
    store_objects,
    subprocess_env,
    wait_for,
)

from ingestd.station import system_clock
from tests.support import catalog

pytestmark = pytest.mark.integration

TIMEOUT = 90.0  # generous upper bound for anything to happen on a busy 2-core machine
BIG_MIB = 384  # a big recorder file of random bytes (shared with test_docking.py's)
SERIAL = "BWC-0100"


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipFile]:
    """Three distinct real MP4 clips (ffmpeg), recorded a few hours ago."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.fail("ffmpeg and ffprobe are needed (Debian package ffmpeg; scripts/setup --test)")
    folder = tmp_path_factory.mktemp("daemon-clips")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    return [make_test_clip(folder / f"clip{i}.mp4", seconds=1,
                           recorded=base + timedelta(minutes=i)) for i in range(3)]


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    return shared_random_file(tmp_path_factory, BIG_MIB)


def new_home(tmp_path: Path, *, docks: str = "", extra: str = "") -> Path:
    return init_station(
        tmp_path / "home",
        config='[docks]\nwatch_root = "docks"\nsettle = "0.5s"\n' + docks
        + "\n[scheduler]\naudit_sample = 0\n" + extra,
        clock=system_clock, register={SERIAL: ("Zhao Lei", "PS-0100")})


def recorder(home: Path, files: Mapping[str, Path]) -> Path:
    """A recorder folder HOME/docks/SERIAL (docked before the daemon starts: taken at start)."""
    folder = home / "docks" / SERIAL
    for rel, source in files.items():
        place(source, folder / rel)
    (folder / "SYSTEM").mkdir(parents=True, exist_ok=True)
    (folder / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={SERIAL}\n", encoding="ascii")
    return folder


class Daemon:
    """``ingestd --home HOME run`` in the background, its output in a file."""

    def __init__(self, home: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in wait()/close()
        self.proc = subprocess.Popen([str(INGESTD), "--home", str(home), "run"],
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     env=subprocess_env(**dict(env or {})))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._out.close()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(home: Path, log: Path, env: Mapping[str, str] | None = None) -> Daemon:
        daemon = Daemon(home, log, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


class NotifySocket:
    """The socket systemd listens on for a Type=notify service (``NOTIFY_SOCKET``)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="ingestd-notify-")  # short: sun_path is 108 bytes
        self.path = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode("utf-8", "replace").splitlines():
                self.messages.append((time.monotonic(), line))

    def seen(self, text: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == text]

    def wait(self, text: str, *, count: int = 1, timeout: float = TIMEOUT) -> list[float]:
        return wait_for(lambda: len(self.seen(text)) >= count and self.seen(text),
                        timeout=timeout, what=f"{count} x {text!r} on NOTIFY_SOCKET")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def copying(home: Path, path: str) -> bool:
    rows = catalog.acquisitions(home, path=path)
    return bool(rows) and rows[-1]["state"] == "copying" and bool(partial_files(home))


# -- systemd notification and JSON logs --------------------------------------------------------


def test_daemon_notifies_systemd_and_logs_json_lines(
        tmp_path: Path, small_clips: list[ClipFile], big_file: ClipFile,
        notify_socket: NotifySocket, daemons: Callable[..., Daemon]) -> None:
    home = new_home(tmp_path, extra='[log]\nformat = "json"\nlevel = "INFO"\n')
    daemon = daemons(home, tmp_path / "daemon.log",
                     {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "400000"})
    [ready] = notify_socket.wait("READY=1")
    assert notify_socket.wait("STATUS=station station-01 ready")
    # WatchdogSec=0.4s: pinged at least every 0.2 s while idle.
    pings = notify_socket.wait("WATCHDOG=1", count=3, timeout=30)
    assert all(t > ready for t in pings)
    assert notify_socket.wait("STATUS=idle")

    # A recorder docked while it runs is served, and the status says so meanwhile.
    staging = tmp_path / "staging" / SERIAL
    place(big_file.path, staging / "DCIM" / "100MEDIA" / "0001.MP4")
    place(small_clips[0].path, staging / "DCIM" / "100MEDIA" / "0002.MP4")
    os.rename(staging, home / "docks" / SERIAL)
    [busy] = notify_socket.wait(f"STATUS=ingesting {SERIAL}")[:1]
    wait_for(lambda: [s for s in catalog.dock_sessions(home) if s["state"] == "done"],
             what="the docked recorder ingested")
    wait_for(lambda: [t for t in notify_socket.seen("STATUS=idle") if t > busy],
             what="STATUS=idle again after the ingest")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    [stopping] = notify_socket.wait("STOPPING=1", timeout=10)
    assert stopping > ready

    lines = [line for line in daemon.output().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line is one JSON object
        assert isinstance(doc, dict) and {"time", "level", "event", "message"} <= doc.keys(), doc
        docs.append(doc)
    events = [d["event"] for d in docs]
    for expected in ("ready", "stopping", "stopped"):
        assert expected in events, events
    assert events.index("ready") < events.index("stopping") < events.index("stopped")


# -- stopping with SIGTERM ---------------------------------------------------------------------


@pytest.mark.slow
def test_first_sigterm_finishes_the_current_file_then_stops_and_resumes_at_restart(
        tmp_path: Path, small_clips: list[ClipFile], big_file: ClipFile,
        daemons: Callable[..., Daemon]) -> None:
    # One file at a time, so that "the current file" is one; with more, each file thread
    # finishes its own the same way (tests/integration/test_ingest.py).
    home = new_home(tmp_path, extra="[ingest]\nparallel_files = 1\n")
    folder = recorder(home, {"DCIM/100MEDIA/0001.MP4": big_file.path,
                             "DCIM/100MEDIA/0002.MP4": small_clips[0].path,
                             "DCIM/100MEDIA/0003.MP4": small_clips[1].path})
    daemon = daemons(home, tmp_path / "first.log")
    wait_for(lambda: copying(home, "DCIM/100MEDIA/0001.MP4"), what="the big file being copied")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()
    assert "finishing current files" in daemon.output()

    [session] = catalog.dock_sessions(home)
    assert session["state"] == "interrupted", session
    acqs = [(a["path"], a["state"], a["item"]) for a in catalog.acquisitions(home)]
    # The file in flight was finished, stored and verified; nothing after it was started.
    assert acqs == [("DCIM/100MEDIA/0001.MP4", "stored", big_file.sha256)]
    assert set(store_objects(home)) == {big_file.sha256}
    assert sha256_of(store_objects(home)[big_file.sha256]) == big_file.sha256
    assert not partial_files(home)
    assert ingestd_json(home, "status")["docks"][0]["state"] == "interrupted"

    # Started again, it takes the rest, without copying the big file a second time.
    daemon = daemons(home, tmp_path / "second.log")
    wait_for(lambda: [s for s in catalog.dock_sessions(home)
                      if s["id"] > session["id"] and s["state"] != "running"],
             what="the recorder resumed")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()
    resumed = [s for s in catalog.dock_sessions(home) if s["id"] > session["id"]][0]
    assert resumed["state"] == "done", resumed
    assert (resumed["files_new"], resumed["files_known"]) == (2, 1)
    assert resumed["bytes_copied"] == small_clips[0].size + small_clips[1].size
    everything = {big_file.sha256, small_clips[0].sha256, small_clips[1].sha256}
    assert set(store_objects(home)) == everything
    for sha in everything:
        states = [a["state"] for a in ingestd_json(home, "show", sha)["acquisitions"]]
        assert states.count("stored") == 1, (sha, states)
    assert (folder / "DCIM" / "100MEDIA" / "0001.MP4").exists()  # wipe = never
    assert run_ingestd(home, "ledger", "verify").returncode == 0


@pytest.mark.slow
def test_second_sigterm_aborts_the_copy_in_flight(
        tmp_path: Path, notify_socket: NotifySocket, daemons: Callable[..., Daemon]) -> None:
    home = new_home(tmp_path)
    size = 3 << 30  # 3 GiB (sparse: costs nothing to make; a full copy takes many seconds)
    folder = home / "docks" / SERIAL / "DCIM" / "100MEDIA"
    folder.mkdir(parents=True)
    with open(folder / "0001.MP4", "wb") as fh:
        fh.truncate(size)
    daemon = daemons(home, tmp_path / "daemon.log", {"NOTIFY_SOCKET": notify_socket.path})
    wait_for(lambda: copying(home, "DCIM/100MEDIA/0001.MP4"), what="the file being copied")
    copy_seen = time.monotonic()

    daemon.signal(signal.SIGTERM)
    notify_socket.wait("STOPPING=1", timeout=30)  # the first signal was taken: a warm stop
    copied_before = max((p.stat().st_size for p in partial_files(home)), default=0)
    second = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait()
    took = time.monotonic() - second
    output = daemon.output()
    assert code == 0, output
    assert "aborting copies in flight" in output
    rate = copied_before / max(second - copy_seen, 1e-3)
    print(f"abort: exited {took:.2f}s after the second SIGTERM; {copied_before >> 20} MiB of "
          f"{size >> 20} MiB copied by then, at about {rate / 2**20:.0f} MiB/s")
    # Finishing would have meant copying, hashing and reading back the rest of 3 GiB.
    assert copied_before < size // 2
    assert took < 10.0, f"took {took:.1f}s to stop after the second SIGTERM"

    [session] = catalog.dock_sessions(home)
    assert session["state"] == "interrupted"
    [acq] = catalog.acquisitions(home)
    assert (acq["state"], acq["item"]) == ("interrupted", None)
    assert ingestd_json(home, "items")["items"] == []
    assert not store_objects(home)
    assert not partial_files(home)
    assert not [e for e in ledger_lines(home) if e["kind"] in ("stored", "acquired")]


# -- killed, then started again ----------------------------------------------------------------


@pytest.fixture(scope="session")
def medium_file(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """128 MiB of random bytes: big enough to be caught mid-copy, quick enough to repeat."""
    return shared_random_file(tmp_path_factory, 128)


BIG_REL = "DCIM/100MEDIA/0004.MP4"  # copied last, and wiped last


def kill_point(kind: str, home: Path, folder: Path) -> Callable[[], bool]:
    """When to kill: in a named phase of the big file's ingest or wipe."""
    def mid_copy() -> bool:
        return copying(home, BIG_REL)

    def read_back() -> bool:  # renamed into the store, being read back: not yet marked stored
        rows = catalog.acquisitions(home, path=BIG_REL)
        return (bool(rows) and rows[-1]["state"] == "copying" and not partial_files(home)
                and bool(store_objects(home)))

    def mid_wipe() -> bool:  # the small files wiped, the big one not yet
        return not (folder / "DCIM/100MEDIA/0001.MP4").exists() and (folder / BIG_REL).exists()

    return {"mid-copy": mid_copy, "read-back": read_back, "mid-wipe": mid_wipe}[kind]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["mid-copy", "read-back", "mid-wipe",
                                     "seed-1", "seed-5", "seed-2"])
def test_sigkill_then_restart_recovers_and_every_file_ends_stored_once(
        tmp_path: Path, small_clips: list[ClipFile], medium_file: ClipFile,
        daemons: Callable[..., Daemon], kill_at: str) -> None:
    home = new_home(tmp_path, docks='wipe = "after-local-verify"\n')
    files = {"DCIM/100MEDIA/0001.MP4": small_clips[0], "DCIM/100MEDIA/0002.MP4": small_clips[1],
             "DCIM/100MEDIA/0003.MP4": small_clips[2], BIG_REL: medium_file}
    folder = recorder(home, {rel: clip.path for rel, clip in files.items()})

    daemon = daemons(home, tmp_path / "killed.log")
    if kill_at.startswith("seed-"):
        # Anywhere in the session: copy, read-back, probe, catalog, ledger or wipe.
        wait_for(lambda: catalog.dock_sessions(home), interval=0.005,
                 what="the dock session started")
        delay = random.Random(int(kill_at.removeprefix("seed-"))).uniform(0.0, 1.5)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # the kill point itself; the daemon must be alive
            assert daemon.proc.poll() is None, daemon.output()
            time.sleep(0.01)
    else:
        wait_for(kill_point(kill_at, home, folder), interval=0.005, what=kill_at)
    daemon.signal(signal.SIGKILL)
    assert daemon.wait() == -signal.SIGKILL
    left_partials = partial_files(home)
    running = [s["id"] for s in catalog.dock_sessions(home) if s["state"] == "running"]
    print(f"{kill_at}: killed with {len(left_partials)} temp files, running sessions "
          f"{running}, {len([p for p in files if (folder / p).exists()])} files on the recorder")
    if kill_at == "mid-copy":
        assert left_partials and running, "the kill did not land mid-copy"

    daemon = daemons(home, tmp_path / "restarted.log")

    def settled() -> bool:
        sessions = catalog.dock_sessions(home)
        # A file the kill caught in the middle of its wipe is still there, set aside under a
        # hidden name (".ingestd-wipe-..."), until the next session takes and wipes it.
        return (bool(sessions) and all(s["state"] != "running" for s in sessions)
                and not any((folder / rel).exists() for rel in files)
                and not any(folder.rglob(".ingestd-wipe-*")))

    wait_for(settled, what="every file ingested and wiped after the restart")
    # At start it recovered what the kill left: temp files gone, running sessions interrupted.
    for path in left_partials:
        assert not path.exists(), f"temp file {path.name} left by the kill was not removed"
    states = {d["id"]: d["state"] for d in ingestd_json(home, "status")["docks"]}
    for sid in running:
        assert states[sid] == "interrupted", (sid, states)
    if left_partials or running:
        assert "recovered after an unclean stop" in daemon.output()
    # a warm stop of a daemon that is up (the kill may have left it nothing to do, so the
    # files can be settled before the restarted daemon has even started)
    wait_for(lambda: "watching" in daemon.output(), what="the restarted daemon up")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()

    # Every file stored exactly once, and verified in the store.
    everything = {clip.sha256 for clip in files.values()}
    assert {i["sha256"] for i in ingestd_json(home, "items")["items"]} == everything
    assert set(store_objects(home)) == everything
    for sha, path in store_objects(home).items():
        assert sha256_of(path) == sha
    for sha in everything:
        states_ = [a["state"] for a in ingestd_json(home, "show", sha)["acquisitions"]]
        assert states_.count("stored") == 1, (sha, states_)
    assert not catalog.acquisitions(home, state="copying")
    assert not partial_files(home)

    # Nothing was wiped that was not stored and verified first, and every file that left the
    # recorder has its wiped entry. The entry is signed just before the deletion, so a kill
    # between the two leaves the file there, and it is wiped (and recorded) again after the
    # restart: one item, at most, has two entries.
    entries = ledger_lines(home)
    stored_at = {e["item"]: e["seq"] for e in entries if e["kind"] == "stored"}
    wiped = [e for e in entries if e["kind"] == "wiped"]
    assert {e["item"] for e in wiped} == everything
    assert len(wiped) - len(everything) <= (1 if kill_at in ("mid-wipe", "seed-1", "seed-5",
                                                             "seed-2") else 0), wiped
    for entry in wiped:
        assert entry["item"] in stored_at and stored_at[entry["item"]] < entry["seq"]
    assert (folder / "SYSTEM" / "DEVICE.TXT").exists()
    assert ingestd_json(home, "ledger", "verify")["ok"] is True


# -- run --once --------------------------------------------------------------------------------


def test_run_once_serves_what_is_docked_and_exits_zero(
        tmp_path: Path, small_clips: list[ClipFile]) -> None:
    home = new_home(tmp_path, extra='[log]\nformat = "json"\n')
    recorder(home, {"DCIM/100MEDIA/0001.MP4": small_clips[0].path,
                    "DCIM/100MEDIA/0002.MP4": small_clips[1].path})
    (home / "docks" / "BWC-UNKNOWN").mkdir()  # not registered: refused, not a failure

    result = run_ingestd(home, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert f"recorder {SERIAL}: done" in result.stdout
    assert "recorder BWC-UNKNOWN: refused" in result.stdout
    for line in result.stderr.splitlines():
        if line.strip():
            doc = json.loads(line)
            assert "event" in doc and "message" in doc, doc
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.strip()]
    assert "job_done" in events and "recorder_refused" in events

    status = ingestd_json(home, "status")
    assert status["items"]["total"] == 2
    assert sorted((d["serial"], d["state"]) for d in status["docks"]) == [
        (SERIAL, "done"), ("BWC-UNKNOWN", "refused")]
    assert {j["job"] for j in status["jobs"]} >= {"check-windows"}
    assert run_ingestd(home, "ledger", "verify").returncode == 0


def test_a_stop_asked_while_the_daemon_starts_is_kept_and_answered_warm(
        tmp_path: Path) -> None:
    from ingestd.app import daemon as daemon_mod
    from ingestd.app import signals

    station = open_station(init_station(tmp_path / "home"))
    try:
        signals.hold_signals()
        os.kill(os.getpid(), signal.SIGTERM)  # as systemd would, while the station opens
        assert signals.held_signals == [signal.SIGTERM]
        started = daemon_mod.Daemon(station)
        assert not started.stop.is_set()
        started.install_signals()
        assert started.stop.is_set() and not started.abort.is_set()  # warm, not an abort
        assert signals.held_signals == []
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        station.close()


def sigterm_caught(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


def test_a_sigterm_in_the_first_moments_of_ingestd_run_is_a_warm_stop(tmp_path: Path) -> None:
    """From the command line's first lines (before click, the catalog and the daemon's own
    libraries are imported), a SIGTERM is held for the daemon: it starts, then stops warm
    and exits 0, where it died by the signal before."""
    home = init_station(tmp_path / "home")
    daemon = Daemon(home, tmp_path / "daemon.log")
    try:
        wait_for(lambda: sigterm_caught(daemon.proc.pid), timeout=30,
                 what="ingestd run to catch SIGTERM")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.wait()
    said = daemon.output()
    assert "stopping" in said.lower(), said


def test_a_target_down_at_start_does_not_keep_recorders_out(
        tmp_path: Path, small_clips: list[ClipFile], notify_socket: NotifySocket,
        daemons: Callable[..., Daemon]) -> None:
    """The off-site server is down when the station boots: recorders are still taken in; the
    daemon says why replication waits, and stops cleanly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    creds.chmod(0o600)
    home = new_home(tmp_path, extra=(
        f'\n[[targets]]\nname = "offsite"\ntype = "s3"\nbucket = "evidence"\n'
        f'endpoint_url = "http://127.0.0.1:{port}"\nobject_lock = false\n'
        f'credentials_file = "{creds}"\nmax_attempts = 1\n'))
    recorder(home, {"DCIM/100MEDIA/0001.MP4": small_clips[0].path})
    daemon = daemons(home, tmp_path / "daemon.log", {"NOTIFY_SOCKET": notify_socket.path})
    assert notify_socket.wait("READY=1")
    wait_for(lambda: [s for s in catalog.dock_sessions(home) if s["state"] == "done"],
             what="the docked recorder ingested while the target is down")
    assert catalog.item_shas(home) == [small_clips[0].sha256]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    out = daemon.output()
    assert "cannot reach" in out and "docking goes on" in out
