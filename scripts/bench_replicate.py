"""`scripts/bench replicate`: `ingestd replicate` (upload, verify, lock, signed manifest, ledger
entry for every item) against `aws s3 cp --recursive` and `rclone copy` of the same clips to
the same local S3 server, in the same run, each into a fresh bucket with Object Lock and from
a cold page cache.

The server is started by the benchmark on 127.0.0.1 and stopped at its end: a one-node Ceph
RADOS Gateway (``--server ceph``, the S3 server bureaus run; the default when Ceph is
installed) or moto's S3 server (``--server moto``). The clips are built once and cached under
``WORK/data-replicate/`` (``--drop-data`` removes them): a few large clips and some small ones,
each a real H.264 clip made by ffmpeg followed by random bytes up to its size (distinct
content, valid headers). Before the timing, they are ingested once into a station; every
ingestd run replicates from a fresh copy of that station (its objects hard-linked), and every
tool's run gets a bucket of its own, removed after the run's check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchlib import (
    DEFAULT_WORK,
    REPO,
    VENV_BIN,
    BenchError,
    BenchTimeout,
    CacheDropper,
    MiB,
    bench_main,
    cached_build,
    code_state,
    concurrency_note,
    fmt_bytes,
    free_bytes,
    machine_info,
    machine_line,
    median,
    other_benchmarks,
    run_measured,
    run_quiet,
    run_timed,
    say,
    seed_media,
    split_sizes,
    table,
    write_padded,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

sys.path.insert(0, str(REPO))  # tests.support.servers: the servers the test suite starts

from tests.support.servers import (  # noqa: E402
    S3Endpoint,
    ServiceError,
    ServiceUnavailable,
    ceph_rgw,
    moto_server,
)

FORMAT = 1  # bump when the generated data changes: the cache is keyed by it
LARGE_WEIGHTS = (4, 2, 1, 1)  # the large clips' shares of their bytes
SMALL_MIN, SMALL_MAX = 2 * MiB, 8 * MiB
RECORDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SERIAL = "BENCH-REPL-01"
STATION = "bench-replicate"
PREFIX = "station-01"
INGESTD = VENV_BIN / "ingestd"
AIM = 1.0  # ingestd at least as fast as each other tool
MEMORY_AIM = 200 * MiB  # ingestd replicate's peak memory with the defaults stays under it
DATA_NOTE = ("data: each clip is a real 1 s 720p H.264/AAC MP4 (ffmpeg) followed by random "
             "bytes: valid headers, distinct content, not valid media throughout")

VERIFIES = {
    "ingestd": "hashes its local copy (SHA-256) as it reads it to send, and sends the last "
               "bytes only if it matches the item; each request's payload SHA-256 signed (SigV4 "
               "over http); then HEAD: size, the x-amz-meta-sha256 it sent, the server's "
               "full-object SHA-256 where reported, COMPLIANCE retention and legal hold as "
               "wanted; signed manifest next to it; ledger entry",
    "ingestd_readback": "as ingestd, and streams every object back and hashes it "
                        "(readback = true): the only check of the bytes the server holds",
    "aws": "nothing after the upload (no HEAD, no compare); each request carries its "
           "payload's SHA-256 (SigV4 over http) and a CRC32 header",
    "rclone": "Content-MD5 on every PUT and part (the server refuses a mismatch); then HEAD "
              "and compares the MD5 (ETag, or its own metadata after multipart) with the "
              "local file's",
}


# -- the clips ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataFile:
    rel: str
    size: int
    sha256: str
    kind: str  # "large" | "small"


@dataclass(frozen=True, kw_only=True)
class Dataset:
    root: Path
    files: tuple[DataFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def paths(self) -> list[Path]:
        return [self.root / f.rel for f in self.files]

    def describe(self) -> str:
        large = [f.size for f in self.files if f.kind == "large"]
        small = [f.size for f in self.files if f.kind == "small"]
        parts = [f"{len(large)} large clips of {fmt_bytes(min(large))}–{fmt_bytes(max(large))}"]
        if small:
            parts.append(f"{len(small)} small clips of "
                         f"{fmt_bytes(min(small))}–{fmt_bytes(max(small))}")
        return f"{fmt_bytes(self.total)} in {len(self.files)} clips ({', '.join(parts)})"


def plan_sizes(total: int, small_count: int) -> tuple[list[int], list[int]]:
    return split_sizes(total, small_count,
                       seed=f"ingestd-bench-replicate-{FORMAT}-{small_count}",
                       small=(SMALL_MIN, SMALL_MAX), weights=LARGE_WEIGHTS,
                       too_small=f"raise --size-mib or lower --small-clips ({small_count})")


def _build(folder: Path, large: list[int], small: list[int]) -> None:
    seed_clip, _ = seed_media(folder / "seed", RECORDED, seconds=1)
    shutil.rmtree(folder / "seed")
    root = folder / "clips"
    files: list[DataFile] = []
    local = RECORDED + timedelta(hours=8)
    for i, (kind, size) in enumerate([*(("large", s) for s in large),
                                      *(("small", s) for s in small)], start=1):
        rel = f"DCIM/100MEDIA/{local + timedelta(minutes=10 * i):%Y%m%d_%H%M%S}_{i:04d}.MP4"
        mtime = (RECORDED + timedelta(minutes=10 * i)).timestamp()
        files.append(DataFile(rel=rel, size=size, kind=kind,
                              sha256=write_padded(root / rel, seed_clip, size, mtime)))
    (folder / "manifest.json").write_text(
        json.dumps({"format": FORMAT, "files": [asdict(f) for f in files]}, indent=1),
        encoding="utf-8")


def _read(folder: Path) -> Dataset:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return Dataset(root=folder / "clips",
                   files=tuple(DataFile(**f) for f in manifest["files"]))


def _valid(folder: Path) -> bool:
    try:
        data = _read(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(p.is_file() and p.stat().st_size == f.size
               for p, f in zip(data.paths(), data.files, strict=True))


def load_or_build(work: Path, total: int, small_count: int) -> Dataset:
    large, small = plan_sizes(total, small_count)
    name = f"{total}B-{small_count}small-v{FORMAT}"
    # Not WORK/data: `bench ingest` removes whatever else it finds there when it rebuilds.
    folder = cached_build(work / "data-replicate", name, 2 * total + 512 * MiB,
                          lambda f: _build(f, large, small), _valid)
    return _read(folder)


# -- the S3 server --------------------------------------------------------------------------


class Server:
    """The running server: buckets made and removed for the runs, outside the timing."""

    def __init__(self, kind: str, endpoint: S3Endpoint, ceph_conf: Path | None) -> None:
        self.kind = kind
        self.endpoint = endpoint
        self.ceph_conf = ceph_conf
        self.client: S3Client = endpoint.client()
        self.version = self._version()

    def _version(self) -> str:
        if self.kind == "moto":
            import moto

            return f"moto {moto.__version__} (server mode, a thread of this benchmark)"
        out = subprocess.run(["radosgw", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
        return f"{out or 'Ceph RADOS Gateway'} (one node, memstore OSD)"

    def new_bucket(self, key: str) -> str:
        name = f"bench-{key.replace('_', '-')}-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        return name

    def listing(self, bucket: str) -> dict[str, int]:
        found: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found[entry["Key"]] = entry["Size"]
        return found

    def release(self, bucket: str) -> None:
        """Free the bucket's space. ingestd's objects are under COMPLIANCE retention, which
        no S3 call can lift: Ceph's admin tool purges them; moto is reset as a whole."""
        if self.kind == "moto":
            req = urllib.request.Request(f"{self.endpoint.url}/moto-api/reset", method="POST")
            with urllib.request.urlopen(req, timeout=60) as answer:
                answer.read()
            return
        assert self.ceph_conf is not None
        run_quiet(["radosgw-admin", "-c", self.ceph_conf, "-n", "client.admin", "bucket", "rm",
                   f"--bucket={bucket}", "--purge-objects", "--bypass-gc"])


@contextlib.contextmanager
def start_server(choice: str, workdir: Path, total: int) -> Iterator[Server]:
    kind = choice
    if choice == "auto":
        kind = "ceph" if shutil.which("radosgw") else "moto"
    started = time.perf_counter()
    if kind == "ceph":
        # memstore keeps objects in RAM: room for one run's bucket (each is purged after its
        # run) and a margin
        memstore = max(4 << 30, 2 * total + (2 << 30))
        try:
            with ceph_rgw(workdir, memstore_bytes=memstore) as endpoint:
                confs = list(workdir.glob("ceph-*/ceph.conf"))
                if len(confs) != 1:
                    raise BenchError(f"cannot find the Ceph configuration in {workdir}")
                say(f"Ceph RGW at {endpoint.url} (started in "
                    f"{time.perf_counter() - started:.1f} s)")
                yield Server("ceph", endpoint, confs[0])
            return
        except ServiceUnavailable as exc:
            if choice == "ceph":
                raise BenchError(str(exc)) from exc
            say(f"Ceph cannot run here ({exc}); using moto")
        except ServiceError as exc:
            raise BenchError(f"Ceph did not start: {exc}") from exc
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    try:
        with moto_server() as endpoint:
            say(f"moto at {endpoint.url} (started in {time.perf_counter() - started:.1f} s)")
            yield Server("moto", endpoint, None)
    except ServiceError as exc:
        raise BenchError(f"moto did not start: {exc}") from exc


# -- the tools ------------------------------------------------------------------------------


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without AWS_* and RCLONE_* (a profile, a CA bundle for AWS, another
    remote) and with ``extra``: every tool sees the same server and nothing else."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "BOTO_"))}
    env.update(extra)
    return env


@dataclass(frozen=True, kw_only=True)
class Station:
    """The station the clips were ingested into once, before any timing."""

    home: Path
    items: dict[str, int]  # sha256 -> size


class Tool:
    key = ""
    label = ""
    #: killed after this many times ingestd's time in the same round (at least 30 s)
    timeout_factor: float | None = None

    def __init__(self, data: Dataset, server: Server) -> None:
        self.data = data
        self.server = server

    def prepare(self, scratch: Path, bucket: str) -> None:
        """Set up what the run needs; not timed."""

    def timed(self, scratch: Path, bucket: str,
              timeout: float | None) -> tuple[float, int | None]:
        raise NotImplementedError

    def check(self, scratch: Path, bucket: str) -> None:
        """Raise BenchError unless the bucket holds the right objects; not timed."""
        want = {f"{PREFIX}/{f.rel}": f.size for f in self.data.files}
        got = self.server.listing(bucket)
        if got != want:
            raise BenchError(f"{self.label}: the bucket holds {len(got)} objects "
                             f"({sum(got.values())} bytes), expected {len(want)} "
                             f"({sum(want.values())} bytes)")

    def version(self) -> str:
        return ""


class Ingestd(Tool):
    key = "ingestd"
    label = "ingestd replicate"
    readback = False

    def __init__(self, data: Dataset, server: Server, station: Station) -> None:
        super().__init__(data, server)
        self.station = station

    def prepare(self, scratch: Path, bucket: str) -> None:
        home = scratch / "home"
        clone_home(self.station.home, home)
        credentials = scratch / "s3-credentials"
        credentials.write_text(
            f"[default]\naws_access_key_id = {self.server.endpoint.access_key}\n"
            f"aws_secret_access_key = {self.server.endpoint.secret_key}\n", encoding="utf-8")
        credentials.chmod(0o600)
        target = {"name": "offsite", "type": "s3", "bucket": bucket,
                  "endpoint_url": self.server.endpoint.url, "prefix": PREFIX,
                  "object_lock": True, "credentials_file": str(credentials)}
        if self.readback:
            target["readback"] = True
        lines = [f'station = "{STATION}"', "", "[docks]", 'watch_root = ""', "",
                 "[[targets]]", *(f"{k} = {json.dumps(v)}" for k, v in target.items())]
        (home / "ingestd.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def timed(self, scratch: Path, bucket: str,
              timeout: float | None) -> tuple[float, int | None]:
        return run_measured([INGESTD, "--home", scratch / "home", "replicate", "--json"],
                            stdout=scratch / "replicate.json", env=clean_env({}),
                            timeout=timeout)

    def check(self, scratch: Path, bucket: str) -> None:
        report = json.loads((scratch / "replicate.json").read_text(encoding="utf-8"))
        verified = {v["sha256"] for v in report["verified"]}
        if not report["ok"] or report["pending"] or verified != set(self.station.items):
            raise BenchError(f"{self.label}: ok {report['ok']}, {len(verified)} verified of "
                             f"{len(self.station.items)}, {report['pending']} pending, "
                             f"failed {report['failed'][:2]}")
        got = self.server.listing(bucket)
        items = {k.rsplit("/", 1)[1]: v for k, v in got.items()
                 if k.startswith(f"{PREFIX}/sha256/")}
        manifests = [k for k in got if k.startswith(f"{PREFIX}/manifests/")]
        if items != self.station.items or len(manifests) != len(items):
            raise BenchError(f"{self.label}: the bucket holds {len(items)} items and "
                             f"{len(manifests)} manifests, expected {len(self.station.items)}")


class IngestdReadback(Ingestd):
    key = "ingestd_readback"
    label = "ingestd replicate, readback = true"
    readback = True
    timeout_factor = 3.0


class AwsCli(Tool):
    key = "aws"
    label = "aws s3 cp --recursive"

    def __init__(self, data: Dataset, server: Server, aws: str) -> None:
        super().__init__(data, server)
        self.aws = aws

    def _env(self, scratch: Path) -> dict[str, str]:
        ep = self.server.endpoint
        return clean_env({
            "AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key,
            "AWS_DEFAULT_REGION": ep.region, "AWS_EC2_METADATA_DISABLED": "true",
            # no user configuration: the CLI's defaults
            "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
        })

    def timed(self, scratch: Path, bucket: str,
              timeout: float | None) -> tuple[float, int | None]:
        return run_measured([self.aws, "--endpoint-url", self.server.endpoint.url, "s3", "cp",
                             "--recursive", "--only-show-errors", "--no-progress",
                             str(self.data.root), f"s3://{bucket}/{PREFIX}/"],
                            stdout=scratch / "out", env=self._env(scratch), timeout=timeout)

    def version(self) -> str:
        out = subprocess.run([self.aws, "--version"], capture_output=True, text=True,
                             check=False)
        return (out.stdout or out.stderr).strip()


class Rclone(Tool):
    key = "rclone"
    label = "rclone copy"

    def _env(self) -> dict[str, str]:
        ep = self.server.endpoint
        return clean_env({
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Ceph" if self.server.kind == "ceph" else "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": ep.url,
            "RCLONE_CONFIG_BENCH_REGION": ep.region,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ep.access_key,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": ep.secret_key,
        })

    def timed(self, scratch: Path, bucket: str,
              timeout: float | None) -> tuple[float, int | None]:
        return run_measured(["rclone", "--config", "/dev/null", "copy", str(self.data.root),
                             f"bench:{bucket}/{PREFIX}"], stdout=scratch / "out",
                            env=self._env(), timeout=timeout)

    def version(self) -> str:
        out = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=False)
        return out.stdout.splitlines()[0] if out.stdout else ""


def clone_home(template: Path, home: Path) -> None:
    """A fresh copy of the station: its store's objects (read-only) hard-linked, the catalog
    and everything else copied."""
    objects = template / "store" / "objects"

    def copy(src: str, dst: str) -> None:
        if Path(src).is_relative_to(objects):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(template, home, copy_function=copy, symlinks=True)


def make_station(data: Dataset, home: Path) -> Station:
    """The clips ingested once into a station (not timed: `bench ingest` measures that)."""
    say(f"ingesting the clips into a station at {home} (not timed)")
    run_quiet([INGESTD, "--home", home, "init", "--station", STATION])
    (home / "ingestd.toml").write_text(f'station = "{STATION}"\n\n[docks]\nwatch_root = ""\n',
                                       encoding="utf-8")
    run_quiet([INGESTD, "--home", home, "devices", "add", SERIAL, "--officer", "Bench Officer",
               "--officer-id", "B-0001"])
    out = home.parent / "ingest.json"
    run_timed([INGESTD, "--home", home, "ingest", data.root, "--serial", SERIAL, "--json"],
              stdout=out)
    report = json.loads(out.read_text(encoding="utf-8"))
    items = {i["sha256"]: i["size"] for i in report["items"]}
    want = {f.sha256: f.size for f in data.files}
    if report["state"] != "done" or items != want:
        raise BenchError(f"ingest into the station: state {report['state']}, {len(items)} "
                         f"items of {len(want)}, errors {report['errors'][:2]}")
    return Station(home=home, items=items)


def find_aws(work: Path) -> str:
    """The aws CLI: the venv's, else the one on PATH (through a pyenv shim: the program it
    runs, so that the shim's own start is not timed), else one installed by pip into a venv
    of its own under WORK/tools (awscli pins botocore: installed into .venv it would change
    the botocore that ingestd runs on)."""
    venv_aws = VENV_BIN / "aws"
    if venv_aws.exists():
        return str(venv_aws)
    found = shutil.which("aws")
    if found and "/shims/" in found and shutil.which("pyenv"):
        real = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True,
                              check=False).stdout.strip()
        found = real if real and os.access(real, os.X_OK) else found
    if found:
        return found
    own = work / "tools" / "awscli"
    if not (own / "bin" / "aws").exists():
        say(f"installing awscli (pip) into {own}")
        run_quiet([sys.executable, "-m", "venv", own])
        run_quiet([own / "bin" / "python", "-m", "pip", "install", "-q",
                   "--disable-pip-version-check", "awscli"])
    if not (own / "bin" / "aws").exists():
        raise BenchError("could not install the aws CLI (pip install awscli)")
    return str(own / "bin" / "aws")


# -- running --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Measured:
    seconds: float
    peak_rss: int | None


@dataclass(kw_only=True)
class Results:
    runs: dict[str, list[Measured]] = field(default_factory=dict)
    hung: dict[str, str] = field(default_factory=dict)  # tool -> what happened

    def seconds(self, key: str) -> float:
        return median([m.seconds for m in self.runs[key]])


def measure_once(tool: Tool, scratch: Path, dropper: CacheDropper, source: list[Path],
                 timeout: float | None) -> Measured:
    scratch.mkdir(parents=True)
    bucket = tool.server.new_bucket(tool.key)
    try:
        tool.prepare(scratch, bucket)
        dropper.drop(source)
        seconds, peak = tool.timed(scratch, bucket, timeout)
        tool.check(scratch, bucket)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        tool.server.release(bucket)
    return Measured(seconds=seconds, peak_rss=peak)


def measure(tools: list[Tool], repeat: int, run_dir: Path, dropper: CacheDropper,
            source: list[Path], seen: set[str]) -> Results:
    """Every tool once per round, in turn. A tool with a timeout that runs out is reported as
    hung, with the time it was given, and not run again."""
    results = Results(runs={t.key: [] for t in tools})
    for round_ in range(1, repeat + 1):
        for tool in tools:
            if tool.key in results.hung:
                continue
            timeout = None
            if tool.timeout_factor is not None:
                timeout = max(30.0, tool.timeout_factor * results.runs["ingestd"][-1].seconds)
            seen.update(other_benchmarks())
            try:
                m = measure_once(tool, run_dir / tool.key, dropper, source, timeout)
            except BenchTimeout:
                results.hung[tool.key] = (
                    f"{tool.label}: DID NOT FINISH in {timeout:.0f} s ({tool.timeout_factor:.0f}x "
                    f"ingestd's time without readback in the same round) and was killed; not "
                    "run again")
                say(f"round {round_}/{repeat}: {tool.key:<24} did not finish in "
                    f"{timeout:.0f} s: killed")
                continue
            finally:
                seen.update(other_benchmarks())
            results.runs[tool.key].append(m)
            say(f"round {round_}/{repeat}: {tool.key:<24} {m.seconds:6.2f} s")
    return results


# -- the report -----------------------------------------------------------------------------


def build_report(data: Dataset, tools: list[Tool], results: Results, *, repeat: int,
                 server: Server, dropper: CacheDropper, notes: list[str],
                 machine: dict[str, Any]) -> dict[str, Any]:
    base = results.seconds("ingestd")
    rows = []
    for tool in tools:
        runs = results.runs[tool.key]
        if not runs:
            continue
        seconds = results.seconds(tool.key)
        peaks = [m.peak_rss for m in runs if m.peak_rss is not None]
        rows.append({"tool": tool.key, "label": tool.label, "version": tool.version(),
                     "median_s": seconds, "runs_s": [m.seconds for m in runs],
                     "mb_per_s": data.total / seconds / 1e6, "vs_ingestd": seconds / base,
                     "peak_rss_bytes": max(peaks) if peaks else None,
                     "verifies": VERIFIES[tool.key]})
    aims = {}
    for other in ("aws", "rclone"):
        if other in results.runs:
            ratio = base / results.seconds(other)
            aims[f"ingestd_over_{other}"] = {"ratio": ratio, "aim": f"<= {AIM}",
                                             "met": ratio <= AIM}
    peaks = [m.peak_rss for m in results.runs["ingestd"] if m.peak_rss is not None]
    if peaks:
        aims["ingestd_peak_memory"] = {"peak_rss_bytes": max(peaks),
                                       "ratio": max(peaks) / MEMORY_AIM,
                                       "aim": f"< {fmt_bytes(MEMORY_AIM)}",
                                       "met": max(peaks) < MEMORY_AIM}
    for key in ("ingestd_readback",):
        if results.runs.get(key):
            label = next(t.label for t in tools if t.key == key)
            aims[f"{key}_over_ingestd"] = {
                "ratio": results.seconds(key) / base, "met": None,
                "aim": f"({label} / ingestd replicate: the cost of reading every object back)"}
    return {
        "benchmark": "replicate", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine, "code": code_state(), "repeat": repeat,
        "server": {"kind": server.kind, "version": server.version, "url": server.endpoint.url},
        "page_cache": {"method": dropper.method, "note": dropper.describe()},
        "data": {"description": data.describe(), "bytes": data.total, "files": len(data.files),
                 "note": DATA_NOTE},
        "tools": rows, "aims": aims, "hung": results.hung, "notes": notes,
    }


def render(report: dict[str, Any]) -> str:
    rows = []
    for r in report["tools"]:
        rows.append([r["label"], f"{r['median_s']:.2f}", f"{r['mb_per_s']:.0f}",
                     f"{r['vs_ingestd']:.2f}x",
                     "" if r["peak_rss_bytes"] is None else fmt_bytes(r["peak_rss_bytes"]),
                     " ".join(f"{s:.2f}" for s in r["runs_s"])])
    aims = []
    for name, aim in report["aims"].items():
        if name == "ingestd_peak_memory":
            aims.append(f"ingestd replicate's peak memory with the defaults: "
                        f"{fmt_bytes(aim['peak_rss_bytes'])}, {aim['ratio']:.2f}x the aim "
                        f"({aim['aim']}: {'met' if aim['met'] else 'NOT met'})")
        elif aim["met"] is None:
            aims.append(f"{aim['ratio']:.2f}x the time {aim['aim']}")
        else:
            other = name.removeprefix("ingestd_over_")
            aims.append(f"ingestd / {other}: {aim['ratio']:.2f}x the time (aim {aim['aim']}, "
                        f"at least as fast: {'met' if aim['met'] else 'NOT met'})")
    verifies = [f"- {r['label']}: {r['verifies']}" for r in report["tools"]]
    versions = [f"- {r['label']}: {r['version']}" for r in report["tools"] if r["version"]]
    return "\n".join([
        f"replicate benchmark: {report['data']['description']}, to {report['server']['kind']} "
        f"on 127.0.0.1, median of {report['repeat']} rounds",
        f"server: {report['server']['version']}",
        f"page cache: {report['page_cache']['note']}",
        machine_line(report["machine"]),
        f"code: {report['code']}",
        report["data"]["note"], "",
        table(["tool", "median s", "MB/s", "time vs ingestd", "peak RSS", "runs s"], rows,
              right=[False, True, True, True, True, False]), "",
        *aims, *report["hung"].values(), "", "what each verifies:", *verifies, "",
        "versions:", *versions, "", "notes:",
        *(f"- {n}" for n in report["notes"]),
    ])


NOTES = [
    "each round runs every tool once, in turn, each into a new bucket created with Object "
    "Lock (untimed), after `sync` and a dropped page cache; each result is checked outside "
    "the timing (every object listed with its size; for ingestd, its --json report: every "
    "item verified, none failed or pending, one manifest per item), then the bucket is "
    "removed",
    "ingestd is timed as a user runs it: `ingestd --home H replicate --json`, Python start-up, "
    "target check (bucket, Object Lock) and catalog included, from a fresh copy of a station "
    "into which the clips were ingested once before any timing; credentials from a "
    "credentials_file; settings at their defaults (4 items at a time, multipart from 64 MiB in "
    "16 MiB parts, 4 parts of an item at a time, all uploads sharing 64 MiB of buffers)",
    "aws and rclone run with their defaults (aws: multipart from 8 MiB in 8 MiB parts, 10 "
    "requests at a time; rclone: 4 files at a time, multipart from 200 MiB in 5 MiB parts, 4 "
    "at a time), credentials from the environment, no user configuration; they upload the "
    "clips' folder, ingestd its store's objects (the same bytes)",
    "seen against Ceph 16.2 here: over plain http (loopback), botocore signs each request's "
    "payload SHA-256 and Ceph checks it (a tampered body is refused: "
    "XAmzContentSHA256Mismatch); over https botocore sends UNSIGNED-PAYLOAD, and Ceph ignores "
    "x-amz-checksum-* headers (a tampered body with only those is accepted), so there only "
    "Content-MD5 (rclone) is checked by the server",
    "peak RSS: ru_maxrss of the command's process tree (the largest single process)",
]


# -- the command ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench replicate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024,
                   help="total size of the clips in MiB (default 1024)")
    p.add_argument("--small-clips", type=int, default=32,
                   help="small clips of 2-8 MiB among them (default 32)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown (default 3)")
    p.add_argument("--server", choices=("auto", "ceph", "moto"), default="auto",
                   help="the local S3 server (default: ceph if installed, else moto)")
    p.add_argument("--no-readback", action="store_true",
                   help="leave out the runs of ingestd with readback = true")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK,
                   help=f"work folder (default {DEFAULT_WORK})")
    p.add_argument("--drop-data", action="store_true", help="remove the cached clips at the end")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.size_mib < 1 or args.small_clips < 0:
        p.error("--repeat and --size-mib must be at least 1, --small-clips not negative")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    work: Path = args.work.resolve()
    data = load_or_build(work, args.size_mib * MiB, args.small_clips)
    if free_bytes(work) < int(1.1 * data.total) + 512 * MiB:
        raise BenchError(f"not enough free space in {work} for a station holding "
                         f"{fmt_bytes(data.total)}")
    notes = list(NOTES)
    aws = find_aws(work)
    has_rclone = shutil.which("rclone") is not None
    if not has_rclone:
        notes.append("rclone is not installed (apt-get install rclone): its row is left out")
    dropper = CacheDropper()
    seen: set[str] = set()
    run_dir = work / f"run-replicate-{os.getpid()}"
    try:
        station = make_station(data, run_dir / "station" / "home")
        source = [*data.paths(), *(station.home / "store" / "objects" / "sha256" / s[:2] / s[2:4]
                                   / s for s in station.items)]
        with start_server(args.server, run_dir / "server", data.total) as server:
            tools: list[Tool] = [Ingestd(data, server, station), AwsCli(data, server, aws)]
            if has_rclone:
                tools.append(Rclone(data, server))
            if not args.no_readback:
                tools.append(IngestdReadback(data, server, station))
            results = measure(tools, args.repeat, run_dir / "runs", dropper, source, seen)
            if (note := concurrency_note(seen)) is not None:
                notes.append(note)
            report = build_report(data, tools, results, repeat=args.repeat, server=server,
                                  dropper=dropper, notes=notes,
                                  machine=machine_info(load_start))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.drop_data:
            shutil.rmtree(work / "data-replicate", ignore_errors=True)
    report["notes"].append(f"the benchmark took {time.perf_counter() - started:.0f} s "
                           "(building data the first time, ingesting, starting the server "
                           "included)")
    return report


def main(argv: list[str]) -> int:
    return bench_main("replicate", argv, parse_args, run, render)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
