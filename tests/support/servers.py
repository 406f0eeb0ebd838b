"""Real services for integration tests: moto's S3 server, a one-node Ceph RADOS Gateway, PostgreSQL.

Each service is a plain context manager (the project's ``conftest.py`` wraps them in fixtures):

* :func:`moto_server` -- moto's S3 emulation in a thread of this process, on 127.0.0.1.
* :func:`ceph_rgw` -- a throwaway Ceph cluster (one monitor, one in-memory OSD, one radosgw)
  on 127.0.0.1 with an S3 user: the S3 server that real deployments run.
* :func:`postgres` -- a throwaway PostgreSQL server listening on a unix socket only.

Everything listens on 127.0.0.1 or unix sockets. Every wait is bounded: a service that does not
come up in time raises :class:`ServiceStartError` carrying the tail of the relevant log, and a
service whose programs are not installed raises :class:`ServiceUnavailable` naming what is
missing and the Debian package that provides it, so that a test run reports it instead of
hanging. On exit -- also when the body raised -- the daemons are stopped and their files removed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

REGION = "us-east-1"

#: Debian packages that provide the programs each service needs.
CEPH_PACKAGES = ("radosgw", "ceph-common", "ceph-mon", "ceph-osd")
POSTGRES_PACKAGES = ("postgresql",)
#: Where Debian installs the server programs of each PostgreSQL major version.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"

# The programs run for Ceph, and the Debian package that provides each.
_CEPH_PROGRAMS = {
    "monmaptool": "ceph-base, a dependency of ceph-mon",
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "radosgw-admin": "ceph-common",
    "ceph": "ceph-common",
}

# AF_UNIX socket paths hold at most 107 bytes (sun_path is 108 including the NUL).
_SUN_PATH_MAX = 107
_PG_SOCKET_NAME = ".s.PGSQL.5432"
# Ceph startups tried when a picked port was taken before the daemon could bind it.
_PORT_ATTEMPTS = 3

_T = TypeVar("_T")


class ServiceError(RuntimeError):
    """Base class of the errors raised by this module."""


class ServiceUnavailable(ServiceError):
    """The programs (or the user) that a service needs are not installed on this machine."""


class ServiceStartError(ServiceError):
    """A service did not come up (or a step of starting or stopping it failed) in time.

    The message holds the failing step's output and the tail of the relevant daemon logs.
    """


@dataclass(frozen=True)
class S3Endpoint:
    """Where an S3 server answers, and the credentials of a user on it."""

    url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def client(self) -> S3Client:
        """A boto3 S3 client for this endpoint: path-style addressing, bounded timeouts.

        It is made from a fresh boto3 session with explicit credentials, so the caller's
        ``AWS_*`` profile or credentials do not leak in. boto3's own defaults are kept otherwise
        (including its default request checksums), as the project's code would use them.
        """
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.url, config=config)


# --------------------------------------------------------------------------------------------
# helpers


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now (picked by the kernel).

    They are free only until someone else binds them: callers retry on "Address already in use".
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, headed by its name, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"--- no log at {path}: {exc}"
    text = "\n".join(data.splitlines()[-lines:])
    return f"--- last {lines} lines of {path}:\n{text}"


def _tails(paths: Sequence[Path]) -> str:
    return "".join("\n" + _tail(p) for p in paths)


def _run(
    cmd: Sequence[str],
    *,
    what: str,
    timeout: float,
    logs: Sequence[Path] = (),
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a short command and return its stdout.

    Raises ServiceStartError with its output and the tails of ``logs`` if it fails or does not
    finish within ``timeout`` seconds (it is then killed).
    """
    shown = " ".join(cmd)
    log.debug("running %s", shown)
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=None if env is None else dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceStartError(
            f"{what}: `{shown}` did not finish in {timeout:.0f} s{_tails(logs)}"
        ) from exc
    if proc.returncode != 0:
        raise ServiceStartError(
            f"{what}: `{shown}` exited with status {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:].strip()}\nstderr: {proc.stderr[-2000:].strip()}"
            f"{_tails(logs)}"
        )
    return proc.stdout


def _wait_until(
    probe: Callable[[], _T | None],
    *,
    what: str,
    deadline: float,
    logs: Sequence[Path],
    dead: Callable[[], str | None] = lambda: None,
    interval: float = 0.1,
) -> _T:
    """Call ``probe`` until it returns something other than None, and return that.

    A probe that raises counts as "not yet". ``dead`` names a daemon that has exited (or returns
    None while all live), which ends the wait at once rather than at ``deadline`` (a
    ``time.monotonic()`` value). Raises ServiceStartError with the tails of ``logs``.
    """
    last = "never probed"
    while True:
        died = dead()
        if died is not None:
            raise ServiceStartError(f"{what}: {died}{_tails(logs)}")
        try:
            result = probe()
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        else:
            if result is not None:
                return result
            last = "not ready"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceStartError(f"{what}: timed out; last probe: {last}{_tails(logs)}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 1.0)


def processes_mentioning(needle: str) -> list[str]:
    """Command lines of live processes that mention ``needle`` (zombies have none)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            text = " ".join(a.decode("utf-8", "replace") for a in args if a)
            if needle in text:
                found.append(f"{cmdline.parent.name}: {text}")
    return found


# --------------------------------------------------------------------------------------------
# moto


# How many moto_server() contexts are alive in this process (they share moto's state).
_moto_lock = threading.Lock()
_moto_alive = [0]


@contextlib.contextmanager
def moto_server(*, timeout: float = 30.0) -> Iterator[S3Endpoint]:
    """moto's S3 server in a thread of this process, on 127.0.0.1 and a free port.

    moto keeps its state in process-wide backends, so two moto servers (or ``moto.mock_aws``)
    alive at once in one process share their buckets. The first one entered resets that state,
    so that it starts empty; one entered while another is alive leaves it alone. Any
    credentials are accepted.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ServiceUnavailable(
            f"moto's server is not installed ({exc}); pip install 'moto[server]'"
        ) from exc

    started = time.monotonic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits for its server thread without a bound (forever if the server cannot bind),
    # so it is called from a helper thread whose wait is bounded.
    starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starter.start()
    starter.join(timeout)
    if starter.is_alive():
        raise ServiceStartError(f"moto server did not start in {timeout:.0f} s")
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        with _moto_lock:
            first = _moto_alive[0] == 0
            _moto_alive[0] += 1
        try:
            if first:
                reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
                with urllib.request.urlopen(reset, timeout=timeout) as response:
                    response.read()
            log.info("moto server at %s (%.2f s)", url, time.monotonic() - started)
            yield S3Endpoint(url=url, access_key="testing", secret_key="testing")
        finally:
            with _moto_lock:
                _moto_alive[0] -= 1
    finally:
        stopping = time.monotonic()
        server.stop()
        log.info("moto server stopped (%.2f s)", time.monotonic() - stopping)


# --------------------------------------------------------------------------------------------
# Ceph


class _Daemon:
    """A Ceph daemon run in the foreground (``-f``) as our child, so that we hold its pid."""

    def __init__(
        self, name: str, cmd: Sequence[str], out_file: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        with out_file.open("ab") as out:
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
            )
        log.debug("started %s (pid %d): %s", name, self.proc.pid, " ".join(cmd))

    def dead(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"{self.name} exited with status {code}"

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the process is reaped either way."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killing it",
                self.name,
                self.proc.pid,
                grace,
            )
            self.proc.kill()
            self.proc.wait()


def _ceph_conf(root: Path, fsid: str, mon_port: int, rgw_port: int, memstore_bytes: int) -> str:
    return f"""\
[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without this the gateway loops on "get_initial_auth_request returned -13".
ms_mon_client_mode = crc
run_dir = {root}/run
pid_file = {root}/run/$name.pid
log_file = {root}/log/$name.log
mon_cluster_log_file = {root}/log/cluster.log
crash_dir = {root}/crash
keyring = {root}/keyring
# Admin sockets are not used, and pytest's temporary paths can exceed the 107-byte limit.
admin_socket =
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 1
osd_pool_default_pgp_num = 1
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
# The monitor batches map changes for up to a second, and the gateway creates its pools one
# after another, each waiting for a new map: the default made startup take 17 s instead of 1 s.
paxos_propose_interval = 0.01
paxos_min_wait = 0.01
# A taken port fails in 3 s rather than 15 s (then ceph_rgw starts over on other ports).
ms_bind_retry_delay = 1

[mon.a]
mon_data = {root}/mon

[osd]
osd_data = {root}/osd.$id
osd_objectstore = memstore
memstore_device_bytes = {memstore_bytes}

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {root}/rgw
rgw_thread_pool_size = 32
rgw_rados_pool_pg_num_min = 1
"""


def _ceph_env() -> dict[str, str]:
    """Our environment without CEPH_ARGS / CEPH_CONF, which would change what the tools do."""
    return {k: v for k, v in os.environ.items() if k not in ("CEPH_ARGS", "CEPH_CONF")}


@contextlib.contextmanager
def ceph_rgw(
    workdir: Path,
    *,
    timeout: float = 120.0,
    memstore_bytes: int = 4 << 30,
) -> Iterator[S3Endpoint]:
    """A one-node Ceph cluster with a RADOS Gateway on 127.0.0.1, and an S3 user on it.

    One monitor and one OSD that keeps its objects in memory (``memstore``, at most
    ``memstore_bytes``), no cephx, all files in a new directory in ``workdir``; the monitor and
    the gateway listen on free loopback ports. Yields once a bucket can be created and written
    (the gateway creates its pools on first use); startup waits at most ``timeout`` seconds in
    all. On exit the gateway, then the OSD, then the monitor are stopped and the directory is
    removed.
    """
    missing = [
        f"{prog} (Debian package {pkg})"
        for prog, pkg in _CEPH_PROGRAMS.items()
        if shutil.which(prog) is None
    ]
    if missing:
        raise ServiceUnavailable(
            "Ceph is not installed: missing " + ", ".join(missing) + ". Install with: "
            "apt-get install --no-install-recommends " + " ".join(CEPH_PACKAGES)
        )
    started = time.monotonic()
    deadline = started + timeout
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        root = Path(tempfile.mkdtemp(prefix="ceph-", dir=workdir)).resolve()
        daemons: list[_Daemon] = []
        try:
            endpoint = _ceph_start(root, daemons, deadline, memstore_bytes)
            break
        except ServiceStartError:
            _ceph_stop(root, daemons, remove=False)
            # The free ports were picked before the daemons bound them, and another process
            # can take one in between. Rare, but then start over on new ports.
            taken = _port_was_taken(root / "log")
            shutil.rmtree(root, ignore_errors=True)
            if not taken or attempt == _PORT_ATTEMPTS:
                raise
            log.warning("ceph: a port was taken before a daemon could bind it; starting over")
        except BaseException:
            _ceph_stop(root, daemons)
            raise
    log.info("ceph rgw at %s (%.2f s, files in %s)", endpoint.url, time.monotonic() - started, root)
    try:
        yield endpoint
    finally:
        _ceph_stop(root, daemons)


def _ceph_stop(root: Path, daemons: list[_Daemon], *, remove: bool = True) -> None:
    """Stop the daemons in reverse order of start (gateway, OSD, monitor); remove ``root``."""
    stopping = time.monotonic()
    for daemon in reversed(daemons):
        try:
            daemon.stop(grace=15)
        except Exception:  # noqa: BLE001 - stop the others all the same
            log.exception("could not stop %s", daemon.name)
    if remove:
        shutil.rmtree(root, ignore_errors=True)
    log.info("ceph stopped (%.2f s)", time.monotonic() - stopping)


def _port_was_taken(logdir: Path) -> bool:
    """Whether the monitor or the gateway (now stopped, logs complete) failed to bind its port.

    (The OSD picks its own ports and logs taken ones as it goes: its log does not count.)
    """
    for path in [*logdir.glob("mon.*"), *logdir.glob("client.rgw.*")]:
        with contextlib.suppress(OSError):
            if b"Address already in use" in path.read_bytes():
                return True
    return False


def _ceph_start(
    root: Path, daemons: list[_Daemon], deadline: float, memstore_bytes: int
) -> S3Endpoint:
    """Start monitor, OSD and gateway (appending each to ``daemons`` as it starts)."""
    for sub in ("run", "log", "crash", "mon", "rgw"):
        (root / sub).mkdir()
    logdir = root / "log"
    env = _ceph_env()
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = _free_ports(2)
    conf = root / "ceph.conf"
    conf.write_text(_ceph_conf(root, fsid, mon_port, rgw_port, memstore_bytes))
    base = ["-c", str(conf)]

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def dead() -> str | None:
        return next((d for d in (x.dead() for x in daemons) if d is not None), None)

    def run(
        cmd: Sequence[str], what: str, logs: Sequence[Path] = (), timeout: float | None = None
    ) -> str:
        return _run(cmd, what=what, timeout=min(left(), timeout or left()), logs=logs, env=env)

    # Monitor.
    mon_log = logdir / "mon.a.log"
    monmap = root / "monmap"
    run(
        [
            "monmaptool",
            "--create",
            "--addv",
            "a",
            f"[v2:127.0.0.1:{mon_port}]",
            "--fsid",
            fsid,
            str(monmap),
        ],
        "ceph monmaptool",
    )
    run(
        ["ceph-mon", *base, "--mkfs", "-i", "a", "--monmap", str(monmap)],
        "ceph-mon --mkfs",
        [mon_log],
    )
    daemons.append(
        _Daemon("ceph-mon", ["ceph-mon", *base, "-f", "-i", "a"], logdir / "mon.a.out", env)
    )

    def mon_listens() -> bool | None:
        with socket.create_connection(("127.0.0.1", mon_port), timeout=2):
            return True

    _wait_until(
        mon_listens, what="ceph-mon listening", deadline=deadline, logs=[mon_log], dead=dead
    )

    # OSD. `osd new UUID` is idempotent, so it is retried until the monitor answers; each try is
    # bounded, and a monitor that died ends the wait.
    osd_uuid = str(uuid.uuid4())

    def osd_new() -> str | None:
        out = run(
            ["ceph", *base, "--connect-timeout", "10", "osd", "new", osd_uuid],
            "ceph osd new",
            timeout=20,
        )
        return out.strip() or None

    osd_id = _wait_until(
        osd_new,
        what="ceph monitor registering the OSD",
        deadline=deadline,
        logs=[mon_log],
        dead=dead,
    )
    osd_log = logdir / f"osd.{osd_id}.log"
    (root / f"osd.{osd_id}").mkdir()
    run(
        ["ceph-osd", *base, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
        "ceph-osd --mkfs",
        [osd_log],
    )
    daemons.append(
        _Daemon(
            f"ceph-osd.{osd_id}",
            ["ceph-osd", *base, "-f", "-i", osd_id],
            logdir / f"osd.{osd_id}.out",
            env,
        )
    )

    def osd_up() -> bool | None:
        out = run(
            ["ceph", *base, "--connect-timeout", "10", "osd", "stat", "-f", "json"],
            "ceph osd stat",
            timeout=20,
        )
        return True if json.loads(out).get("num_up_osds", 0) >= 1 else None

    _wait_until(
        osd_up,
        what="ceph OSD coming up",
        deadline=deadline,
        logs=[osd_log, mon_log],
        dead=dead,
        interval=0.2,
    )

    # Gateway.
    rgw_log = logdir / "client.rgw.log"
    daemons.append(
        _Daemon(
            "radosgw", ["radosgw", *base, "-f", "-n", "client.rgw"], logdir / "client.rgw.out", env
        )
    )
    url = f"http://127.0.0.1:{rgw_port}"

    def http_answers() -> bool | None:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                response.read()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means that the frontend serves
        return True

    _wait_until(
        http_answers,
        what="radosgw answering HTTP",
        deadline=deadline,
        logs=[rgw_log, osd_log],
        dead=dead,
    )

    endpoint = S3Endpoint(
        url=url, access_key=secrets.token_hex(10).upper(), secret_key=secrets.token_urlsafe(30)
    )
    run(
        [
            "radosgw-admin",
            *base,
            "-n",
            "client.admin",
            "user",
            "create",
            "--uid=ingestd-test",
            "--display-name=ingestd test",
            f"--access-key={endpoint.access_key}",
            f"--secret-key={endpoint.secret_key}",
        ],
        "radosgw-admin user create",
        [rgw_log],
    )

    # The first bucket and object make the gateway create its index and data pools.
    _wait_until(
        _bucket_probe(endpoint),
        what="radosgw creating a bucket",
        deadline=deadline,
        logs=[rgw_log, osd_log],
        dead=dead,
        interval=0.5,
    )
    return endpoint


def _bucket_probe(endpoint: S3Endpoint) -> Callable[[], bool | None]:
    """A probe that creates a bucket, writes and deletes an object, and deletes the bucket."""
    from botocore.exceptions import ClientError

    client = endpoint.client()
    bucket = f"probe-{uuid.uuid4().hex[:12]}"

    def probe() -> bool | None:
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:  # an earlier try got this far
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        client.put_object(Bucket=bucket, Key="probe", Body=b"probe")
        client.delete_object(Bucket=bucket, Key="probe")
        client.delete_bucket(Bucket=bucket)
        return True

    return probe


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` that has initdb, pg_ctl and createdb."""
    candidates: list[tuple[int, Path]] = []
    for entry in glob.glob(POSTGRES_BIN_GLOB):
        path = Path(entry)
        if all((path / prog).is_file() for prog in ("initdb", "pg_ctl", "createdb")):
            version = path.parent.name
            candidates.append((int(version) if version.isdigit() else 0, path))
    if not candidates:
        raise ServiceUnavailable(
            f"PostgreSQL is not installed: no initdb and pg_ctl under {POSTGRES_BIN_GLOB}. "
            "Install with: apt-get install " + " ".join(POSTGRES_PACKAGES)
        )
    return max(candidates)[1]


@contextlib.contextmanager
def postgres(
    workdir: Path,
    *,
    dbname: str = "ingestd_test",
    timeout: float = 60.0,
) -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket (no TCP), with database ``dbname``.

    Yields an SQLAlchemy URL for psycopg 3:
    ``postgresql+psycopg://postgres@/DBNAME?host=SOCKETDIR``, trust authentication.

    Run as root, the server runs as the ``postgres`` user (through ``runuser``), since PostgreSQL
    refuses root. The cluster lives in a new directory in ``workdir``, owned by the server's
    user -- unless that user cannot reach it (pytest's temporary root is mode 0700) or the
    socket's path would be too long, in which case a private directory under the system
    temporary directory is used instead. The server is tuned for tests (fsync off: a crash of
    the machine loses its data). On exit it is stopped and the directory removed.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", dbname):
        raise ValueError(f"unsupported database name {dbname!r}")
    bindir = _postgres_bin()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise ServiceUnavailable(
                "runuser (Debian package util-linux) not found: needed to "
                "run PostgreSQL as a user other than root"
            )
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceUnavailable(
                "no user `postgres` to run PostgreSQL as. Install with: "
                "apt-get install " + " ".join(POSTGRES_PACKAGES)
            ) from exc
        run_as = ["runuser", "-u", "postgres", "--"]

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    base = _postgres_dir(workdir, owner, run_as)
    data = base / "data"
    server_log = base / "postgres.log"
    try:
        try:
            _postgres_start(bindir, run_as, base, data, server_log, dbname, timeout)
            url = (
                f"postgresql+psycopg://postgres@/{dbname}"
                f"?host={urllib.parse.quote(str(base), safe='/')}"
            )
            log.info("postgres at %s (%.2f s)", url, time.monotonic() - started)
            yield url
        finally:
            stopping = time.monotonic()
            _postgres_stop(bindir, run_as, base, data, server_log)
            log.info("postgres stopped (%.2f s)", time.monotonic() - stopping)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _postgres_dir(workdir: Path, owner: pwd.struct_passwd | None, run_as: list[str]) -> Path:
    """A new directory for the cluster and its socket, owned by the server's user."""

    def usable(path: Path) -> bool:
        if len(f"{path}/{_PG_SOCKET_NAME}") > _SUN_PATH_MAX:
            return False
        if not run_as:
            return True
        check = [*run_as, "test", "-w", str(path), "-a", "-x", str(path)]
        return (
            subprocess.run(check, stdin=subprocess.DEVNULL, timeout=30, check=False).returncode == 0
        )

    base = Path(tempfile.mkdtemp(prefix="pg-", dir=workdir)).resolve()
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    if usable(base):
        return base
    base.rmdir()
    fallback = Path(tempfile.mkdtemp(prefix="ingestd-pg-")).resolve()
    log.info(
        "postgres cannot use %s (not reachable for its user, or the socket path would be "
        "too long); using %s",
        workdir,
        fallback,
    )
    if owner is not None:
        os.chown(fallback, owner.pw_uid, owner.pw_gid)
    return fallback


def _postgres_start(
    bindir: Path,
    run_as: list[str],
    base: Path,
    data: Path,
    server_log: Path,
    dbname: str,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    _run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        what="postgres initdb",
        timeout=left(),
        cwd=base,
    )
    settings = {
        "listen_addresses": "''",
        "unix_socket_directories": "'" + str(base).replace("'", "''") + "'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "shared_buffers": "32MB",
    }
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# ingestd test harness\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    wait = int(left())
    _run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(server_log),
            "-w",
            "-t",
            str(wait),
            "start",
        ],
        what="postgres pg_ctl start",
        timeout=wait + 10,
        logs=[server_log],
        cwd=base,
    )
    _run(
        [*run_as, str(bindir / "createdb"), "-h", str(base), "-U", "postgres", dbname],
        what="postgres createdb",
        timeout=left(),
        logs=[server_log],
        cwd=base,
    )


def _postgres_stop(
    bindir: Path, run_as: list[str], base: Path, data: Path, server_log: Path
) -> None:
    """pg_ctl stop: fast mode (disconnects clients), then immediate, then SIGKILL."""
    if not (data / "postmaster.pid").exists():
        return  # not started, or already stopped
    for mode in ("fast", "immediate"):
        try:
            _run(
                [
                    *run_as,
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                what=f"postgres pg_ctl stop -m {mode}",
                timeout=40,
                logs=[server_log],
                cwd=base,
            )
            return
        except ServiceStartError:
            log.exception("postgres did not stop in %s mode", mode)
    _kill_postmaster(data)


def _kill_postmaster(data: Path) -> None:
    """SIGKILL the postmaster of ``data`` (its backends exit when it is gone), if it still runs.

    The pid comes from postmaster.pid, and is killed only if that process runs on ``data``:
    a stale pid file may name an unrelated process by now.
    """
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return
    if str(data).encode() in args:
        log.warning("killing postmaster %d of %s", pid, data)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


__all__ = [
    "CEPH_PACKAGES",
    "POSTGRES_BIN_GLOB",
    "POSTGRES_PACKAGES",
    "REGION",
    "S3Endpoint",
    "ServiceError",
    "ServiceStartError",
    "ServiceUnavailable",
    "ceph_rgw",
    "moto_server",
    "postgres",
    "processes_mentioning",
]
