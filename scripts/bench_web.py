"""`scripts/bench web`: how long a scrape of `/metrics` takes on a catalog of a million items
while an ingest runs, by `render()` in-process and over HTTP from a real uvicorn; the status
page and `/api/status` too when this ingestd has them (`ingestd.web.app`).

The catalog is built once (cached) by direct SQL inserts into a SQLite home, through the
catalog's triggers as any writer goes: items over a year, most evicted after a verified copy
on a directory target, the newest still local and some of those waiting for their copy, one
in ten flagged. Beside the scrape it measures what the triggers cost a write (the same rows
inserted into a catalog with and without them) and what the status model takes in-process on
the same catalog. The app keeps a status read for a second, so back-to-back requests of the
page and the API mostly time that copy: ``--uncached`` has them read it at every request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    DEFAULT_WORK,
    REPO,
    BenchError,
    bench_main,
    cached_build,
    code_state,
    concurrency_note,
    machine_info,
    machine_line,
    other_benchmarks,
    say,
    table,
)

from ingestd.domain.canonical import format_time  # noqa: E402

SERIAL = "BWC-BENCH"
TARGET = "nas"
BATCH = 50_000
T0 = datetime(2025, 12, 1, tzinfo=UTC)
ITEM_COLUMNS = (
    "sha256, size, stored_at, station, recorder, officer, original_name, recorded_start, "
    "recorded_end, time_source, duration, media, ingest_deadline, label_deadline, "
    "replication_deadline, retention_class, retain_until, hold, local_present, ledger_seq")
INSERT_ITEM = f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join('?' * 20)})"
INSERT_REPLICA = (
    "INSERT INTO replicas (item, target, state, key, size, updated_at, verified_at, attempts, "
    "last_error, hold, location, rewrite, bad_versions, proven_at, ledger_seq) "
    "VALUES (?, ?, 'verified', ?, ?, ?, ?, 1, '', 0, ?, 0, '', ?, ?)")
INSERT_FLAG = ("INSERT INTO flags (item, flag, set_at, detail, ledger_seq) "
               "VALUES (?, 'late_ingest', ?, 'stored late', ?)")


def _config(nas: Path) -> str:
    return (f'station = "station-01"\n\n[[targets]]\nname = "{TARGET}"\ntype = "directory"\n'
            f'path = "{nas}"\nsame_filesystem_ok = true\n')


def item_rows(start: int, count: int, total: int, local: int, waiting: int,
              location: str) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...] | None,
                                               tuple[Any, ...] | None]]:
    """(item, replica or None, flag or None) for items ``start`` .. ``start + count``: the
    last ``local`` of ``total`` are in the store, the last ``waiting`` have no copy yet."""
    step = timedelta(days=365) / total
    for i in range(start, start + count):
        sha = hashlib.sha256(b"bench web item %d" % i).hexdigest()
        recorded = T0 + step * i
        stored = format_time(recorded + timedelta(hours=2))
        end = format_time(recorded + timedelta(minutes=5))
        is_local = i >= total - local
        item = (sha, 50_000_000 + i % 1000, stored, "station-01", f"BWC-{i % 250:04d}",
                f"Officer {i % 250}", f"DCIM/100MEDIA/{i:08d}.MP4", format_time(recorded),
                end, "media", 300.0, "{}", end, end, end, "routine", None, 0,
                1 if is_local else 0, i + 1)
        replica = None if i >= total - waiting else (
            sha, TARGET, f"sha256/{sha}", item[1], stored, stored, location, stored, i + 1)
        flag = (sha, stored, i + 1) if i % 10 == 0 else None
        yield item, replica, flag


def insert_items(con: sqlite3.Connection, start: int, count: int, *, total: int, local: int,
                 waiting: int, location: str) -> None:
    items, replicas, flags = [], [], []
    for item, replica, flag in item_rows(start, count, total, local, waiting, location):
        items.append(item)
        if replica is not None:
            replicas.append(replica)
        if flag is not None:
            flags.append(flag)
    con.executemany(INSERT_ITEM, items)
    con.executemany(INSERT_REPLICA, replicas)
    con.executemany(INSERT_FLAG, flags)


def build_home(folder: Path, total: int, local: int, waiting: int) -> None:
    from ingestd.domain.models import Recorder
    from ingestd.usecases import registry
    from ingestd.usecases.home import init_home

    nas = folder / "nas"
    nas.mkdir()
    home = folder / "home"
    home.mkdir()
    (home / "ingestd.toml").write_text(_config(nas), encoding="utf-8")
    station, _ = init_home(home)
    registry.register(station, Recorder(serial=SERIAL, officer="Li Na", officer_id="PS-1"),
                      actor="bench")
    station.close()
    start = time.perf_counter()
    with closing(sqlite3.connect(home / "catalog.sqlite")) as con:
        for first in range(0, total, BATCH):
            insert_items(con, first, min(BATCH, total - first), total=total, local=local,
                         waiting=waiting, location=str(nas))
            con.commit()
            made = min(total, first + BATCH)
            if made % 200_000 == 0 or made == total:
                say(f"  {made} items ({made / (time.perf_counter() - start):.0f} a second)")


# -- what the triggers cost a write ----------------------------------------------------------


def trigger_cost(work: Path, count: int) -> dict[str, float]:
    """Seconds to insert ``count`` items (with a copy each, one in ten flagged) into a fresh
    catalog at the head, with its triggers and with them dropped."""
    from ingestd.catalog.db import Catalog

    out: dict[str, float] = {}
    for label in ("with_triggers", "without_triggers"):
        path = work / f"triggers-{label}.sqlite"
        for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            side.unlink(missing_ok=True)
        catalog = Catalog(f"sqlite:///{path}")
        catalog.upgrade()
        catalog.dispose()
        with closing(sqlite3.connect(path)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            if label == "without_triggers":
                for (name,) in con.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                    con.execute(f"DROP TRIGGER {name}")
            start = time.perf_counter()
            for first in range(0, count, 10_000):
                insert_items(con, first, min(10_000, count - first), total=count, local=count,
                             waiting=0, location="/nas")
                con.commit()
            out[label] = time.perf_counter() - start
        path.unlink()
    return out


# -- an ingest running meanwhile --------------------------------------------------------------


class IngestLoad:
    """``ingestd ingest`` of a recorder of fresh files, again and again, in a subprocess, until
    stopped: the catalog's writer, the store's fsyncs and the CPU busy while scrapes are
    timed."""

    def __init__(self, home: Path, folder: Path, *, files: int, size: int) -> None:
        self.home, self.folder, self.files, self.size = home, folder, files, size
        self.runs = 0
        self.items = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = time.monotonic()

    def _fill(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        media = self.folder / "DCIM" / "100MEDIA"
        media.mkdir(parents=True)
        for n in range(self.files):
            (media / f"R{self.runs:04d}{n:04d}.MP4").write_bytes(os.urandom(self.size))

    def _loop(self) -> None:
        env = {**os.environ, "INGESTD_ACTOR": "bench", "PYTHONPATH": str(REPO)}
        code = "import sys; from ingestd.cli import main; sys.argv[0] = 'ingestd'; main()"
        while not self._stop.is_set():
            self._fill()
            self._started = time.monotonic()
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, "--home", str(self.home), "ingest",
                 str(self.folder), "--serial", SERIAL], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
            _, err = self._proc.communicate()
            if self._proc.returncode not in (0, -15):
                self.errors.append(err.decode("utf-8", "replace")[-500:])
                return
            if self._proc.returncode == 0:
                self.runs += 1
                self.items += self.files

    def __enter__(self) -> IngestLoad:
        self._thread.start()
        deadline = time.monotonic() + 120
        while self._proc is None or time.monotonic() < self._started + 3:
            if self.errors or time.monotonic() > deadline:
                raise BenchError("the ingest meanwhile did not start: " + "".join(self.errors))
            time.sleep(0.1)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        self._thread.join(timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)


# -- timing -------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return {"median": statistics.median(seconds), "p99": percentile(seconds, 0.99),
            "max": max(seconds), "calls": calls}


def web_app(station: Any) -> tuple[Any, list[str], str]:
    """The app to serve: the station's own (``ingestd.web.app``) with the metrics router, and
    the paths to time; else a minimal one with the router alone."""
    from fastapi import FastAPI

    from ingestd.web import metrics

    try:
        from ingestd.web import app as web

        app = web.create_app(station, station.settings.web)
    except (ImportError, AttributeError, TypeError) as exc:
        bare = FastAPI()
        bare.state.station = station
        bare.include_router(metrics.router)
        return bare, ["/metrics"], f"ingestd.web.app not usable here ({exc}): /metrics alone"
    if not any(getattr(r, "path", None) == "/metrics" for r in app.routes):
        app.include_router(metrics.router)
    return app, ["/metrics", "/api/status", "/"], "the station's app (ingestd.web.app)"


def serve(home: str, port: int, uncached: bool = False) -> None:
    """The server process: the station's app in uvicorn on 127.0.0.1:``port``; its first line
    of output says what it serves. ``uncached``: the page and the API read the status anew at
    every request (the app reads it at most once a second otherwise)."""
    import uvicorn

    from ingestd import config as config_mod
    from ingestd.station import Station

    station = Station.open(config_mod.load(Path(home) / config_mod.CONFIG_NAME))
    app, paths, which = web_app(station)
    reader = getattr(app.state, "status", None)
    if uncached and reader is not None:
        reader.ttl = 0.0
        which += ", the status read at every request"
    print(json.dumps({"paths": paths, "app": which}), flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


_SERVER = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from bench_web import serve
serve(sys.argv[3], int(sys.argv[4]), sys.argv[5] == "uncached")
"""


@contextmanager
def server_process(home: Path, *, uncached: bool = False
                   ) -> Iterator[tuple[str, list[str], str]]:
    """The station served by uvicorn in a process of its own, as the daemon serves it (a
    client in the server's own process would time its own thread switches): (base URL,
    paths, what serves them)."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(Path(__file__).resolve().parent), str(REPO),
         str(home), str(port), "uncached" if uncached else "cached"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            raise BenchError("the server did not start: " + (proc.stderr.read()
                                                              if proc.stderr else "")[-800:])
        said = json.loads(first)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/metrics", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the server did not answer") from None
                time.sleep(0.1)
        yield base, said["paths"], said["app"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ingest_runs(home: Path, folder: Path, *, files: int, size: int, runs: int) -> list[float]:
    """The seconds of each of ``runs`` ingests of a recorder of fresh files, one after the
    other."""
    env = {**os.environ, "INGESTD_ACTOR": "bench", "PYTHONPATH": str(REPO)}
    code = "import sys; from ingestd.cli import main; sys.argv[0] = 'ingestd'; main()"
    took: list[float] = []
    for run in range(runs):
        shutil.rmtree(folder, ignore_errors=True)
        media = folder / "DCIM" / "100MEDIA"
        media.mkdir(parents=True)
        for n in range(files):
            (media / f"S{time.time_ns()}{run:03d}{n:04d}.MP4").write_bytes(os.urandom(size))
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code, "--home", str(home), "ingest",
                               str(folder), "--serial", SERIAL], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        took.append(time.monotonic() - start)
        if done.returncode != 0:
            raise BenchError("an ingest failed: " + done.stderr.decode("utf-8", "replace")[-500:])
    shutil.rmtree(folder, ignore_errors=True)
    return took


def scraped_ingest(home: Path, folder: Path, *, files: int, size: int, runs: int,
                   every: float = 5.0) -> dict[str, Any]:
    """Ingest alone, then while a monitor scrapes `/metrics`, `/api/status` and `/` every
    ``every`` seconds (as Prometheus and a browser would), runs taken in turns."""
    import httpx

    alone: list[float] = []
    scraped: list[float] = []
    scrapes = 0
    with server_process(home) as (base, paths, _which):
        stop = threading.Event()
        active = threading.Event()

        def monitor() -> None:
            nonlocal scrapes
            with httpx.Client(base_url=base, timeout=600) as client:
                while not stop.wait(every):
                    if active.is_set():
                        for path in paths:
                            client.get(path)
                        scrapes += 1

        thread = threading.Thread(target=monitor, daemon=True)
        thread.start()
        try:
            for _ in range(runs):
                alone += ingest_runs(home, folder, files=files, size=size, runs=1)
                active.set()
                scraped += ingest_runs(home, folder, files=files, size=size, runs=1)
                active.clear()
        finally:
            stop.set()
            thread.join(timeout=60)
    return {"alone": statistics.median(alone), "scraped": statistics.median(scraped),
            "runs": runs, "scrapes": scrapes, "every": every}


def measure(home: Path, calls: int, load: IngestLoad | None, *, status_calls: int = 1,
            uncached: bool = False) -> dict[str, Any]:
    import httpx

    from ingestd import config as config_mod
    from ingestd.station import Station
    from ingestd.usecases.status import status
    from ingestd.web.metrics import render

    station = Station.open(config_mod.load(home / config_mod.CONFIG_NAME))

    def ingested() -> int:
        with station.catalog.read() as tx:
            return sum(t.count for t in tx.tallies(station=station.name) if t.name == "ingested")

    first = ingested()
    try:
        render(station)  # warm: the first connection, the page cache
        out: dict[str, Any] = {"size": len(render(station))}
        say(f"timing render() x{calls}")
        out["render"] = timed(lambda: render(station), calls)
        out["http"] = {}
        with server_process(home, uncached=uncached) as (base, paths, which), httpx.Client(
                base_url=base, timeout=600) as client:
            out["app"] = which
            headers = {}
            token = os.environ.get("INGESTD_WEB_TOKEN")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            for path in paths:
                answer = client.get(path, headers=headers)
                if answer.status_code != 200:
                    out["http"][path] = {"error": f"HTTP {answer.status_code}"}
                    continue
                say(f"timing GET {path} x{calls}")
                out["http"][path] = timed(lambda p=path: client.get(p, headers=headers), calls)
        out["ingested_meanwhile"] = ingested() - first
        say(f"timing the status model x{status_calls}")
        out["status_rows"] = timed(lambda: status(station), status_calls)
    finally:
        station.close()
    if load is not None:
        out["ingest"] = {"runs": load.runs, "items": load.items, "errors": load.errors}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    seen = set(other_benchmarks())
    work: Path = args.work
    name = f"web-{args.items}-{args.local}-{args.waiting}-v1"
    folder = cached_build(work / "data-web", name, 1500 * args.items,
                          lambda f: build_home(f, args.items, args.local, args.waiting),
                          lambda f: (f / "home" / "catalog.sqlite").is_file())
    home = folder / "home"
    scratch = work / "out-web"
    scratch.mkdir(parents=True, exist_ok=True)
    say(f"what the triggers cost: {args.trigger_rows} items written with and without them")
    cost = trigger_cost(scratch, args.trigger_rows)
    seen |= set(other_benchmarks())
    say("an ingest running while scrapes are timed")
    with IngestLoad(home, scratch / "recorder", files=args.ingest_files,
                    size=args.ingest_kib * 1024) as load:
        busy = measure(home, args.calls, load, status_calls=args.status_calls,
                       uncached=args.uncached)
    if load.errors:
        raise BenchError("the ingest meanwhile failed: " + load.errors[0])
    say(f"an ingest alone and while scraped every 5 s, {args.scraped_runs} runs each, in turns")
    busy["scraped_ingest"] = scraped_ingest(home, scratch / "recorder", files=args.ingest_files,
                                            size=args.ingest_kib * 1024,
                                            runs=args.scraped_runs)
    seen |= set(other_benchmarks())
    return {"benchmark": "web", "code": code_state(), "machine": machine_info(load_start),
            "others": concurrency_note(seen), "items": args.items, "local": args.local,
            "waiting": args.waiting, "ingest_files": args.ingest_files, "triggers": cost,
            "trigger_rows": args.trigger_rows, "busy": busy}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def render_report(report: dict[str, Any]) -> str:
    busy = report["busy"]
    rows = [["render()", _ms(busy["render"]["median"]), _ms(busy["render"]["p99"]),
             _ms(busy["render"]["max"]), str(busy["render"]["calls"])]]
    for path, t in busy["http"].items():
        if "error" in t:
            rows.append([f"GET {path}", t["error"], "", "", ""])
        else:
            rows.append([f"GET {path}", _ms(t["median"]), _ms(t["p99"]), _ms(t["max"]),
                         str(t["calls"])])
    rows.append(["status model, in-process", _ms(busy["status_rows"]["median"]),
                 _ms(busy["status_rows"]["p99"]), _ms(busy["status_rows"]["max"]),
                 str(busy["status_rows"]["calls"])])
    cost = report["triggers"]
    n = report["trigger_rows"]
    extra = (cost["with_triggers"] - cost["without_triggers"]) / n
    ingest = busy.get("ingest", {})
    lines = [
        f"/metrics on a catalog of {report['items']:,} items ({report['local']:,} in the "
        f"local store, {report['waiting']:,} waiting for a copy on {TARGET!r}), SQLite, "
        "while an ingest runs",
        f"{report['code']}; served by {busy['app']}",
        machine_line(report["machine"]),
    ]
    if report.get("others"):
        lines.append(report["others"])
    lines += [
        f"ingest meanwhile: {busy['ingested_meanwhile']} new items stored while the scrapes were "
        f"timed ({ingest.get('runs', 0)} recorders of {report['ingest_files']} files finished)",
        f"exposition: {busy['size']:,} bytes", "",
        table(["what", "median", "p99", "max", "calls"], rows, right=[False] + [True] * 4),
        "",
        f"triggers: {n:,} items (each with a verified copy, one in ten flagged) written in "
        f"{cost['with_triggers']:.2f} s with them, {cost['without_triggers']:.2f} s without: "
        f"{extra * 1e6:.1f} µs more an item",
    ]
    scraped = busy.get("scraped_ingest")
    if scraped:
        lines.append(
            f"an ingest of {report['ingest_files']} files: {scraped['alone']:.2f} s alone, "
            f"{scraped['scraped']:.2f} s while /metrics, /api/status and / are scraped every "
            f"{scraped['every']:g} s ({scraped['scraped'] / scraped['alone']:.2f}x; medians of "
            f"{scraped['runs']} in turns, {scraped['scrapes']} scrapes)")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench web", description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000,
                        help="items in the catalog (default 1,000,000)")
    parser.add_argument("--local", type=int, default=50_000,
                        help="of those, the newest still in the local store (default 50,000)")
    parser.add_argument("--waiting", type=int, default=1_000,
                        help="of those, the newest with no copy yet (default 1,000)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each (300)")
    parser.add_argument("--status-calls", type=int, default=1,
                        help="timed calls of the status model in-process (1)")
    parser.add_argument("--uncached", action="store_true",
                        help="the served app reads the status at every request of the page "
                             "and the API (it keeps a read for a second otherwise)")
    parser.add_argument("--trigger-rows", type=int, default=100_000,
                        help="items written to measure the triggers' cost (100,000)")
    parser.add_argument("--ingest-files", type=int, default=100,
                        help="files a recorder in the ingest meanwhile (100)")
    parser.add_argument("--ingest-kib", type=int, default=512,
                        help="size of each of those files in KiB (512)")
    parser.add_argument("--scraped-runs", type=int, default=3,
                        help="ingests timed alone and while scraped every 5 s, each (3)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="folder for the cached catalog (default .bench/)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.waiting <= args.local <= args.items or args.items < 1000:
        parser.error("need 1000 <= --items and 0 <= --waiting <= --local <= --items")
    if args.calls < 1 or args.status_calls < 1 or args.trigger_rows < 1000:
        parser.error("--calls and --status-calls must be at least 1 and --trigger-rows at "
                     "least 1000")
    return args


def main(argv: list[str]) -> int:
    return bench_main("web", argv, parse_args, run, render_report)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
