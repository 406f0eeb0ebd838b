"""`scripts/soak`: a day of docking in a bounded time, then proofs that nothing was lost.

``scripts/soak --minutes 30`` starts a station (``ingestd init``) whose store lies on a small
file system of its own (an ext4 loop device when run as root), with an S3 target on moto's
server (in this process, on 127.0.0.1) and the web server on loopback, and runs ``ingestd run``
under a steady stream of docks under the watched root: good recorders, hostile ones (odd
bytes in names, ``..``-like and very long names, a link, a FIFO, a damaged clip, an empty
file) and recorders pulled out while a copy runs (docked again a little later, as an officer
does). Meanwhile, at seeded random moments, the daemon is stopped with SIGTERM or killed with
SIGKILL and started again, the S3 server is stopped and started, the store is filled to a few
hundred KiB and freed again; the page, ``/api/status`` and ``/metrics`` are scraped every few
seconds and the daemon's resident memory sampled.

At the end (the daemon left running until replication caught up, within a bounded drain) it
proves, and prints: every file of every recorder stored exactly once or accounted for (a
failed acquisition or a skipped entry naming it), the ledger verified, every local and
off-site copy read back, no temporary files, no alert left firing that should have resolved,
every scrape answered, and memory flat (the median of the last window not above the first's by
more than ``MEMORY_MARGIN``). Exit 0 only when every proof held; each failure is one line.

Everything listens on 127.0.0.1; the traffic is bounded by the run's length. ``--json``
prints the report as JSON on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import stat
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import REPO, fmt_bytes, machine_info, machine_line, table  # noqa: E402

from ingestd.domain.canonical import display_path  # noqa: E402

DEFAULT_WORK = REPO / ".soak"  # git-ignored with the other work folders
WORK_MARK = ".soak-work"  # a work folder holds it: only such a folder is emptied
TARGET = "offsite"
BUCKET = "soak-evidence"
PREFIX = "station-01"
MEMORY_MARGIN = 0.20  # the last window's median RSS may exceed the first's by this share
MEMORY_SLACK = 8 * 2**20  # ... and by this much, for the allocator's rounding
SCRAPE_EVERY = 3.0
SAMPLE_EVERY = 2.0
WARM_UP = 10.0  # RSS is sampled from this long after a start: not the imports' ramp
FULL_LEFT = 32 * 1024  # what a full store keeps free: less than any clip (77 KB)
STOP_WAIT = 90.0  # a warm stop finishes the file in flight: bounded all the same
#: Conditions about one recorder's last dock: a hostile recorder leaves them firing, rightly.
RECORDER_CONDITIONS = ("skipped_files", "damaged_media", "recorder_fault", "recorder_clock",
                       "unknown_recorder")
#: Acquisition states whose bytes are in the store.
TAKEN = ("stored", "known")


def say(message: str) -> None:
    """Progress for the person watching; never on stdout."""
    print(f"soak: {message}", file=sys.stderr, flush=True)


class SoakError(Exception):
    """The soak could not run (not a proof that failed): the message says why."""


# -- the proofs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Proof:
    name: str
    held: bool
    detail: str
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{'held' if self.held else 'FAILED'}: {self.name}: {self.detail}"


def _proof(name: str, problems: list[str], detail: str) -> Proof:
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    return Proof(name=name, held=not problems, detail=detail if not problems
                 else f"{len(problems)} problem(s): {problems[0]}", problems=shown)


@dataclass(frozen=True, kw_only=True)
class SourceFact:
    """One entry of a recorder's folder, as the soak left it there."""

    serial: str
    rel: bytes  # the path inside the recorder folder
    kind: str  # "file", "symlink", "fifo", "other"
    sha256: str = ""
    size: int = 0


def recorder_facts(folder: Path, serial: str) -> list[SourceFact]:
    """Every entry under a recorder's folder, without following links or opening FIFOs."""
    facts = []
    root = os.fsencode(folder)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(
                os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if os.path.islink(full):
                facts.append(SourceFact(serial=serial, rel=rel, kind="symlink"))
            elif os.path.isfile(full) and not os.path.islink(full):
                digest = hashlib.sha256()
                with open(full, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
                facts.append(SourceFact(serial=serial, rel=rel, kind="file",
                                        sha256=digest.hexdigest(), size=st.st_size))
            elif stat.S_ISFIFO(st.st_mode):
                facts.append(SourceFact(serial=serial, rel=rel, kind="fifo"))
            else:
                facts.append(SourceFact(serial=serial, rel=rel, kind="other"))
    return facts


def _catalog(home: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{home / 'catalog.sqlite'}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    return con


def _ledger_skips(home: Path) -> dict[str, set[str]]:
    """serial -> the displayed paths its `skipped` entries name (from the ledger mirror)."""
    out: dict[str, set[str]] = {}
    mirror = home / "ledger.jsonl"
    with mirror.open(encoding="utf-8") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("kind") != "skipped":
                continue
            data = entry.get("data", {})
            out.setdefault(data.get("serial", ""), set()).update(
                p["path"] for p in data.get("paths", []))
    return out


def _patterns(home: Path) -> list[str]:
    from ingestd import config as config_mod

    return list(config_mod.load(home / config_mod.CONFIG_NAME).ingest.patterns)


def _store_objects(store: Path) -> dict[str, int]:
    """sha256 -> how many objects of that name the store holds (any fan-out)."""
    found: dict[str, int] = {}
    for path in (store / "objects").rglob("*"):
        if path.is_file():
            found[path.name] = found.get(path.name, 0) + 1
    return found


def prove_files(home: Path, store: Path, facts: Sequence[SourceFact]) -> Proof:
    """Every file of every recorder stored exactly once (one item, one object, copied at most
    once, an acquisition of its serial and path naming it), or accounted for: a failed
    acquisition or a `skipped` entry naming it, with its reason. Files no pattern matches are
    not evidence and are left alone, as configured."""
    from ingestd.docks.walk import matches

    patterns = _patterns(home)
    skips = _ledger_skips(home)
    objects = _store_objects(store)
    problems: list[str] = []
    tally = {"stored": 0, "accounted": 0, "not evidence": 0}
    with contextlib.closing(_catalog(home)) as con:
        items = {r["sha256"] for r in con.execute("SELECT sha256 FROM items")}
        acq: dict[tuple[str, str], list[sqlite3.Row]] = {}
        for row in con.execute("SELECT serial, path_hex, state, item, error FROM acquisitions"):
            acq.setdefault((row["serial"], row["path_hex"]), []).append(row)
        copies = {r["item"]: r["n"] for r in con.execute(
            "SELECT item, count(*) AS n FROM acquisitions WHERE state = 'stored' GROUP BY item")}
    for fact in facts:
        where = f"{fact.serial}/{display_path(fact.rel)}"
        skipped = display_path(fact.rel) in skips.get(fact.serial, set())
        if fact.kind == "file" and not matches(os.path.basename(fact.rel), patterns):
            tally["accounted" if skipped else "not evidence"] += 1
            continue
        rows = acq.get((fact.serial, fact.rel.hex()), [])
        if fact.kind == "file" and any(r["state"] in TAKEN and r["item"] == fact.sha256
                                       for r in rows):
            if fact.sha256 not in items:
                problems.append(f"{where}: an acquisition names item {fact.sha256[:12]}, "
                                "which is not in the catalog")
            elif objects.get(fact.sha256, 0) != 1:
                problems.append(f"{where}: {objects.get(fact.sha256, 0)} objects in the store "
                                f"for {fact.sha256[:12]} (one expected)")
            elif copies.get(fact.sha256, 0) > 1:
                problems.append(f"{where}: its bytes were copied {copies[fact.sha256]} times")
            else:
                tally["stored"] += 1
            continue
        failed = [r for r in rows if r["state"] == "failed" and r["error"]]
        if failed or skipped:
            tally["accounted"] += 1
            continue
        states = ",".join(sorted({r["state"] for r in rows})) or "no acquisition"
        problems.append(f"{where} ({fact.kind}): neither stored nor accounted for ({states})")
    stray = sorted(set(objects) - items)
    problems += [f"store object {s[:12]} has no item" for s in stray]
    detail = (f"{len(facts)} files of {len({f.serial for f in facts})} recorders: "
              f"{tally['stored']} stored once, {tally['accounted']} accounted for (failed or "
              f"skipped, with the reason), {tally['not evidence']} not evidence by the patterns")
    return _proof("every file stored exactly once or accounted for", problems, detail)


FULL_PROOF = "a full store refuses, keeps the evidence on the recorder, recovers"


def prove_full(home: Path, facts: Sequence[SourceFact], phases: int) -> Proof:
    """Copies were refused while the store was full, and every file refused so was stored
    once the store had room again (its recorder docked again)."""
    with contextlib.closing(_catalog(home)) as con:
        rows = con.execute("SELECT serial, path_hex, state, item, error FROM acquisitions "
                           "WHERE state IN ('failed', 'stored', 'known')").fetchall()
    refused = {(r["serial"], r["path_hex"]) for r in rows
               if r["state"] == "failed" and "is full" in r["error"]}
    taken = {(r["serial"], r["path_hex"], r["item"]) for r in rows if r["state"] in TAKEN}
    problems = [] if refused else ["no copy was refused while the store was full"]
    later = 0
    for fact in facts:
        if (fact.serial, fact.rel.hex()) not in refused:
            continue
        if (fact.serial, fact.rel.hex(), fact.sha256) in taken:
            later += 1
        else:
            problems.append(f"{fact.serial}/{display_path(fact.rel)}: refused for room, never "
                            "stored after")
    return _proof(FULL_PROOF, problems, f"{phases} full phases: {len(refused)} files refused "
                  f"(store full, nothing partial kept), {later} of them stored once space was "
                  "freed")


def prove_no_temp(home: Path, store: Path) -> Proof:
    """Nothing half-written left: the store's tmp/ is empty, no ``*.partial`` or ``*.tmp``
    under the home or the store."""
    problems = [f"temporary file left: {p}" for p in sorted((store / "tmp").iterdir())] \
        if (store / "tmp").is_dir() else [f"no {store / 'tmp'}"]
    for root in {home, store}:
        for pattern in ("*.partial", "*.tmp"):
            problems += [f"temporary file left: {p}" for p in sorted(root.rglob(pattern))
                         if store / "tmp" not in p.parents]
    return _proof("no temporary files", problems, f"{store / 'tmp'} empty, no *.partial or "
                  f"*.tmp under {home}")


def run_cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """This tree's ingestd (not whatever console script the venv has), in a subprocess."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INGESTD_", "AWS_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update({"INGESTD_ACTOR": "soak", "PYTHONPATH": str(REPO)})
    return subprocess.run([sys.executable, "-m", "ingestd.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _cli_proof(name: str, home: Path, args: Sequence[str], detail: str) -> Proof:
    proc = run_cli(home, *args)
    if proc.returncode == 0:
        return _proof(name, [], detail)
    text = (proc.stdout.strip() or proc.stderr.strip()).replace("\n", " ")
    return _proof(name, [f"ingestd {' '.join(args)} exited {proc.returncode}: {text[:400]}"],
                  detail)


def prove_ledger(home: Path) -> Proof:
    return _cli_proof("ledger verified", home, ["ledger", "verify", "--offsite", "--json"],
                      "ingestd ledger verify --offsite: chain, signatures, mirror, every row, "
                      "every checkpoint, off-site too")


def prove_replicas(home: Path) -> Proof:
    """Every item has a verified copy on the target, and every local and off-site copy reads
    back to its hash (``ingestd audit --all --offsite``)."""
    problems = []
    with contextlib.closing(_catalog(home)) as con:
        items = con.execute("SELECT count(*) FROM items").fetchone()[0]
        missing = [r[0] for r in con.execute(
            "SELECT sha256 FROM items WHERE sha256 NOT IN (SELECT item FROM replicas "
            "WHERE target = ? AND state = 'verified')", (TARGET,))]
    problems += [f"item {s[:12]} has no verified copy on {TARGET}" for s in missing]
    proof = _cli_proof("every replica verified", home,
                       ["audit", "--all", "--offsite", "--decode", "0", "--json"], "")
    problems += proof.problems
    return _proof("every replica verified", problems,
                  f"{items} items, each with a verified copy on {TARGET}; ingestd audit --all "
                  "--offsite re-hashed every local copy and read back every off-site one")


def firing_alerts(home: Path) -> list[dict[str, Any]]:
    proc = run_cli(home, "alerts", "list", "--json")
    if proc.returncode != 0:
        raise SoakError(f"ingestd alerts list exited {proc.returncode}: {proc.stderr[-400:]}")
    data = json.loads(proc.stdout)
    alerts = data.get("alerts", data) if isinstance(data, dict) else data
    return [a for a in alerts if a.get("state", "firing") == "firing"]


def should_have_resolved(alert: dict[str, Any]) -> bool:
    """Every alert but those about a recorder's last dock (a hostile recorder's stand)."""
    return str(alert.get("condition", "")) not in RECORDER_CONDITIONS


def prove_alerts(home: Path) -> Proof:
    firing = firing_alerts(home)
    left = [a for a in firing if should_have_resolved(a)]
    problems = [f"{a.get('alert')} still firing: {a.get('summary', '')}" for a in left]
    kept = sorted(str(a.get("alert")) for a in firing if not should_have_resolved(a))
    return _proof("no alert left firing that should have resolved", problems,
                  f"{len(firing)} firing, all about a recorder's last dock"
                  + (f" ({', '.join(kept[:6])}{', ...' if len(kept) > 6 else ''})" if kept
                     else ""))


def memory_windows(samples: Sequence[tuple[float, int]], window: float
                   ) -> tuple[list[int], list[int]]:
    if not samples:
        return [], []
    start, end = samples[0][0], samples[-1][0]
    first = [rss for t, rss in samples if t <= start + window]
    last = [rss for t, rss in samples if t >= end - window]
    return first, last


def prove_memory(samples: Sequence[tuple[float, int]], window: float) -> Proof:
    first, last = memory_windows(samples, window)
    name = "memory flat"
    if len(first) < 3 or len(last) < 3:
        return _proof(name, [f"too few RSS samples ({len(samples)}) for two {window:.0f} s "
                             "windows"], "")
    a, b = statistics.median(first), statistics.median(last)
    limit = a * (1 + MEMORY_MARGIN) + MEMORY_SLACK
    detail = (f"median RSS {fmt_bytes(a)} in the first {window:.0f} s, {fmt_bytes(b)} in the "
              f"last {window:.0f} s (limit {fmt_bytes(limit)}: +{MEMORY_MARGIN:.0%} "
              f"+ {fmt_bytes(MEMORY_SLACK)}); peak {fmt_bytes(max(r for _, r in samples))}")
    problems = [] if b <= limit else [f"the daemon grew: {detail}"]
    return _proof(name, problems, detail)


# -- the parts of the run -----------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 server in a thread of this process, on one port of 127.0.0.1 for the whole
    run: stopped and started again, its buckets (moto keeps them process-wide) stay."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self.stops = 0

    @property
    def up(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        deadline = time.monotonic() + 30
        while True:
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            starter = threading.Thread(target=server.start, daemon=True)
            starter.start()
            starter.join(10)
            if not starter.is_alive() and self._answers():
                self._server = server
                return
            with contextlib.suppress(Exception):
                server.stop()
            if time.monotonic() > deadline:
                raise SoakError(f"moto did not start again on port {self.port}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=5) as answer:
                answer.read()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.stops += 1

    def make_bucket(self, credentials: Path) -> None:
        import boto3

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset",
                                                      method="POST"), timeout=30).read()
        client = boto3.session.Session(
            aws_access_key_id="soak", aws_secret_access_key="soak", region_name="us-east-1"
        ).client("s3", endpoint_url=self.url)
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        credentials.write_text("[default]\naws_access_key_id = soak\n"
                               "aws_secret_access_key = soak\n", encoding="ascii")
        credentials.chmod(0o600)


class SmallStore:
    """The store on a file system of its own, so that it can be filled: an ext4 loop device
    (root only); else a folder of the work disk, and the full-store phases are not run."""

    def __init__(self, work: Path, size: int) -> None:
        self.work, self.size = work, size
        self.mount = work / "storefs"
        self.device = ""
        self.ballast = self.mount / "ballast"

    def __enter__(self) -> SmallStore:
        self.mount.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("losetup") is None or not shutil.which("mkfs.ext4"):
            say("not root (or no losetup/mkfs.ext4): the store is a plain folder; the "
                "full-store phases are skipped")
            return self
        image = self.work / "storefs.img"
        with image.open("wb") as fh:
            fh.truncate(self.size)
        try:
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])
            self.device = _run(["losetup", "-f", "--show", str(image)]).strip()
            _run(["mount", "-o", "nosuid,nodev", self.device, str(self.mount)])
        except SoakError as exc:
            self.__exit__()
            say(f"no loop device ({exc}): the store is a plain folder; full phases skipped")
        return self

    @property
    def fillable(self) -> bool:
        return bool(self.device)

    def fill(self) -> int:
        """Leave FULL_LEFT bytes free; returns the ballast's size."""
        free = shutil.disk_usage(self.mount).free
        size = max(0, free - FULL_LEFT)
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        return size

    def free_up(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def __exit__(self, *_exc: object) -> None:
        if self.device:
            subprocess.run(["umount", str(self.mount)], capture_output=True, check=False)
            subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
            self.device = ""
        (self.work / "storefs.img").unlink(missing_ok=True)


def _run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SoakError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def unit_environment() -> dict[str, str]:
    """The ``Environment=`` settings of systemd/ingestd.service, the daemon's as deployed."""
    out = {}
    for line in (REPO / "systemd" / "ingestd.service").read_text(encoding="utf-8").splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            out[key] = value
    return out


class Daemon:
    """``ingestd run`` of this tree, restarted as often as the soak stops it."""

    def __init__(self, home: Path, log: Path) -> None:
        self.home, self.log = home, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.stops = 0  # signals sent: a scrape refused across one is not the page's fault
        self.starts = 0
        self.kills: dict[str, int] = {"SIGTERM": 0, "SIGKILL": 0}
        self.unready = 0  # signals that came while Python itself was still starting
        self.problems: list[str] = []
        self._told = False

    @property
    def stopping(self) -> bool:
        """Told to stop and not yet gone (a warm stop closes the page last)."""
        proc = self.proc
        return proc is not None and proc.returncode is None and self._told

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INGESTD_", "AWS_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env.update(unit_environment())  # as the systemd unit runs it
        env.update({"INGESTD_ACTOR": "soak", "PYTHONPATH": str(REPO),
                    "PYTHONUNBUFFERED": "1"})
        with self.log.open("ab") as out:
            out.write(f"\n=== soak: start {self.starts + 1} at {datetime.now(UTC)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingestd.cli", "--home", str(self.home), "run"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.started_at = time.monotonic()
        self.starts += 1

    def stop(self, signum: int) -> int | None:
        """Send ``signum``, wait for the end (bounded); the exit status."""
        proc = self.proc
        if proc is None:
            return None
        name = signal.Signals(signum).name
        self.kills[name] = self.kills.get(name, 0) + 1
        self.stops += 1
        self._told = True
        # Python itself starting (before ingestd's first line) cannot catch a signal: a
        # SIGTERM then ends it by the signal, with nothing of ingestd's begun.
        caught = signum != signal.SIGTERM or catches(proc.pid, signum)
        proc.send_signal(signum)
        try:
            code = proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.problems.append(f"the daemon did not stop within {STOP_WAIT:.0f} s of {name}")
            proc.kill()
            code = proc.wait(30)
        if signum == signal.SIGTERM and code != 0 and (caught or code != -signum):
            self.problems.append(f"the daemon exited {code} after SIGTERM (0 expected)")
        if not caught:
            self.unready += 1  # a SIGTERM (a SIGKILL is never caught: it ends any process)
        self.proc = None
        self._told = False
        return code

    def check_alive(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is not None:
            self.problems.append(f"the daemon exited {proc.returncode} by itself")
            self.proc = None
            self.start()


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its ``SigCgt`` mask); True when
    it cannot be told (gone, or no such line)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return True
    mask = next((line.split()[1] for line in text.splitlines() if line.startswith("SigCgt:")),
                None)
    return mask is None or bool(int(mask, 16) >> (signum - 1) & 1)


def rss_parts(pid: int) -> dict[str, int]:
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) in bytes; empty if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return {}
    return {name: int(rest.split()[0]) * 1024 for name, _, rest in
            (line.partition(":") for line in text.splitlines())
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}


def rss_of(pid: int) -> int | None:
    return rss_parts(pid).get("VmRSS")


class Watchers:
    """The page, /api/status and /metrics scraped every SCRAPE_EVERY seconds and the daemon's
    RSS sampled every SAMPLE_EVERY, on threads of their own."""

    PATHS = ("/", "/api/status", "/metrics")

    def __init__(self, daemon: Daemon, web: str) -> None:
        self.daemon, self.web = daemon, web
        self.samples: list[tuple[float, int]] = []
        self.ok = dict.fromkeys(self.PATHS, 0)
        self.down = 0  # scrapes while the daemon was stopped or still starting
        self.problems: list[str] = []
        self.promtool = shutil.which("promtool")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample, daemon=True),
                         threading.Thread(target=self._scrape, daemon=True)]

    def __enter__(self) -> Watchers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            pid = self.daemon.pid
            if pid is None or time.monotonic() - self.daemon.started_at < WARM_UP:
                continue
            rss = rss_of(pid)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))

    def _scrape(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY):
            for path in self.PATHS:
                self._one(path)

    def _one(self, path: str) -> None:
        pid, stops = self.daemon.pid, self.daemon.stops
        try:
            with urllib.request.urlopen(self.web + path, timeout=30) as answer:
                body = answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            self.problems.append(f"GET {path}: HTTP {exc.code}")
            return
        except OSError as exc:
            # refused while the daemon is stopped, stopping or starting, or cut by a kill: not
            # the station's fault; a daemon up for long, not told to stop, that does not
            # answer is
            if pid is None or pid != self.daemon.pid or stops != self.daemon.stops or \
                    self.daemon.stopping or time.monotonic() - self.daemon.started_at < 60:
                self.down += 1
            else:
                self.problems.append(f"GET {path}: {exc}")
            return
        if status != 200:
            self.problems.append(f"GET {path}: HTTP {status}")
        elif path == "/metrics" and (problem := self._metrics_problem(body.decode())):
            self.problems.append(f"GET /metrics: {problem}")
        else:
            self.ok[path] += 1

    def _metrics_problem(self, text: str) -> str:
        if self.promtool:
            proc = subprocess.run([self.promtool, "check", "metrics"], input=text,
                                  capture_output=True, text=True, timeout=60, check=False)
            return "" if proc.returncode == 0 else f"promtool: {proc.stderr.strip()[:300]}"
        from prometheus_client.parser import text_string_to_metric_families

        try:
            list(text_string_to_metric_families(text))
        except ValueError as exc:
            return f"does not parse: {exc}"
        return ""

    def proof(self) -> Proof:
        problems = list(self.problems)
        problems += [f"GET {p}: never answered" for p, n in self.ok.items() if n == 0]
        return _proof("page, /api/status and /metrics answered", problems,
                      ", ".join(f"{p} {n}x 200" for p, n in self.ok.items())
                      + f"; /metrics {'checked by promtool' if self.promtool else 'parsed'}; "
                      f"{self.down} tries while the daemon was down or starting")


# -- recorders ----------------------------------------------------------------------------------


HOSTILE_NAMES = (
    b"\xff\xfe clip \x1b[31m.mp4",  # not UTF-8, a terminal escape
    b"..mp4", b"...MP4", b" .mp4", b"a\nb.mp4", b"back\\slash.mp4",
    b"\xe4\xb8\xad\xe6\x96\x87 \xe6\xa1\x88.mp4",
    b"L" * 240 + b".mp4",
)


@dataclass(kw_only=True)
class Recorder:
    serial: str
    kind: str  # "good", "hostile", "pulled"
    folder: Path  # where it is now (docked, pulled out, or put away)
    docked_at: float = 0.0
    after_session: int = 0  # its sessions with a greater id are those of this dock
    pulls: int = 0
    pulled_running: int = 0


class Feeder:
    """Makes recorders with real clips, docks them under the watched root, pulls some out
    mid-copy and docks them again, and puts each away once its dock is served."""

    def __init__(self, home: Path, work: Path, rng: random.Random) -> None:
        self.home, self.rng = home, rng
        self.root = home / "docks"
        self.away = work / "recorders"  # served (or pulled) recorders, kept for the proof
        self.away.mkdir(parents=True, exist_ok=True)
        self.seed_clip = work / "seed.mp4"
        self.made = 0
        self.clip_no = 0
        self.recorded_base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        self.recorders: list[Recorder] = []
        self.docked: list[Recorder] = []
        self.pulled: list[tuple[float, Recorder]] = []
        self.refusals_seen: set[int] = set()  # copies refused for room, their recorder redocked

    def serial(self) -> str:
        self.made += 1
        return f"SOAK-{self.made:04d}"

    def _clip(self, path: Path) -> None:
        from ingestd.simulate import make_clip

        self.clip_no += 1  # a second apart: every clip's bytes differ (its creation_time)
        recorded = self.recorded_base + timedelta(seconds=self.clip_no)
        make_clip(path, seconds=1, size="320x240", rate=15, recorded=recorded)

    def build(self, kind: str) -> Recorder:
        serial = self.serial()
        folder = self.away / f".{serial}.staging"
        media = folder / "DCIM" / "100MEDIA"
        media.mkdir(parents=True)
        (folder / "SYSTEM").mkdir()
        (folder / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={serial}\n", encoding="ascii")
        for n in range(self.rng.randint(1, 3)):
            self._clip(media / f"{serial}_{n:04d}.MP4")
        if kind == "hostile":
            self._hostile(media)
        if kind == "pulled":
            for n in range(3):  # large enough that a pull lands while one is copied
                with (media / f"BIG{n}.MP4").open("wb") as fh:
                    fh.write(os.urandom(8 * 2**20))
        return Recorder(serial=serial, kind=kind, folder=folder)

    def _hostile(self, media: Path) -> None:
        raw = os.fsencode(media)
        names = self.rng.sample(HOSTILE_NAMES, 3)
        for name in names:
            self._clip(Path(os.fsdecode(os.path.join(raw, name))))
        damaged = media / "DAMAGED.MP4"
        self._clip(damaged)
        data = damaged.read_bytes()
        damaged.write_bytes(data[: len(data) // 2])
        (media / "EMPTY.MP4").touch()
        os.symlink("/etc/hostname", media / "LINK.MP4")
        os.mkfifo(media / "PIPE.MP4")

    def register(self, recorders: Sequence[Recorder]) -> None:
        from ingestd import config as config_mod
        from ingestd.domain.models import Recorder as Registered
        from ingestd.station import Station
        from ingestd.usecases import registry

        station = Station.open(config_mod.load(self.home / config_mod.CONFIG_NAME))
        try:
            for rec in recorders:
                registry.register(station, Registered(serial=rec.serial, officer="Soak Officer",
                                                      officer_id="S-1", unit="soak"),
                                  actor="soak", only_if_new=True)
        finally:
            station.close()

    def _last_session(self, serial: str) -> tuple[int, str]:
        with contextlib.closing(_catalog(self.home)) as con:
            row = con.execute("SELECT id, state FROM dock_sessions WHERE serial = ? "
                              "ORDER BY id DESC LIMIT 1", (serial,)).fetchone()
        return (row["id"], row["state"]) if row else (0, "")

    def dock(self, rec: Recorder) -> None:
        rec.after_session = self._last_session(rec.serial)[0]
        target = self.root / rec.serial
        rec.folder.rename(target)  # appears whole, as a plugged-in recorder does
        rec.folder = target
        rec.docked_at = time.monotonic()
        self.docked.append(rec)
        if rec not in self.recorders:
            self.recorders.append(rec)

    def _put_away(self, rec: Recorder) -> None:
        target = self.away / rec.serial
        rec.folder.rename(target)
        rec.folder = target
        self.docked.remove(rec)

    def tend(self) -> None:
        """Put away what was served; pull a `pulled` recorder out while its dock runs (once);
        dock again what was pulled out a while ago."""
        now = time.monotonic()
        for rec in list(self.docked):
            if rec.kind == "pulled" and rec.pulls == 0:
                if now - rec.docked_at > 1:  # settled by now: its dock is about to start
                    self.pull(rec)
                continue
            last, state = self._last_session(rec.serial)
            if last > rec.after_session and state != "running" and now - rec.docked_at > 3:
                self._put_away(rec)
        for due, rec in list(self.pulled):
            if due <= now:
                self.pulled.remove((due, rec))
                self.dock(rec)

    def pull(self, rec: Recorder, wait: float = 10.0) -> None:
        """Out of the watched root (its paths vanish) as soon as its dock runs, at a random
        moment of the copy; docked again 5 to 20 s later."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            last, state = self._last_session(rec.serial)
            if last > rec.after_session:
                if state == "running":
                    time.sleep(self.rng.uniform(0, 0.2))
                    rec.pulled_running += self._running(last)
                break
            time.sleep(0.02)
        self._put_away(rec)
        rec.pulls += 1
        self.pulled.append((time.monotonic() + self.rng.uniform(5, 20), rec))

    def _running(self, session: int) -> int:
        with contextlib.closing(_catalog(self.home)) as con:
            row = con.execute("SELECT state FROM dock_sessions WHERE id = ?",
                              (session,)).fetchone()
        return 1 if row is not None and row["state"] == "running" else 0

    def redock_refused(self, *, served_only: bool = False) -> int:
        """Dock again every recorder a full store refused a copy of since the last time (out
        and in, or in again if it was put away): once the store has room, as an officer
        would. ``served_only``: only those whose dock has ended (a copy refused just as the
        store was freed is found on a later call)."""
        with contextlib.closing(_catalog(self.home)) as con:
            refusals = con.execute(
                "SELECT id, serial FROM acquisitions WHERE state = 'failed' "
                "AND error LIKE '%is full%'").fetchall()
        new: dict[str, list[int]] = {}
        for row in refusals:
            if row["id"] not in self.refusals_seen:
                new.setdefault(row["serial"], []).append(row["id"])
        pending = {rec.serial for _, rec in self.pulled}
        count = 0
        for rec in self.recorders:
            if rec.serial not in new:
                continue
            if rec.serial in pending:  # docked again at its own time
                self.refusals_seen.update(new[rec.serial])
                continue
            if rec in self.docked:
                if served_only:
                    continue
                self._put_away(rec)
            self.refusals_seen.update(new[rec.serial])
            self.dock(rec)
            count += 1
        return count

    def facts(self) -> list[SourceFact]:
        out: list[SourceFact] = []
        for rec in self.recorders:
            out += recorder_facts(rec.folder, rec.serial)
        return out


# -- the run ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Plan:
    """When things happen, drawn from the seed before the run: seconds from its start."""

    feed: float
    drain: float
    window: float  # the memory windows at the start and at the end of the run
    dock_every: float
    kills: list[tuple[float, str]]
    s3_outages: list[tuple[float, float]]
    full_phases: list[tuple[float, float]]


def make_plan(minutes: float, rng: random.Random) -> Plan:
    total = minutes * 60
    drain = min(300.0, max(45.0, total * 0.1))
    feed = max(30.0, total - drain)
    window = min(300.0, total / 3)
    # No kill in the memory windows: the first is the first daemon's first minutes, the last
    # the last daemon's last (it has run a window at least), on a catalog grown over the run.
    first, last = window + WARM_UP, max(window + WARM_UP + 1, feed - window)
    kills = sorted((rng.uniform(first, last), rng.choice(["SIGTERM", "SIGKILL"]))
                   for _ in range(max(2, int(feed / 60))))
    outages = []
    for _ in range(max(1, int(feed / 300))):
        start = rng.uniform(10, feed * 0.8)
        outages.append((start, min(feed - 5, start + rng.uniform(10, 30))))
    fulls = []
    for _ in range(max(1, int(feed / 600))):
        start = rng.uniform(15, feed * 0.7)
        fulls.append((start, start + rng.uniform(10, 20)))
    return Plan(feed=feed, drain=drain, window=window, dock_every=rng.uniform(6, 9), kills=kills,
                s3_outages=sorted(outages), full_phases=sorted(fulls))


def config_text(store: Path, web_port: int, s3: S3Server, credentials: Path) -> str:
    return f"""station = "station-01"
store = "{store}"

[docks]
watch_root = "docks"
settle = "1s"

[scheduler]
window_check = "1m"
replication = "10s"
checkpoint = "1m"
audit_sample = 0
# moto lets a COMPLIANCE date be shortened: the WORM check rightly fails it (test_worm_check)
worm_check = "0s"

[alerting]
interval = "10s"

[web]
listen = "127.0.0.1:{web_port}"
refresh = "30s"

[[targets]]
name = "{TARGET}"
type = "s3"
bucket = "{BUCKET}"
endpoint_url = "{s3.url}"
prefix = "{PREFIX}"
object_lock = true
credentials_file = "{credentials}"
max_attempts = 2
"""


@dataclass(kw_only=True)
class Events:
    docks: dict[str, int] = field(default_factory=lambda: {"good": 0, "hostile": 0,
                                                           "pulled": 0})
    full_phases: int = 0
    timeline: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.plan = make_plan(args.minutes, self.rng)
        self.work: Path = args.work
        self.home = self.work / "home"
        self.events = Events()
        self.t0 = 0.0
        self.rss_at_end: dict[str, int] = {}

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f} s  {text}"
        self.events.timeline.append(line)
        say(line)

    def run(self) -> dict[str, Any]:
        clear_work(self.work)
        self.work.mkdir(parents=True)
        (self.work / WORK_MARK).touch()
        load = os.getloadavg()[0]
        size = 256 * 2**20 + int(self.args.minutes * 40 * 2**20)
        with SmallStore(self.work, size) as small:
            s3 = S3Server()
            s3.start()
            try:
                report = self._run(small, s3)
            finally:
                s3.stop()
        report["machine"] = machine_info(load)
        return report

    def _init(self, small: SmallStore, s3: S3Server) -> tuple[Path, int]:
        credentials = self.work / "s3-credentials"
        s3.make_bucket(credentials)
        store = small.mount / "store"
        port = free_port()
        self.home.mkdir()
        (self.home / "ingestd.toml").write_text(config_text(store, port, s3, credentials),
                                                encoding="utf-8")
        proc = run_cli(self.home, "init", "--json")
        if proc.returncode != 0:
            raise SoakError(f"ingestd init exited {proc.returncode}: {proc.stderr[-800:]}")
        return store, port

    def _run(self, small: SmallStore, s3: S3Server) -> dict[str, Any]:
        store, port = self._init(small, s3)
        feeder = Feeder(self.home, self.work, self.rng)
        daemon = Daemon(self.home, self.work / "daemon.log")
        daemon.start()
        self.t0 = time.monotonic()
        with Watchers(daemon, f"http://127.0.0.1:{port}") as watchers:
            try:
                self._feed(feeder, daemon, s3, small)
                self._drain(feeder, daemon)
                self.rss_at_end = rss_parts(daemon.pid) if daemon.pid else {}
            finally:
                if daemon.pid is not None:
                    daemon.stop(signal.SIGTERM)
        say("proving")
        facts = feeder.facts()
        window = self.plan.window
        proofs = [
            prove_files(self.home, store, facts),
            prove_ledger(self.home),
            prove_replicas(self.home),
            prove_no_temp(self.home, store),
            prove_alerts(self.home),
            prove_memory(watchers.samples, window),
            watchers.proof(),
            _proof("the daemon stopped and started as told", daemon.problems,
                   f"{daemon.starts} starts, {daemon.kills['SIGTERM']} SIGTERM, "
                   f"{daemon.kills['SIGKILL']} SIGKILL ({daemon.unready} SIGTERM before "
                   "Python could catch it)"),
        ]
        if small.fillable:
            proofs.append(prove_full(self.home, facts, self.events.full_phases))
        return self._report(proofs, feeder, daemon, s3, watchers)

    def _feed(self, feeder: Feeder, daemon: Daemon, s3: S3Server, small: SmallStore) -> None:
        plan = self.plan
        kills, outages = list(plan.kills), list(plan.s3_outages)
        fulls = list(plan.full_phases) if small.fillable else []
        next_dock, next_redock = 2.0, 0.0
        full_until: float | None = None
        while (now := time.monotonic() - self.t0) < plan.feed:
            daemon.check_alive()
            if now >= next_dock:
                self._dock_one(feeder, full=full_until is not None)
                next_dock = now + plan.dock_every * self.rng.uniform(0.5, 1.5)
            if kills and now >= kills[0][0]:
                _, name = kills.pop(0)
                code = daemon.stop(signal.Signals[name])
                self.note(f"{name} to the daemon (exit {code}); started again")
                daemon.start()
            if outages and now >= outages[0][0] and s3.up:
                s3.stop()
                self.note("S3 server stopped")
            if outages and now >= outages[0][1] and not s3.up:
                outages.pop(0)
                s3.start()
                self.note("S3 server started again")
            if fulls and full_until is None and now >= fulls[0][0]:
                full_until = fulls.pop(0)[1]
                self.note(f"store filled: {fmt_bytes(small.fill())} of ballast")
                self.events.full_phases += 1
                self._dock_one(feeder, full=True)
            if full_until is not None and now >= full_until:
                full_until = None
                small.free_up()
                self.note(f"store freed; {feeder.redock_refused()} recorders refused for "
                          "room docked again")
            elif full_until is None and self.events.full_phases and now >= next_redock:
                # a copy refused as the store was freed, found once its dock has ended
                if redocked := feeder.redock_refused(served_only=True):
                    self.note(f"{redocked} more recorders refused for room docked again")
                next_redock = now + 2.0
            feeder.tend()
            time.sleep(0.2)
        if not s3.up:
            s3.start()
            self.note("S3 server started again")
        if full_until is not None:
            small.free_up()
            feeder.redock_refused()

    def _dock_one(self, feeder: Feeder, *, full: bool) -> None:
        # one of each kind first, so that even a short run has them all; then at random
        first = ("good", "hostile", "pulled")
        kind = first[feeder.made] if feeder.made < len(first) else \
            self.rng.choices(first, weights=[6, 2, 2])[0]
        if full:
            kind = "good"
        rec = feeder.build(kind)
        feeder.register([rec])
        feeder.dock(rec)
        self.events.docks[kind] += 1

    def _caught_up(self) -> bool:
        with contextlib.closing(_catalog(self.home)) as con:
            waiting = con.execute(
                "SELECT count(*) FROM items WHERE sha256 NOT IN (SELECT item FROM replicas "
                "WHERE target = ? AND state = 'verified')", (TARGET,)).fetchone()[0]
            running = con.execute("SELECT count(*) FROM dock_sessions WHERE state = 'running'"
                                  ).fetchone()[0]
        return waiting == 0 and running == 0

    def _drain(self, feeder: Feeder, daemon: Daemon) -> None:
        """Docks served, pulled recorders docked again, replication caught up and the alerts
        that should resolve resolved: or the drain time is up."""
        self.note("feed over: draining")
        deadline = time.monotonic() + self.plan.drain
        for _, rec in list(feeder.pulled):
            feeder.dock(rec)
        feeder.pulled.clear()
        waiting = "docks"
        while time.monotonic() < deadline:
            daemon.check_alive()
            feeder.tend()
            if redocked := feeder.redock_refused(served_only=True):
                self.note(f"{redocked} more recorders refused for room docked again")
            if feeder.docked:
                waiting = f"docks of {', '.join(r.serial for r in feeder.docked)}"
            elif not self._caught_up():
                waiting = "replication"
            elif left := [a["alert"] for a in firing_alerts(self.home)
                          if should_have_resolved(a)]:
                waiting = f"alerts {', '.join(left)}"
            else:
                self.note("drained: docks served, replication caught up, alerts resolved")
                return
            time.sleep(2.0)
        self.note(f"drain time ({self.plan.drain:.0f} s) up, still waiting for {waiting}")

    def _report(self, proofs: list[Proof], feeder: Feeder, daemon: Daemon, s3: S3Server,
                watchers: Watchers) -> dict[str, Any]:
        with contextlib.closing(_catalog(self.home)) as con:
            items = con.execute("SELECT count(*) FROM items").fetchone()[0]
            sessions = {r[0]: r[1] for r in con.execute(
                "SELECT state, count(*) FROM dock_sessions GROUP BY state")}
        pulled = [r for r in feeder.recorders if r.kind == "pulled"]
        rss = [r for _, r in watchers.samples]
        return {
            "ok": all(p.held for p in proofs),
            "minutes": self.args.minutes, "seed": self.args.seed,
            "proofs": [asdict(p) for p in proofs],
            "run": {
                "recorders": len(feeder.recorders), "docks": self.events.docks,
                "pulled_while_running": sum(r.pulled_running for r in pulled),
                "items": items, "sessions": sessions,
                "daemon_starts": daemon.starts, "signals": daemon.kills,
                "s3_stops": s3.stops, "full_phases": self.events.full_phases,
                "rss_samples": len(rss), "rss_peak": max(rss) if rss else None,
                "rss_at_end": self.rss_at_end,
                "scrapes_ok": watchers.ok,
            },
            "rss": [[round(t - self.t0, 1), r] for t, r in watchers.samples],
            "timeline": self.events.timeline,
            "daemon_errors": log_errors(daemon.log),
            "work": str(self.work),
        }


def clear_work(work: Path) -> None:
    """Remove an earlier run's work folder; anything else of that name is refused."""
    if not work.exists():
        return
    if not (work / WORK_MARK).exists() and any(work.iterdir()):
        raise SoakError(f"{work} is not empty and not a soak work folder: choose another --work")
    with contextlib.suppress(OSError):  # an earlier run stopped hard: its store is mounted
        subprocess.run(["umount", str(work / "storefs")], capture_output=True, check=False)
    shutil.rmtree(work)


def log_errors(log: Path) -> list[str]:
    """The daemon's ERROR and CRITICAL lines and the first line of each traceback."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line[:300] for line in lines
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]


def render(report: dict[str, Any]) -> str:
    run = report["run"]
    lines = [f"soak: {report['minutes']} minutes, seed {report['seed']}: "
             f"{run['recorders']} recorders ({run['docks']['good']} good, "
             f"{run['docks']['hostile']} hostile, {run['docks']['pulled']} pulled out, "
             f"{run['pulled_while_running']} of them while their dock ran), {run['items']} "
             f"items; daemon started {run['daemon_starts']} times "
             f"({run['signals']['SIGTERM']} SIGTERM, {run['signals']['SIGKILL']} SIGKILL), "
             f"S3 server stopped {run['s3_stops']} times, store full {run['full_phases']} "
             "times", ""]
    rows = [[p["name"], "held" if p["held"] else "FAILED", p["detail"]]
            for p in report["proofs"]]
    lines.append(table(["proof", "", "detail"], rows))
    failures = [p for p in report["proofs"] if not p["held"]]
    if failures:
        lines.append("")
        for proof in failures:
            lines += [f"FAILED: {proof['name']}: {problem}" for problem in proof["problems"]]
    errors = report["daemon_errors"]
    if errors:
        lines += ["", f"the daemon logged {len(errors)} errors (expected ones among them: the "
                  "S3 server down, the store full); the first:"]
        lines += [f"  {line}" for line in errors[:10]]
    lines += ["", machine_line(report["machine"]),
              "PASS: every proof held" if report["ok"] else "FAIL"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0,
                   help="how long the run lasts, the drain included (default 30; at least 1)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the plan: when the daemon is stopped or killed, the S3 "
                        "server stopped, the store filled, and which recorders dock (the "
                        "machine's timing still varies; default: drawn, and printed)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK,
                   help=f"work folder, emptied first (default {DEFAULT_WORK})")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    args = p.parse_args(argv)
    if args.minutes < 1:
        p.error("--minutes must be at least 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    args.work = args.work.resolve()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop what was started
    say(f"seed {args.seed}, work folder {args.work}")
    try:
        report = Soak(args).run()
    except SoakError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep and (args.work / WORK_MARK).exists():
            shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
