"""Real services for integration tests: moto's S3 server, a one-node Ceph RADOS Gateway, PostgreSQL.

Each service is a plain context manager (the project's ``conftest.py`` wraps them in fixtures):

* :func:`moto_server` -- moto's S3 emulation in a thread of this process, on 127.0.0.1.
* :func:`ceph_rgw` -- a throwaway Ceph cluster (one mon, one in-memory OSD, one radosgw) on
  127.0.0.1 with an S3 user, the S3 server that real deployments run.
* :func:`postgres` -- a throwaway PostgreSQL server listening on a unix socket only.

Everything listens on loopback or unix sockets only. Every wait is bounded; a service that does
not come up raises :class:`ServiceStartError` carrying the tail of the relevant log, and a
service whose programs are not installed raises :class:`ServiceUnavailable` naming what is
missing (and the Debian package that provides it), so a test run reports it instead of hanging.
On exit -- also when the body raised -- the daemons are stopped and the files removed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
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

# Which Debian package provides each program we run (for ServiceUnavailable messages).
_CEPH_PROGRAMS = {
    "monmaptool": "ceph-base (pulled in by ceph-mon)",
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "radosgw-admin": "ceph-common",
    "ceph": "ceph-common",
}

# AF_UNIX socket paths are limited to 108 bytes (sun_path), including the NUL.
_SUN_PATH_MAX = 107

_T = TypeVar("_T")


class ServiceError(RuntimeError):
    """Base class of the errors raised by this module."""


class ServiceUnavailable(ServiceError):
    """The programs (or user) a service needs are not installed on this machine."""


class ServiceStartError(ServiceError):
    """A service was started but did not come up (or did not stop) in time."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where an S3 server answers and the credentials of a user on it."""

    url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def client(self) -> S3Client:
        """A boto3 S3 client for this endpoint (path-style addressing, bounded timeouts).

        A fresh boto3 session is used, so the caller's ``AWS_*`` profile settings do not leak in.
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


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    text = "\n".join(data.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{text}"


def _run(
    cmd: Sequence[str],
    *,
    what: str,
    timeout: float,
    logs: Sequence[Path] = (),
    cwd: Path | None = None,
) -> str:
    """Run a short command; raise ServiceStartError with its output and ``logs`` if it fails."""
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceStartError(
            f"{what}: `{' '.join(cmd)}` did not finish in {timeout:.0f} s\n"
            + "\n".join(_tail(p) for p in logs)
        ) from exc
    if proc.returncode != 0:
        raise ServiceStartError(
            f"{what}: `{' '.join(cmd)}` exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}\n"
            + "\n".join(_tail(p) for p in logs)
        )
    return proc.stdout


def _wait_until(
    probe: Callable[[], _T | None],
    *,
    what: str,
    deadline: float,
    logs: Sequence[Path],
    alive: Callable[[], str | None] = lambda: None,
    interval: float = 0.1,
) -> _T:
    """Call ``probe`` until it returns non-None, or raise ServiceStartError at ``deadline``.

    ``alive`` returns a description of a dead daemon (or None while all live), so that a daemon
    that died stops the wait at once instead of at the deadline.
    """
    last_error = "never probed"
    while True:
        dead = alive()
        if dead is not None:
            raise ServiceStartError(
                f"{what}: {dead}\n" + "\n".join(_tail(p) for p in logs)
            )
        try:
            result = probe()
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if result is not None:
                return result
            last_error = "not ready"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceStartError(
                f"{what}: timed out (last probe: {last_error})\n"
                + "\n".join(_tail(p) for p in logs)
            )
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 1.0)


# --------------------------------------------------------------------------------------------
# moto


@contextlib.contextmanager
def moto_server(*, timeout: float = 30.0) -> Iterator[S3Endpoint]:
    """moto's S3 server in a thread of this process, on 127.0.0.1 and a free port.

    moto keeps its state in process-wide backends: the server is reset on entry so that it
    starts empty, but two moto servers (or ``mock_aws``) alive at once in one process share
    their buckets.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ServiceUnavailable(f"moto's server is not installed ({exc}): pip install "
                                 "'moto[server]'") from exc

    started = time.monotonic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits without a bound for the server thread; bound it from the outside.
    starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starter.start()
    starter.join(timeout)
    if starter.is_alive():
        raise ServiceStartError(f"moto server did not start in {timeout:.0f} s")
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=timeout) as response:
            response.read()
        log.info("moto server at %s (%.2f s)", url, time.monotonic() - started)
        yield S3Endpoint(url=url, access_key="testing", secret_key="testing")
    finally:
        stopping = time.monotonic()
        server.stop()
        log.info("moto server stopped (%.2f s)", time.monotonic() - stopping)


# --------------------------------------------------------------------------------------------
# Ceph


class _Daemon:
    """A Ceph daemon run in the foreground (``-f``) as our child, so we hold its pid."""

    def __init__(self, name: str, cmd: Sequence[str], log_file: Path, out_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self.out_file = out_file
        with out_file.open("ab") as out:
            self.proc = subprocess.Popen(
                list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        log.debug("started %s (pid %d): %s", name, self.proc.pid, " ".join(cmd))

    def dead(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"{self.name} exited with status {code}"

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it",
                        self.name, self.proc.pid, grace)
            self.proc.kill()
            self.proc.wait(10)


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
# Admin sockets are not used, and pytest's temporary paths can exceed the 107-byte limit.
admin_socket =
crash_dir = {root}/crash
keyring = {root}/keyring
mon_cluster_log_file = {root}/log/cluster.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 1
osd_pool_default_pgp_num = 1
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
# The monitor batches map changes for up to a second; pools are created one at a time.
paxos_propose_interval = 0.01
paxos_min_wait = 0.01

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
rgw_enable_usage_log = false
rgw_rados_pool_pg_num_min = 1
"""


def _ceph_missing() -> list[str]:
    return [f"{prog} (Debian package {pkg})" for prog, pkg in _CEPH_PROGRAMS.items()
            if shutil.which(prog) is None]


@contextlib.contextmanager
def ceph_rgw(
    workdir: Path,
    *,
    timeout: float = 120.0,
    memstore_bytes: int = 4 << 30,
) -> Iterator[S3Endpoint]:
    """A one-node Ceph cluster with a RADOS Gateway on 127.0.0.1 and an S3 user.

    One monitor and one OSD keeping its objects in memory (``memstore``, at most
    ``memstore_bytes``), no cephx, everything under a new directory in ``workdir``. Yields once a
    bucket can be created and written (the gateway creates its pools on first use). Startup
    waits at most ``timeout`` seconds in all. On exit the gateway, then the OSD, then the
    monitor are stopped and the directory is removed.
    """
    missing = _ceph_missing()
    if missing:
        raise ServiceUnavailable(
            "Ceph is not installed; missing " + ", ".join(missing)
            + "; install with: apt-get install --no-install-recommends " + " ".join(CEPH_PACKAGES)
        )
    started = time.monotonic()
    deadline = started + timeout
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ceph-", dir=workdir)).resolve()
    daemons: list[_Daemon] = []
    try:
        endpoint = _ceph_start(root, daemons, deadline, memstore_bytes)
        log.info("ceph rgw at %s (%.1f s, in %s)", endpoint.url, time.monotonic() - started, root)
        yield endpoint
    finally:
        stopping = time.monotonic()
        # Gateway first, then the OSD, then the monitor (reverse order of start).
        for daemon in reversed(daemons):
            try:
                daemon.stop(grace=15)
            except Exception:  # noqa: BLE001 - keep stopping the others
                log.exception("could not stop %s", daemon.name)
        shutil.rmtree(root, ignore_errors=True)
        log.info("ceph stopped and removed (%.1f s)", time.monotonic() - stopping)


def _ceph_start(root: Path, daemons: list[_Daemon], deadline: float,
                memstore_bytes: int) -> S3Endpoint:
    for sub in ("run", "log", "crash", "mon", "rgw"):
        (root / sub).mkdir()
    logs = root / "log"
    fsid = str(uuid.uuid4())
    mon_port = _free_port()
    rgw_port = _free_port()
    while rgw_port == mon_port:
        rgw_port = _free_port()
    conf = root / "ceph.conf"
    conf.write_text(_ceph_conf(root, fsid, mon_port, rgw_port, memstore_bytes))
    base = ["-c", str(conf)]

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def alive() -> str | None:
        return next((d for d in (x.dead() for x in daemons) if d is not None), None)

    def ceph(*args: str, what: str, daemon_logs: Sequence[Path]) -> str:
        return _run(["ceph", *base, "--connect-timeout", "10", *args],
                    what=what, timeout=min(left(), 20.0), logs=daemon_logs, env=env)

    # Monitor.
    mon_log = logs / "mon.a.log"
    monmap = root / "monmap"
    _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
          "--fsid", fsid, str(monmap)], what="ceph monmaptool", timeout=left())
    _run(["ceph-mon", *base, "--mkfs", "-i", "a", "--monmap", str(monmap)],
         what="ceph-mon --mkfs", timeout=left(), logs=[mon_log])
    daemons.append(_Daemon("ceph-mon", ["ceph-mon", *base, "-f", "-i", "a"], mon_log,
                           logs / "mon.a.out"))

    # OSD: register it with the monitor. `osd new UUID` is idempotent, so it is retried until
    # the monitor answers (each try bounded by --connect-timeout; a dead monitor stops the wait).
    osd_uuid = str(uuid.uuid4())

    def osd_new() -> str | None:
        return ceph("osd", "new", osd_uuid, what="ceph osd new", daemon_logs=[]).strip() or None

    osd_id = _wait_until(osd_new, what="ceph monitor registering the OSD", deadline=deadline,
                         logs=[mon_log], alive=alive)
    osd_log = logs / f"osd.{osd_id}.log"
    (root / f"osd.{osd_id}").mkdir()
    _run(["ceph-osd", *base, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
         what="ceph-osd --mkfs", timeout=left(), logs=[osd_log])
    daemons.append(_Daemon(f"ceph-osd.{osd_id}", ["ceph-osd", *base, "-f", "-i", osd_id],
                           osd_log, logs / f"osd.{osd_id}.out"))

    def osd_up() -> bool | None:
        out = ceph("osd", "stat", "-f", "json", what="ceph osd stat",
                   daemon_logs=[mon_log, osd_log])
        return True if json.loads(out).get("num_up_osds", 0) >= 1 else None

    _wait_until(osd_up, what="ceph OSD coming up", deadline=deadline,
                logs=[osd_log, mon_log], alive=alive, interval=0.2)

    # Gateway.
    rgw_log = logs / "client.rgw.log"
    daemons.append(_Daemon("radosgw", ["radosgw", *base, "-f", "-n", "client.rgw"], rgw_log,
                           logs / "client.rgw.out"))
    url = f"http://127.0.0.1:{rgw_port}"

    def http_answers() -> bool | None:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                response.read()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means the frontend is serving
        return True

    _wait_until(http_answers, what="radosgw answering HTTP", deadline=deadline,
                logs=[rgw_log, osd_log], alive=alive)

    endpoint = S3Endpoint(url=url, access_key=secrets.token_hex(10).upper(),
                          secret_key=secrets.token_urlsafe(30))
    _run(["radosgw-admin", *base, "-n", "client.admin", "user", "create", "--uid=ingestd-test",
          "--display-name=ingestd test", f"--access-key={endpoint.access_key}",
          f"--secret-key={endpoint.secret_key}"],
         what="radosgw-admin user create", timeout=left(), logs=[rgw_log])

    # The first bucket and object make the gateway create its index and data pools.
    client = endpoint.client()
    probe_bucket = f"probe-{uuid.uuid4().hex[:12]}"

    def bucket_works() -> bool | None:
        client.create_bucket(Bucket=probe_bucket)
        client.put_object(Bucket=probe_bucket, Key="probe", Body=b"probe")
        client.delete_object(Bucket=probe_bucket, Key="probe")
        client.delete_bucket(Bucket=probe_bucket)
        return True

    _wait_until(bucket_works, what="radosgw creating a bucket", deadline=deadline,
                logs=[rgw_log, osd_log], alive=alive, interval=0.5)
    return endpoint


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` that has initdb and pg_ctl."""
    candidates: list[tuple[int, Path]] = []
    for entry in glob.glob(POSTGRES_BIN_GLOB):
        path = Path(entry)
        if all((path / prog).is_file() for prog in ("initdb", "pg_ctl", "createdb")):
            version = path.parent.name
            candidates.append((int(version) if version.isdigit() else 0, path))
    if not candidates:
        raise ServiceUnavailable(
            f"PostgreSQL server programs (initdb, pg_ctl) not found under {POSTGRES_BIN_GLOB}; "
            "install with: apt-get install " + " ".join(POSTGRES_PACKAGES)
        )
    return max(candidates)[1]


@contextlib.contextmanager
def postgres(
    workdir: Path,
    *,
    dbname: str = "ingestd_test",
    timeout: float = 60.0,
) -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket (no TCP); yields an SQLAlchemy URL.

    The URL is ``postgresql+psycopg://postgres@/DBNAME?host=SOCKETDIR`` (psycopg 3). When run as
    root the server runs as the ``postgres`` user (``runuser``), since PostgreSQL refuses root.
    The cluster lives in a new directory in ``workdir`` owned by that user -- unless that user
    cannot reach it (pytest's own temporary root is mode 0700) or the socket path would be too
    long, in which case a private directory under the system temporary directory is used.
    The server is tuned for tests (fsync off: a crash loses data, which is fine here). On exit
    it is stopped and the directory removed.
    """
    bindir = _postgres_bin()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise ServiceUnavailable("runuser not found (Debian package util-linux); needed to "
                                     "run PostgreSQL as a non-root user")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceUnavailable("no `postgres` user to run PostgreSQL as; install with: "
                                     "apt-get install " + " ".join(POSTGRES_PACKAGES)) from exc
        run_as = ["runuser", "-u", "postgres", "--"]

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    base = _postgres_dir(workdir, owner, run_as)
    data = base / "data"
    server_log = base / "postgres.log"
    try:
        _postgres_start(bindir, run_as, base, data, server_log, dbname, timeout)
        url = f"postgresql+psycopg://postgres@/{dbname}?host={base}"
        log.info("postgres at %s (%.2f s)", url, time.monotonic() - started)
        try:
            yield url
        finally:
            stopping = time.monotonic()
            _postgres_stop(bindir, run_as, base, data, server_log)
            log.info("postgres stopped (%.2f s)", time.monotonic() - stopping)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _postgres_dir(workdir: Path, owner: pwd.struct_passwd | None, run_as: list[str]) -> Path:
    """A new directory for the cluster that the server's user can use, with a short path."""
    socket_name_len = len("/.s.PGSQL.5432")
    base = Path(tempfile.mkdtemp(prefix="pg-", dir=workdir)).resolve()
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    usable = len(str(base)) + socket_name_len <= _SUN_PATH_MAX and (
        not run_as or subprocess.run([*run_as, "test", "-w", str(base), "-a", "-x", str(base)],
                                     stdin=subprocess.DEVNULL, timeout=30,
                                     check=False).returncode == 0
    )
    if usable:
        return base
    base.rmdir()
    fallback = Path(tempfile.mkdtemp(prefix="ingestd-pg-")).resolve()
    log.info("postgres cannot use %s (unreachable for its user or socket path too long); "
             "using %s", workdir, fallback)
    if owner is not None:
        os.chown(fallback, owner.pw_uid, owner.pw_gid)
    return fallback


def _postgres_start(bindir: Path, run_as: list[str], base: Path, data: Path, server_log: Path,
                    dbname: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    _run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
          "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
         what="postgres initdb", timeout=left(), cwd=base)
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
    _run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(server_log), "-w",
          "-t", str(int(left())), "start"],
         what="postgres pg_ctl start", timeout=left() + 5, logs=[server_log], cwd=base)
    _run([*run_as, str(bindir / "createdb"), "-h", str(base), "-U", "postgres", dbname],
         what="postgres createdb", timeout=left(), logs=[server_log], cwd=base)


def _postgres_stop(bindir: Path, run_as: list[str], base: Path, data: Path,
                   server_log: Path) -> None:
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "30"]
    try:
        _run([*pg_ctl, "-m", "fast", "stop"], what="postgres pg_ctl stop", timeout=40,
             logs=[server_log], cwd=base)
        return
    except ServiceStartError:
        log.exception("postgres did not stop cleanly; stopping it immediately")
    _kill_postmaster(data)


def _kill_postmaster(data: Path) -> None:
    """Last resort: SIGKILL the postmaster named in postmaster.pid (its children follow)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


__all__ = [
    "CEPH_PACKAGES",
    "POSTGRES_PACKAGES",
    "REGION",
    "S3Endpoint",
    "ServiceError",
    "ServiceStartError",
    "ServiceUnavailable",
    "ceph_rgw",
    "moto_server",
    "postgres",
]
