"""`scripts/bench ingest`: ingestd's whole ingest against cp+sha256sum, rsync, rclone, the
proven copy alone and the SHA-256 limit, on the same simulated recorder, in the same run, each
from a cold page cache.

The recorder is built once and cached under ``WORK/data/<size>-…`` (``--drop-data`` removes it):
a few large clips, each a real H.264 clip made by ffmpeg followed by random bytes up to its size,
and a few hundred photo-sized files, each a real JPEG followed by random bytes. Every file is
distinct content with valid media headers (ffprobe reads them), but not valid media throughout:
copying and hashing do not care. Each round runs every tool once, in turn, so that drift in
the disk's speed touches all of them alike; the table shows medians of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    DEFAULT_WORK,
    VENV_BIN,
    BenchError,
    CacheDropper,
    GiB,
    Measured,
    MiB,
    bench_main,
    ensure_debian_packages,
    fmt_bytes,
    free_bytes,
    median,
    run_measured_cpu,
    run_quiet,
    say,
    split_sizes,
    table,
    timed_sync,
)

from ingestd.integrity.hashing import anonymous_buffer, fsync_dir, set_direct
from ingestd.simulate import make_clip

FORMAT = 1  # bump when the generated data changes: the cache is keyed by it
CLIP_WEIGHTS = (4, 2, 1, 1)  # the largest clip is half the clips' bytes
SMALL_MIN, SMALL_MAX = 200 * 1024, 500 * 1024
RECORDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SERIAL = "BENCH-0001"
CHUNK = 4 * MiB
INGESTD = VENV_BIN / "ingestd"
AIM_HASH_TWICE = 1.5  # ingestd within 1.5x of hashing the bytes twice
AIM_RSYNC = 1.0  # ingestd no slower than rsync -a followed by its sync
AIM_CPU_PER_GIB = 2.0  # user + system seconds of the whole command per GiB ingested
AIM_FLAT = 32 * MiB  # peak RSS, one huge file against many small ones: within this
FLAT_SMALL_FILES = 150  # photos in the many-small-files recorder of the memory check
DATA_NOTE = ("data: each clip is a real 10 s 720p H.264/AAC MP4 (ffmpeg) followed by random "
             "bytes, each photo a real JPEG followed by random bytes: valid headers, distinct "
             "content, not valid media throughout (copy+hash does not care)")


# -- the simulated recorder -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataFile:
    rel: str  # relative to the recorder's root
    size: int
    sha256: str
    kind: str  # "clip" | "photo"


@dataclass(frozen=True, kw_only=True)
class Dataset:
    root: Path  # the recorder's root folder
    files: tuple[DataFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def paths(self) -> list[Path]:
        return [self.root / f.rel for f in self.files]

    def expected(self) -> dict[str, str]:
        return {f.rel: f.sha256 for f in self.files}

    def describe(self) -> str:
        clips = [f.size for f in self.files if f.kind == "clip"]
        photos = [f.size for f in self.files if f.kind == "photo"]
        parts = []
        if clips:
            parts.append(f"{len(clips)} clips of {fmt_bytes(min(clips))}–{fmt_bytes(max(clips))}")
        if photos:
            parts.append(f"{len(photos)} photos of "
                         f"{fmt_bytes(min(photos))}–{fmt_bytes(max(photos))}")
        return f"{fmt_bytes(self.total)} in {len(self.files)} files ({', '.join(parts)})"

    def subset(self, root: Path, kinds: set[str], *, largest_only: bool = False,
               limit: int | None = None) -> Dataset:
        """A second recorder made of hard links to some of these files (no bytes copied)."""
        chosen = [f for f in self.files if f.kind in kinds]
        if largest_only:
            chosen = [max(chosen, key=lambda f: f.size)]
        chosen = chosen[:limit]
        root.mkdir(parents=True)
        for f in chosen:
            (root / f.rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(self.root / f.rel, root / f.rel)
        return Dataset(root=root, files=tuple(chosen))


def plan_sizes(total: int, small_count: int) -> tuple[list[int], list[int]]:
    """(clip sizes, photo sizes) adding up to ``total``; the same for the same arguments."""
    return split_sizes(total, small_count, seed=f"ingestd-bench-{FORMAT}-{small_count}",
                       small=(SMALL_MIN, SMALL_MAX), weights=CLIP_WEIGHTS,
                       too_small=f"raise --size-gib or lower --small-files ({small_count})")


def _write_padded(path: Path, head: bytes, size: int, mtime: float) -> str:
    """``head`` then random bytes up to ``size``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        first = head[:size]
        out.write(first)
        digest.update(first)
        left = size - len(first)
        while left:
            chunk = os.urandom(min(CHUNK, left))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    os.utime(path, (mtime, mtime))
    return digest.hexdigest()


def _seed_media(folder: Path) -> tuple[bytes, bytes]:
    """One real clip and one real photo, whose bytes open every generated file."""
    clip = make_clip(folder / "seed.mp4", seconds=10, size="1280x720", rate=30,
                     recorded=RECORDED)
    photo = folder / "seed.jpg"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1920x1080", "-frames:v", "1", "-q:v", "2", str(photo)],
                   check=True, capture_output=True)
    return clip.read_bytes(), photo.read_bytes()


def _generate(folder: Path, clip_sizes: list[int], photo_sizes: list[int]) -> Dataset:
    seed_clip, seed_photo = _seed_media(folder / "seed")
    root = folder / "recorder"
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    files: list[DataFile] = []
    local = RECORDED + timedelta(hours=8)  # recorders name files by local time
    for i, size in enumerate(clip_sizes, start=1):
        rel = f"DCIM/100MEDIA/{local + timedelta(minutes=15 * i):%Y%m%d_%H%M%S}_{i:04d}.MP4"
        mtime = (RECORDED + timedelta(minutes=15 * i)).timestamp()
        files.append(DataFile(rel=rel, size=size, kind="clip",
                              sha256=_write_padded(root / rel, seed_clip, size, mtime)))
    for i, size in enumerate(photo_sizes, start=1):
        rel = f"DCIM/100MEDIA/IMG_{i:04d}.JPG"
        mtime = (RECORDED + timedelta(seconds=30 * i)).timestamp()
        files.append(DataFile(rel=rel, size=size, kind="photo",
                              sha256=_write_padded(root / rel, seed_photo, size, mtime)))
    shutil.rmtree(folder / "seed")
    return Dataset(root=root, files=tuple(files))


def copy_space(total: int) -> int:
    """Room for one tool's copy (and ingestd's catalog), with a margin."""
    return int(1.1 * total) + 512 * MiB


def need_space(folder: Path, need: int, what: str) -> None:
    if free_bytes(folder) < need:
        raise BenchError(f"not enough free space in {folder} for {what}: needs about "
                         f"{fmt_bytes(need)}, has {fmt_bytes(free_bytes(folder))}")


def load_or_build(work: Path, total: int, small_count: int) -> Dataset:
    """The cached recorder for these arguments, built (and older ones removed) when missing."""
    clip_sizes, photo_sizes = plan_sizes(total, small_count)  # first: it checks the arguments
    base = work / "data"
    folder = base / f"{total}B-{small_count}photos-v{FORMAT}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        files = tuple(DataFile(**f) for f in json.loads(manifest.read_text())["files"])
        cached = Dataset(root=folder / "recorder", files=files)
        if all(p.is_file() and p.stat().st_size == f.size
               for p, f in zip(cached.paths(), files, strict=True)):
            say(f"using the cached recorder in {folder}")
            return cached
    base.mkdir(parents=True, exist_ok=True)
    for other in base.iterdir():
        say(f"removing an older cached recorder: {other}")
        shutil.rmtree(other)
    need_space(base, total + copy_space(total), "the recorder and one copy of it")
    say(f"building a simulated recorder of {fmt_bytes(total)} in {folder} (once; cached)")
    partial = base / (folder.name + ".partial")
    start = time.perf_counter()
    data = _generate(partial, clip_sizes, photo_sizes)
    (partial / "manifest.json").write_text(
        json.dumps({"format": FORMAT, "files": [asdict(f) for f in data.files]}, indent=1))
    partial.rename(folder)
    os.sync()
    say(f"built in {time.perf_counter() - start:.1f} s")
    return Dataset(root=folder / "recorder", files=data.files)


def tree_sizes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size
            for p in root.rglob("*") if p.is_file()}


# -- the tools ------------------------------------------------------------------------------


class Tool:
    """One contender. ``prepare`` and ``check`` are untimed; only ``timed`` is measured."""

    key = ""
    label = ""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.cpu: float | None = None  # user + system seconds of the last timed run

    def prepare(self, scratch: Path) -> None:
        """Set up what the run needs, e.g. a fresh home; not timed."""

    def _run(self, argv: list[str | os.PathLike[str]], stdout: Path) -> tuple[float, int | None]:
        """Run a command to its end: its seconds and peak RSS; its CPU time in ``cpu``."""
        seconds, peak, self.cpu = run_measured_cpu(argv, stdout=stdout)
        return seconds, peak

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        """Do the work; return (seconds, peak RSS in bytes or None)."""
        raise NotImplementedError

    def check(self, scratch: Path) -> None:
        """Raise BenchError unless the run produced the right result; not timed."""

    def _check_copy(self, dest: Path) -> None:
        want = {f.rel: f.size for f in self.data.files}
        got = tree_sizes(dest)
        if got != want:
            raise BenchError(f"{self.label}: the copy in {dest} differs from the recorder "
                             f"({len(got)} files, {sum(got.values())} bytes)")


class Ingestd(Tool):
    key = "ingestd"
    label = "ingestd ingest (copy+hash, fsync, read-back, ffprobe, sign, catalog)"

    def __init__(self, data: Dataset) -> None:
        super().__init__(data)
        self.flags: Counter[str] = Counter()

    def prepare(self, scratch: Path) -> None:
        home = scratch / "home"
        run_quiet([INGESTD, "--home", home, "init"])
        run_quiet([INGESTD, "--home", home, "devices", "add", SERIAL,
                   "--officer", "Bench Officer", "--officer-id", "B-0001"])

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        return self._run([INGESTD, "--home", scratch / "home", "ingest", self.data.root,
                          "--serial", SERIAL, "--json"], stdout=scratch / "ingest.json")

    def check(self, scratch: Path) -> None:
        report = json.loads((scratch / "ingest.json").read_text(encoding="utf-8"))
        got = {i["path"]: i["sha256"] for i in report["items"]}
        if report["state"] != "done" or report["errors"] or got != self.data.expected():
            raise BenchError(f"ingestd: state {report['state']}, {len(got)} items of "
                             f"{len(self.data.files)}, errors {report['errors'][:3]}, "
                             f"hashes match: {got == self.data.expected()}")
        if not all(i["new"] for i in report["items"]):
            raise BenchError("ingestd: some items were not new in a fresh home")
        self.flags = Counter(flag for i in report["items"] for flag in i["flags"])


class CpSha256sum(Tool):
    key = "cp_sha256sum"
    label = "cp -r, then sha256sum of source and copy"
    SCRIPT = """set -euo pipefail
cp -r -- "$1" "$2"
(cd -- "$1" && find . -type f -print0 | xargs -0 sha256sum --) > "$3"
(cd -- "$2" && find . -type f -print0 | xargs -0 sha256sum --) > "$4"
"""

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        return self._run(["bash", "-c", self.SCRIPT, "bench", self.data.root, scratch / "copy",
                          scratch / "source.sums", scratch / "copy.sums"],
                         stdout=scratch / "out")

    def check(self, scratch: Path) -> None:
        for name in ("source.sums", "copy.sums"):
            sums = {}
            for line in (scratch / name).read_text(encoding="utf-8").splitlines():
                digest, path = line.split("  ", 1)
                sums[path.removeprefix("./")] = digest
            if sums != self.data.expected():
                raise BenchError(f"{self.label}: {name} does not match the recorder")


class Rsync(Tool):
    key = "rsync"
    label = "rsync -a"

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        return self._run(["rsync", "-a", f"{self.data.root}/", f"{scratch / 'copy'}/"],
                         stdout=scratch / "out")

    def check(self, scratch: Path) -> None:
        self._check_copy(scratch / "copy")


class Rclone(Tool):
    key = "rclone"
    label = "rclone copy --checksum"

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        return self._run(["rclone", "copy", "--checksum", "--config", "/dev/null",
                          str(self.data.root), str(scratch / "copy")], stdout=scratch / "out")

    def check(self, scratch: Path) -> None:
        self._check_copy(scratch / "copy")


class ProvenCopy(Tool):
    """What ingestd's guarantees cost on this disk, and nothing else: each file read, hashed,
    written with O_DIRECT, fsynced, read back with O_DIRECT and hashed again, renamed into
    place and its folder fsynced; one file at a time, in one thread, with no catalog, no
    signature, no probe. ingestd against it is what ingestd itself adds; it against
    ``rsync`` and its ``sync`` is what proving every copy costs."""

    key = "proven_copy"
    label = "the proven copy alone (fsync, read-back, no bookkeeping; one loop)"

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        dest = scratch / "copy"
        buf = anonymous_buffer(CHUNK)  # ingestd's own kind: page-aligned, on huge pages
        start, cpu = time.perf_counter(), time.process_time()
        with memoryview(buf) as view:
            for f in self.data.files:
                target = dest / f.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                sent = _proven_copy(self.data.root / f.rel, tmp, view)
                if sent != f.sha256:
                    raise BenchError(f"{self.label}: {f.rel} read back as {sent}, not "
                                     f"{f.sha256}")
                tmp.rename(target)
                fsync_dir(target.parent)
        seconds = time.perf_counter() - start
        self.cpu = time.process_time() - cpu
        return seconds, None

    def check(self, scratch: Path) -> None:
        self._check_copy(scratch / "copy")


def _proven_copy(src: Path, tmp: Path, view: memoryview) -> str:
    """Copy ``src`` to ``tmp`` through ``view``, hashing it; fsync; read it back from the
    device and return the SHA-256 of what came back (the caller compares)."""
    block = 4096
    digest = hashlib.sha256()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    try:
        with src.open("rb", buffering=0) as source:
            while n := source.readinto(view):
                digest.update(view[:n])
                whole = n - n % block
                if whole:
                    os.write(fd, view[:whole])
                if whole < n:  # the tail that is not a whole block: through the page cache
                    set_direct(fd, False)
                    os.write(fd, view[whole:n])
        os.fsync(fd)
    finally:
        os.close(fd)
    back = hashlib.sha256()
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECT)
    try:
        offset = 0
        while n := os.preadv(fd, [view], offset):
            back.update(view[:n])
            offset += n
    finally:
        os.close(fd)
    if back.hexdigest() != digest.hexdigest():
        raise BenchError(f"{src}: the copy read back differs from what was read")
    return back.hexdigest()


class Hashlib(Tool):
    key = "hashlib"
    label = "hashlib SHA-256 of every byte, one pass (the limit)"

    def __init__(self, data: Dataset) -> None:
        super().__init__(data)
        self.sums: dict[str, str] = {}

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        sums = {}
        start, cpu = time.perf_counter(), time.process_time()
        for f in self.data.files:
            digest = hashlib.sha256()
            with (self.data.root / f.rel).open("rb", buffering=0) as src:
                while n := src.readinto(buf):
                    digest.update(view[:n])
            sums[f.rel] = digest.hexdigest()
        seconds = time.perf_counter() - start
        self.cpu = time.process_time() - cpu
        self.sums = sums
        return seconds, None

    def check(self, scratch: Path) -> None:
        if self.sums != self.data.expected():
            raise BenchError("hashlib: the recorder's files no longer match their manifest")


class IngestdStartup(Ingestd):
    """``ingestd status`` on an empty home: the start-up time and memory floor of a command."""

    key = "ingestd_startup"

    def timed(self, scratch: Path) -> tuple[float, int | None]:
        return self._run([INGESTD, "--home", scratch / "home", "status", "--json"],
                         stdout=scratch / "status.json")

    def check(self, scratch: Path) -> None:
        json.loads((scratch / "status.json").read_text(encoding="utf-8"))


# -- running --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Results:
    runs: dict[str, list[Measured]] = field(default_factory=dict)

    def seconds(self, key: str) -> float:
        return median([m.seconds for m in self.runs[key]])


def measure_once(tool: Tool, scratch: Path, dropper: CacheDropper) -> Measured:
    scratch.mkdir(parents=True)
    try:
        tool.prepare(scratch)
        dropper.drop(tool.data.paths())
        seconds, peak = tool.timed(scratch)
        sync_seconds = timed_sync()
        tool.check(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Measured(seconds=seconds, peak_rss=peak, sync_seconds=sync_seconds,
                    cpu_seconds=tool.cpu)


def measure(tools: list[Tool], repeat: int, run_dir: Path, dropper: CacheDropper) -> Results:
    results = Results(runs={t.key: [] for t in tools})
    for round_ in range(1, repeat + 1):
        for tool in tools:
            m = measure_once(tool, run_dir / tool.key, dropper)
            results.runs[tool.key].append(m)
            say(f"round {round_}/{repeat}: {tool.key:<13} {m.seconds:6.2f} s "
                f"(+ sync {m.sync_seconds:.2f} s)")
    return results


@dataclass(frozen=True, kw_only=True)
class MemoryRun:
    recorder: str
    files: int
    bytes: int
    seconds: float
    peak_rss: int
    cpu_seconds: float | None = None


def memory_flatness(data: Dataset, run_dir: Path, dropper: CacheDropper,
                    repeat: int) -> list[MemoryRun]:
    """ingestd's peak RSS on one very large file and on many small ones (one run each), and
    the start-up floor (median of ``repeat`` runs, as it is short and noisy)."""
    out: list[MemoryRun] = []
    for name, kinds, largest in (("one large clip", {"clip"}, True),
                                 ("many small photos", {"photo"}, False),
                                 ("none (start-up floor: ingestd status)", set(), False)):
        root = run_dir / "recorders" / str(len(out))
        sub = data.subset(root, kinds, largest_only=largest, limit=FLAT_SMALL_FILES)
        tool = Ingestd(sub) if sub.files else IngestdStartup(sub)
        runs = [measure_once(tool, run_dir / "memory", dropper)
                for _ in range(1 if sub.files else repeat)]
        seconds = median([m.seconds for m in runs])
        peak = max(m.peak_rss or 0 for m in runs)
        cpu = [m.cpu_seconds for m in runs if m.cpu_seconds is not None]
        out.append(MemoryRun(recorder=name, files=len(sub.files), bytes=sub.total,
                             seconds=seconds, peak_rss=peak,
                             cpu_seconds=median(cpu) if cpu else None))
        say(f"memory: {name}: peak RSS {fmt_bytes(peak)} in {seconds:.2f} s")
    return out


def cpu_of_two_clips(run_dir: Path, dropper: CacheDropper, repeat: int) -> dict[str, Any]:
    """The CPU (user + system of the whole command) to ingest 1 GiB in two 512 MiB clips,
    median of ``repeat`` cold runs: what decides how many recorders two cores can serve."""
    data = _generate(run_dir / "two-clips", [512 * MiB, 512 * MiB], [])
    runs = [measure_once(Ingestd(data), run_dir / "two-clips-run", dropper)
            for _ in range(repeat)]
    cpu = median([m.cpu_seconds for m in runs if m.cpu_seconds is not None])
    seconds = median([m.seconds for m in runs])
    say(f"cpu: two 512 MiB clips: {cpu:.2f} s user + system in {seconds:.2f} s")
    return {"cpu_s": cpu, "seconds": seconds, "bytes": data.total,
            "runs_cpu_s": [m.cpu_seconds for m in runs]}


# -- the report -----------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _tool_rows(data: Dataset, tools: list[Tool], results: Results) -> list[dict[str, Any]]:
    base = results.seconds("ingestd")
    rows: list[dict[str, Any]] = []
    for tool in tools:
        runs = results.runs[tool.key]
        seconds = results.seconds(tool.key)
        peaks = [m.peak_rss for m in runs if m.peak_rss is not None]
        cpu = [m.cpu_seconds for m in runs if m.cpu_seconds is not None]
        rows.append({
            "tool": tool.key, "label": tool.label, "median_s": seconds,
            "runs_s": [m.seconds for m in runs], "mb_per_s": data.total / seconds / 1e6,
            "vs_ingestd": seconds / base,
            "sync_after_s": median([m.sync_seconds for m in runs]),
            "peak_rss_bytes": max(peaks) if peaks else None,
            "cpu_s": median(cpu) if cpu else None,
        })
    twice = 2 * results.seconds("hashlib")
    hash_cpu = rows[-1]["cpu_s"] if rows[-1]["tool"] == "hashlib" else None
    rows.append({"tool": "hashlib_twice", "label": "hashlib SHA-256, twice (2 x one pass)",
                 "median_s": twice, "runs_s": [], "mb_per_s": data.total / twice / 1e6,
                 "vs_ingestd": twice / base, "sync_after_s": None, "peak_rss_bytes": None,
                 "cpu_s": 2 * hash_cpu if hash_cpu is not None else None})
    return rows


def _memory_rows(data: Dataset, memory: list[MemoryRun],
                 mix: dict[str, Any]) -> list[dict[str, Any]]:
    whole = MemoryRun(recorder="the whole mix (timed runs; max)", files=len(data.files),
                      bytes=data.total, seconds=mix["median_s"], peak_rss=mix["peak_rss_bytes"])
    runs = [*memory, whole]
    floor = memory[-1].seconds  # the start-up run
    return [{**asdict(m), "mb_per_s": m.bytes / m.seconds / 1e6 if m.files else None,
             "ms_per_file_beyond_startup":
                 1000 * (m.seconds - floor) / m.files if m.files else None} for m in runs]


def build_report(data: Dataset, tools: list[Tool], results: Results, memory: list[MemoryRun],
                 *, repeat: int, dropper: CacheDropper, notes: list[str],
                 machine: dict[str, Any], two_clips: dict[str, Any]) -> dict[str, Any]:
    rows = _tool_rows(data, tools, results)
    base = rows[0]["median_s"]
    twice = rows[-1]["median_s"]
    aims: dict[str, dict[str, Any]] = {
        "ingestd_vs_hash_twice": {"ratio": base / twice, "aim": f"<= {AIM_HASH_TWICE}",
                                  "met": base / twice <= AIM_HASH_TWICE}}
    if "rsync" in results.runs:
        # rsync leaves its writing to the kernel: its time is counted with the sync after it,
        # as ingestd's includes its fsyncs. Medians of the rounds' sums.
        rsync = median([m.seconds + m.sync_seconds for m in results.runs["rsync"]])
        ratio = base / rsync
        aims["ingestd_vs_rsync_and_sync"] = {"ratio": ratio, "aim": f"<= {AIM_RSYNC}",
                                             "met": ratio <= AIM_RSYNC}
    context: list[str] = []
    if "proven_copy" in results.runs:
        proven = results.seconds("proven_copy")
        context.append(f"ingestd / the proven copy alone: {base / proven:.2f}x (what ingestd "
                       "adds to it: catalog, signed entries, probes, start-up)")
        if "rsync" in results.runs:
            context.append(f"the proven copy alone / rsync + sync: {proven / rsync:.2f}x "
                           "(what proving every copy costs on this disk)")
    per_gib = two_clips["cpu_s"] / (two_clips["bytes"] / GiB)
    mix = rows[0]["cpu_s"]
    aims["cpu_per_gib"] = {
        "seconds": per_gib, "aim": f"<= {AIM_CPU_PER_GIB} s", "met": per_gib <= AIM_CPU_PER_GIB,
        "text": f"{per_gib:.2f} s user + system per GiB, two 512 MiB clips, start-up included"
                + ("" if mix is None else
                   f" (the whole mix: {mix / (data.total / GiB):.2f} s per GiB, its "
                   f"{len(data.files)} files' own work included)")}
    large, small = memory[0], memory[1]
    diff = large.peak_rss - small.peak_rss
    aims["peak_memory_flat"] = {
        "difference_bytes": diff, "aim": f"|one large - many small| <= {fmt_bytes(AIM_FLAT)}",
        "met": abs(diff) <= AIM_FLAT,
        "text": f"{fmt_bytes(large.peak_rss)} for one {fmt_bytes(large.bytes)} file, "
                f"{fmt_bytes(small.peak_rss)} for {small.files} small files"}
    ingestd = next(t for t in tools if isinstance(t, Ingestd))
    return {
        "benchmark": "ingest", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine, "repeat": repeat,
        "page_cache": {"method": dropper.method, "note": dropper.describe()},
        "data": {"description": data.describe(), "bytes": data.total, "files": len(data.files),
                 "note": DATA_NOTE},
        "ingestd_flags": dict(ingestd.flags), "tools": rows, "aims": aims, "context": context,
        "memory": _memory_rows(data, memory, rows[0]), "cpu_two_clips": two_clips,
        "notes": notes,
    }


def _aim_lines(aims: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, aim in aims.items():
        if name == "cpu_per_gib":
            out.append(f"ingestd CPU: {aim['text']} (aim {aim['aim']}: {_verdict(aim['met'])})")
        elif "ratio" in aim:
            other = name.removeprefix("ingestd_vs_").replace("_and_", " + ").replace("_", " ")
            out.append(f"ingestd / {other}: {aim['ratio']:.2f}x "
                       f"(aim {aim['aim']}: {_verdict(aim['met'])})")
        else:
            out.append(f"ingestd peak memory: {aim['text']} "
                       f"(aim {aim['aim']}: {_verdict(aim['met'])})")
    return out


def render(report: dict[str, Any]) -> str:
    rows = []
    for r in report["tools"]:
        runs = " ".join(f"{s:.2f}" for s in r["runs_s"]) or "(derived)"
        rows.append([r["label"], f"{r['median_s']:.2f}", f"{r['mb_per_s']:.0f}",
                     f"{r['vs_ingestd']:.2f}x",
                     "" if r["sync_after_s"] is None else f"{r['sync_after_s']:.2f}",
                     "" if r["peak_rss_bytes"] is None else fmt_bytes(r["peak_rss_bytes"]),
                     "" if r["cpu_s"] is None else f"{r['cpu_s']:.2f}",
                     runs])
    memory = [[m["recorder"], str(m["files"]), fmt_bytes(m["bytes"]) if m["files"] else "",
               f"{m['seconds']:.2f}", "" if m["mb_per_s"] is None else f"{m['mb_per_s']:.0f}",
               "" if m["ms_per_file_beyond_startup"] is None
               else f"{m['ms_per_file_beyond_startup']:.1f}",
               fmt_bytes(m["peak_rss"]),
               "" if m["cpu_seconds"] is None or not m["files"]
               else f"{m['cpu_seconds'] / (m['bytes'] / GiB):.2f}"] for m in report["memory"]]
    flags = ", ".join(f"{k} x{v}" for k, v in sorted(report["ingestd_flags"].items()))
    mach = report["machine"]
    return "\n".join([
        f"ingest benchmark: {report['data']['description']}, "
        f"median of {report['repeat']} rounds",
        f"page cache: {report['page_cache']['note']}",
        f"machine: {mach['cpus']} CPUs, 1-minute load average {mach['load_average_start']:.2f} "
        f"at the start, {mach['load_average_end']:.2f} at the end (other work skews times; "
        "compare ratios within one run)",
        report["data"]["note"], "",
        table(["tool", "median s", "MB/s", "time vs ingestd", "sync after s", "peak RSS",
               "CPU s", "runs s"], rows,
              right=[False, True, True, True, True, True, True, False]), "",
        *_aim_lines(report["aims"]), *report["context"], "",
        "ingestd alone on parts of the recorder (cold cache; one run each, the start-up "
        "floor the median of --repeat runs; peak RSS is the high-water mark from wait4, as "
        "/usr/bin/time -v reports it):",
        table(["recorder", "files", "bytes", "seconds", "MB/s", "ms/file beyond start-up",
               "peak RSS", "CPU s/GiB"], memory,
              right=[False, True, True, True, True, True, True, True]), "",
        f"ingestd flags on the items: {flags or 'none'}", "", "notes:",
        *(f"- {n}" for n in report["notes"]),
    ])


NOTES = [
    "each round runs every tool once, in turn; every run starts from a cold page cache "
    "after `sync`, and its result is checked (ingestd's and sha256sum's hashes against the "
    "recorder's, the copies' file sizes) outside the timing",
    "ingestd is timed as a user runs it (the whole `ingestd ingest DIR --serial S --json` "
    "command, Python start-up included) in a fresh home made by `ingestd init` and "
    "`devices add` beforehand",
    "ingestd fsyncs every object and reads it back from disk before calling it stored; "
    "cp, rsync and rclone do not fsync: 'sync after s' is the `sync` that follows each run, "
    "the writing they left to the kernel (not in 'median s')",
    "sha256sum reads source and copy just after cp, so mostly from the page cache",
    "'hashlib twice' is 2 x the one-pass median, not a run of its own",
    "'the proven copy alone' is this benchmark's own loop in Python, one file at a time in "
    "one thread, 4 MiB at a time (ingestd's default buffer): read and SHA-256, write with "
    "O_DIRECT, fsync, read back with O_DIRECT and SHA-256 again, compare, rename, fsync the "
    "folder. Every guarantee ingestd gives a stored byte, none of its bookkeeping (catalog, "
    "signed entries, probes)",
    "peak RSS: ru_maxrss of the command's process tree (the largest single process: for "
    "ingestd, itself or an ffprobe it ran)",
    "CPU s: user + system time of the command and the children it waited for (ffprobe, "
    "sha256sum), from wait4; for hashlib, this process's own",
]


# -- the command ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gib", type=float, default=2.0,
                   help="total size of the simulated recorder (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown (default 3)")
    p.add_argument("--small-files", type=int, default=300,
                   help="photo-sized files of 200-500 KiB (default 300)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK,
                   help=f"work folder (default {DEFAULT_WORK})")
    p.add_argument("--drop-data", action="store_true",
                   help="remove the cached recorder at the end too")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.size_gib <= 0 or args.small_files < 0:
        p.error("--repeat must be at least 1, --size-gib above 0, --small-files not negative")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    ensure_debian_packages(["rsync"], required=True)
    notes = list(NOTES)
    if ensure_debian_packages(["rclone"], required=False):
        notes.append("rclone is not installed (apt-get install rclone): its row is left out")
    work: Path = args.work.resolve()
    data = load_or_build(work, int(args.size_gib * GiB), args.small_files)
    need_space(work, copy_space(data.total) + 2 * GiB,
               "one copy of the recorder, and two 512 MiB clips ingested")
    dropper = CacheDropper()
    tools: list[Tool] = [Ingestd(data), CpSha256sum(data), Rsync(data)]
    if shutil.which("rclone"):
        tools.append(Rclone(data))
    tools += [ProvenCopy(data), Hashlib(data)]  # hashlib last: "twice" is derived from it
    run_dir = work / f"run-{os.getpid()}"
    try:
        results = measure(tools, args.repeat, run_dir, dropper)
        memory = memory_flatness(data, run_dir, dropper, args.repeat)
        two_clips = cpu_of_two_clips(run_dir, dropper, args.repeat)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.drop_data:
            shutil.rmtree(work / "data", ignore_errors=True)
    notes.append(f"the benchmark took {time.perf_counter() - started:.0f} s")
    machine = {"cpus": os.cpu_count(), "load_average_start": load_start,
               "load_average_end": os.getloadavg()[0]}
    return build_report(data, tools, results, memory, repeat=args.repeat, dropper=dropper,
                        notes=notes, machine=machine, two_clips=two_clips)


def main(argv: list[str]) -> int:
    return bench_main("ingest", argv, parse_args, run, render)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
