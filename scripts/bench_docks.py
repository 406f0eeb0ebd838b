"""`scripts/bench docks`: eight recorders docked at once against one alone, through the
daemon's own path (`ingestd --home H run --once`: every recorder folder under the watched root
is served, up to ``[docks] max_parallel_recorders`` at a time), in the same run, each run
from a cold page cache in a fresh home.

The recorders are built once and cached under ``WORK/data-docks/`` (``--drop-data`` removes
them): each is a folder ``SERIAL/DCIM/100MEDIA/`` holding a few clips and some photos, every
clip a real H.264 clip made by ffmpeg followed by random bytes up to its size, every photo a
real JPEG followed by random bytes. Every file of every recorder is distinct content (nothing
is deduplicated), and all recorders hold the same number of bytes, so that a fair station
finishes them together. Each round docks one recorder alone, then all of them at once; one
more run docks all of them with ``max_parallel_recorders = 1`` (one after another).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    DEFAULT_WORK,
    JPEG_END,
    VENV_BIN,
    BenchError,
    CacheDropper,
    GiB,
    Measured,
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
    run_measured_cpu,
    run_quiet,
    run_timed,
    say,
    seed_media,
    table,
    timed_sync,
    write_padded,
)

FORMAT = 2  # bump when the generated data changes: the cache is keyed by it
CLIP_WEIGHTS = (3, 2, 1)  # clips of one recorder: the largest is half its clip bytes
SMALL_MIN, SMALL_MAX = 200 * 1024, 500 * 1024
RECORDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
INGESTD = VENV_BIN / "ingestd"
DATA_NOTE = ("data: each clip is a real 10 s 720p H.264/AAC MP4 (ffmpeg) followed by random "
             "bytes, each photo a real JPEG, random bytes, and a JPEG end marker: valid headers "
             "(ffprobe reads the clips; ingestd finds the photos whole), distinct content, not "
             "valid media throughout (copy+hash does not care)")
FAIRNESS = ("fairness: all recorders were docked at the same moment and each holds the same "
            "bytes, so a fair station finishes them together. A recorder's finishing time is "
            "taken from the first dock session's start (docked_at) to its own session's "
            "finished_at (the catalog's dock sessions); divided by the recorder's size "
            "(s/GB) it compares recorders of any size. max/min near 1 is fair; with one "
            "recorder at a time it approaches the number of recorders (the last waits for all "
            "the others)")


def serial_of(index: int) -> str:
    return f"BENCH-DOCK-{index:02d}"


# -- the simulated recorders ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataFile:
    rel: str  # relative to the recorder's root
    size: int
    sha256: str
    kind: str  # "clip" | "photo"


@dataclass(frozen=True, kw_only=True)
class Recorder:
    serial: str
    root: Path
    files: tuple[DataFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def paths(self) -> list[Path]:
        return [self.root / f.rel for f in self.files]


@dataclass(frozen=True, kw_only=True)
class Fleet:
    recorders: tuple[Recorder, ...]

    @property
    def total(self) -> int:
        return sum(r.total for r in self.recorders)

    def paths(self) -> list[Path]:
        return [p for r in self.recorders for p in r.paths()]

    def describe(self) -> str:
        one = self.recorders[0]
        clips = [f.size for f in one.files if f.kind == "clip"]
        photos = [f.size for f in one.files if f.kind == "photo"]
        return (f"{len(self.recorders)} recorders of {fmt_bytes(one.total)} each "
                f"({len(clips)} clips of {fmt_bytes(min(clips))}–{fmt_bytes(max(clips))} and "
                f"{len(photos)} photos of {fmt_bytes(min(photos))}–{fmt_bytes(max(photos))}), "
                f"{fmt_bytes(self.total)} in all")


def plan_sizes(total: int, photos: int) -> tuple[list[int], list[int]]:
    """(clip sizes, photo sizes) of one recorder adding up to ``total``; every recorder the
    same, so that they all hold the same bytes."""
    rng = random.Random(f"ingestd-bench-docks-{FORMAT}-{photos}")
    photo_sizes = [rng.randint(SMALL_MIN, SMALL_MAX) for _ in range(photos)]
    clips_total = total - sum(photo_sizes)
    if clips_total < 16 * MiB:
        raise BenchError(f"{fmt_bytes(total)} per recorder is too small for {photos} photos "
                         "and the clips: raise --size-mib or lower --photos")
    unit = clips_total // sum(CLIP_WEIGHTS)
    clips = [unit * w for w in CLIP_WEIGHTS]
    clips[0] += clips_total - sum(clips)
    return clips, photo_sizes


def _build(folder: Path, count: int, clip_sizes: list[int], photo_sizes: list[int]) -> None:
    seed_clip, seed_photo = seed_media(folder / "seed", RECORDED)
    shutil.rmtree(folder / "seed")
    manifest: dict[str, Any] = {"format": FORMAT, "recorders": []}
    for r in range(1, count + 1):
        serial = serial_of(r)
        root = folder / "recorders" / serial
        files: list[DataFile] = []
        start = RECORDED + timedelta(days=r)  # each recorder its own shift
        local = start + timedelta(hours=8)  # recorders name files by local time
        for i, size in enumerate(clip_sizes, start=1):
            rel = f"DCIM/100MEDIA/{local + timedelta(minutes=15 * i):%Y%m%d_%H%M%S}_{i:04d}.MP4"
            mtime = (start + timedelta(minutes=15 * i)).timestamp()
            files.append(DataFile(rel=rel, size=size, kind="clip",
                                  sha256=write_padded(root / rel, seed_clip, size, mtime)))
        for i, size in enumerate(photo_sizes, start=1):
            rel = f"DCIM/100MEDIA/IMG_{i:04d}.JPG"
            mtime = (start + timedelta(seconds=30 * i)).timestamp()
            files.append(DataFile(rel=rel, size=size, kind="photo",
                                  sha256=write_padded(root / rel, seed_photo, size, mtime,
                                                      tail=JPEG_END)))
        manifest["recorders"].append({"serial": serial,
                                      "files": [asdict(f) for f in files]})
        say(f"built recorder {r} of {count}")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _read(folder: Path) -> Fleet:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return Fleet(recorders=tuple(
        Recorder(serial=r["serial"], root=folder / "recorders" / r["serial"],
                 files=tuple(DataFile(**f) for f in r["files"]))
        for r in manifest["recorders"]))


def _valid(folder: Path) -> bool:
    try:
        fleet = _read(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(p.is_file() and p.stat().st_size == f.size
               for r in fleet.recorders for p, f in zip(r.paths(), r.files, strict=True))


def load_or_build(work: Path, count: int, size: int, photos: int) -> Fleet:
    clip_sizes, photo_sizes = plan_sizes(size, photos)  # first: it checks the arguments
    name = f"{count}x{size}B-{photos}photos-v{FORMAT}"
    # Not WORK/data: `bench ingest` removes whatever else it finds there when it rebuilds.
    need = count * size * 2 + 512 * MiB  # the recorders and one station's copy of them
    folder = cached_build(work / "data-docks", name, need,
                          lambda f: _build(f, count, clip_sizes, photo_sizes), _valid)
    return _read(folder)


# -- one docking run ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Scenario:
    key: str
    label: str
    recorders: tuple[Recorder, ...]
    parallel: int  # [docks] max_parallel_recorders

    @property
    def total(self) -> int:
        return sum(r.total for r in self.recorders)

    def paths(self) -> list[Path]:
        return [p for r in self.recorders for p in r.paths()]


@dataclass(frozen=True, kw_only=True)
class Session:
    serial: str
    bytes: int
    wait_s: float  # from the first session's start to this one's start
    service_s: float  # this session's own docked_at to finished_at
    finish_s: float  # from the first session's start to this one's finished_at


@dataclass(kw_only=True)
class Run:
    measured: Measured
    sessions: list[Session]
    flags: Counter[str] = field(default_factory=Counter)

    @property
    def span_s(self) -> float:
        """First session's start to the last one's end: the docking, without start-up."""
        return max(s.finish_s for s in self.sessions)


def make_template(home: Path, count: int) -> None:
    """A home with every bench recorder registered; each run starts from a copy of it."""
    run_quiet([INGESTD, "--home", home, "init", "--station", "bench-docks"])
    for r in range(1, count + 1):
        run_quiet([INGESTD, "--home", home, "devices", "add", serial_of(r),
                   "--officer", f"Bench Officer {r}", "--officer-id", f"B-{r:04d}"])


def _config(root: Path, parallel: int) -> str:
    return (f'station = "bench-docks"\n\n[docks]\nwatch_root = {json.dumps(str(root))}\n'
            f"max_parallel_recorders = {parallel}\n\n"
            "[scheduler]\naudit_sample = 0\n")


def prepare(scenario: Scenario, template: Path, scratch: Path) -> Path:
    """A fresh home (a copy of the template) watching a root that holds the scenario's
    recorders (hard links to the cached files: no bytes copied)."""
    home = scratch / "home"
    shutil.copytree(template, home, symlinks=True)
    root = scratch / "docked"
    for rec in scenario.recorders:
        for f in rec.files:
            dest = root / rec.serial / f.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(rec.root / f.rel, dest)
    (home / "ingestd.toml").write_text(_config(root, scenario.parallel), encoding="utf-8")
    return home


def _json_of(argv: list[str | os.PathLike[str]], out: Path) -> Any:
    run_timed(argv, stdout=out)
    return json.loads(out.read_text(encoding="utf-8"))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sessions(home: Path) -> list[dict[str, Any]]:
    """Every dock session in the home's catalog (``status --json`` shows only the last ten)."""
    con = sqlite3.connect(f"file:{home / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(
            "SELECT serial, state, docked_at, finished_at, files_new, files_failed, "
            "bytes_copied, error FROM dock_sessions ORDER BY id")]
    finally:
        con.close()


def check(scenario: Scenario, home: Path, scratch: Path) -> Run:
    """Every recorder's session done, every file stored with its hash; the sessions' times."""
    listed = _json_of([INGESTD, "--home", home, "items", "--json"], scratch / "items.json")
    by_serial = {r.serial: r for r in scenario.recorders}
    docks = _sessions(home)
    bad = [d for d in docks if d["serial"] not in by_serial or d["state"] != "done"
           or d["files_failed"] or d["error"]
           or d["files_new"] != len(by_serial[d["serial"]].files)
           or d["bytes_copied"] != by_serial[d["serial"]].total]
    if len(docks) != len(by_serial) or {d["serial"] for d in docks} != set(by_serial) or bad:
        raise BenchError(f"{scenario.key}: {len(docks)} dock sessions for "
                         f"{len(by_serial)} recorders; not as expected: {bad[:2]}")
    got = {(i["recorder"], i["sha256"]) for i in listed["items"]}
    want = {(r.serial, f.sha256) for r in scenario.recorders for f in r.files}
    if got != want:
        raise BenchError(f"{scenario.key}: the catalog holds {len(got)} items, "
                         f"{len(got & want)} of the {len(want)} expected")
    t0 = min(_when(d["docked_at"]) for d in docks)
    sessions = [Session(serial=d["serial"], bytes=by_serial[d["serial"]].total,
                        wait_s=(_when(d["docked_at"]) - t0).total_seconds(),
                        service_s=(_when(d["finished_at"]) - _when(d["docked_at"]))
                        .total_seconds(),
                        finish_s=(_when(d["finished_at"]) - t0).total_seconds())
                for d in docks]
    flags = Counter(flag for i in listed["items"] for flag in i["flags"])
    return Run(measured=Measured(seconds=0, peak_rss=None, sync_seconds=0),
               sessions=sorted(sessions, key=lambda s: s.serial), flags=flags)


def measure_once(scenario: Scenario, template: Path, scratch: Path,
                 dropper: CacheDropper) -> Run:
    scratch.mkdir(parents=True)
    try:
        home = prepare(scenario, template, scratch)
        dropper.drop(scenario.paths())
        seconds, peak, cpu = run_measured_cpu([INGESTD, "--home", home, "run", "--once"],
                                              stdout=scratch / "run.out")
        sync_seconds = timed_sync()
        run = check(scenario, home, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.measured = Measured(seconds=seconds, peak_rss=peak, sync_seconds=sync_seconds,
                            cpu_seconds=cpu)
    return run


def measure(scenarios: list[Scenario], sequential: Scenario, repeat: int, template: Path,
            run_dir: Path, dropper: CacheDropper, seen: set[str]) -> dict[str, list[Run]]:
    """``repeat`` rounds of every scenario in turn; the sequential run once, in the middle
    round (it is long, and in the middle it meets the same drift as the others)."""
    runs: dict[str, list[Run]] = {s.key: [] for s in [*scenarios, sequential]}
    middle = (repeat + 1) // 2
    for round_ in range(1, repeat + 1):
        todo = [*scenarios, sequential] if round_ == middle else scenarios
        for scenario in todo:
            seen.update(other_benchmarks())
            run = measure_once(scenario, template, run_dir / scenario.key, dropper)
            seen.update(other_benchmarks())
            runs[scenario.key].append(run)
            finish = [s.finish_s for s in run.sessions]
            say(f"round {round_}/{repeat}: {scenario.key:<10} {run.measured.seconds:6.2f} s "
                f"(+ sync {run.measured.sync_seconds:.2f} s; recorders finished "
                f"{min(finish):.2f}–{max(finish):.2f} s after the first dock)")
    return runs


# -- the report -----------------------------------------------------------------------------


def _median_run(runs: list[Run]) -> Run:
    """The run whose time is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.measured.seconds)
    return ordered[(len(ordered) - 1) // 2]


def _spread(run: Run) -> dict[str, Any]:
    finish = [s.finish_s for s in run.sessions]
    per_gb = [s.finish_s / (s.bytes / 1e9) for s in run.sessions]
    low = min(finish)
    return {
        "finish_min_s": low, "finish_median_s": median(finish), "finish_max_s": max(finish),
        "max_over_min": max(finish) / low if low > 0 else None,
        "median_over_min": median(finish) / low if low > 0 else None,
        "s_per_gb_min": min(per_gb), "s_per_gb_max": max(per_gb),
        "s_per_gb_max_over_min": max(per_gb) / min(per_gb) if min(per_gb) > 0 else None,
        "service_median_s": median([s.service_s for s in run.sessions]),
        "span_s": run.span_s,
    }


def _cpu_per_gib(runs: list[Run], total: int) -> float | None:
    """The median run's CPU (user + system, ffprobe included) per GiB docked."""
    cpus = [r.measured.cpu_seconds for r in runs if r.measured.cpu_seconds is not None]
    return median(cpus) / (total / GiB) if cpus else None


def build_report(fleet: Fleet, scenarios: list[Scenario], runs: dict[str, list[Run]], *,
                 repeat: int, dropper: CacheDropper, notes: list[str],
                 machine: dict[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for scenario in scenarios:
        got = runs[scenario.key]
        seconds = median([r.measured.seconds for r in got])
        span = median([r.span_s for r in got])
        peaks = [r.measured.peak_rss for r in got if r.measured.peak_rss is not None]
        rows.append({
            "run": scenario.key, "label": scenario.label, "recorders": len(scenario.recorders),
            "max_parallel_recorders": scenario.parallel, "bytes": scenario.total,
            "median_s": seconds, "runs_s": [r.measured.seconds for r in got],
            "mb_per_s": scenario.total / seconds / 1e6,
            "docking_span_s": span, "docking_mb_per_s": scenario.total / span / 1e6,
            "sync_after_s": median([r.measured.sync_seconds for r in got]),
            "peak_rss_bytes": max(peaks) if peaks else None,
            "cpu_s_per_gib": _cpu_per_gib(got, scenario.total),
            "spread": _spread(_median_run(got)),
            "spread_max_over_min_all_runs": [_spread(r)["max_over_min"] for r in got],
            "sessions": [asdict(s) for s in _median_run(got).sessions],
        })
    by = {r["run"]: r for r in rows}
    one, many, seq = by["one"], by["parallel"], by["sequential"]
    ratios = {
        "throughput_parallel_over_one": many["mb_per_s"] / one["mb_per_s"],
        "docking_throughput_parallel_over_one":
            many["docking_mb_per_s"] / one["docking_mb_per_s"],
        "time_sequential_over_parallel": seq["median_s"] / many["median_s"],
        "recorder_finish_parallel_median_over_alone":
            many["spread"]["finish_median_s"] / one["spread"]["finish_max_s"],
    }
    flags: Counter[str] = Counter()
    for r in runs["parallel"][:1]:
        flags.update(r.flags)
    return {
        "benchmark": "docks", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine, "code": code_state(), "repeat": repeat,
        "page_cache": {"method": dropper.method, "note": dropper.describe()},
        "data": {"description": fleet.describe(), "bytes": fleet.total,
                 "recorders": len(fleet.recorders), "note": DATA_NOTE},
        "runs": rows, "ratios": ratios, "fairness": FAIRNESS,
        "ingestd_flags_parallel_run": dict(flags), "notes": notes,
    }


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "" if value is None else f"{value:.{digits}f}{suffix}"


def render(report: dict[str, Any]) -> str:
    rows = []
    base = report["runs"][0]["mb_per_s"]
    for r in report["runs"]:
        rows.append([r["label"], str(r["recorders"]), str(r["max_parallel_recorders"]),
                     f"{r['median_s']:.2f}", f"{r['mb_per_s']:.0f}",
                     f"{r['mb_per_s'] / base:.2f}x", f"{r['docking_mb_per_s']:.0f}",
                     f"{r['sync_after_s']:.2f}",
                     "" if r["peak_rss_bytes"] is None else fmt_bytes(r["peak_rss_bytes"]),
                     _f(r.get("cpu_s_per_gib")),
                     " ".join(f"{s:.2f}" for s in r["runs_s"])])
    spread = []
    for r in report["runs"]:
        s = r["spread"]
        spread.append([r["label"], _f(s["finish_min_s"]), _f(s["finish_median_s"]),
                       _f(s["finish_max_s"]), _f(s["median_over_min"], suffix="x"),
                       _f(s["max_over_min"], suffix="x"),
                       f"{s['s_per_gb_min']:.2f}–{s['s_per_gb_max']:.2f}",
                       _f(s["service_median_s"]),
                       " ".join(_f(x, suffix="x") for x in r["spread_max_over_min_all_runs"])])
    by = {r["run"]: r for r in report["runs"]}
    per = []
    for p, q in zip(by["parallel"]["sessions"], by["sequential"]["sessions"], strict=True):
        per.append([p["serial"], fmt_bytes(p["bytes"]), _f(p["finish_s"]),
                    _f(p["finish_s"] / (p["bytes"] / 1e9)), _f(q["wait_s"]), _f(q["service_s"]),
                    _f(q["finish_s"]), _f(q["finish_s"] / (q["bytes"] / 1e9))])
    ratios = report["ratios"]
    flags = ", ".join(f"{k} x{v}" for k, v in sorted(report["ingestd_flags_parallel_run"].items()))
    return "\n".join([
        f"docks benchmark: {report['data']['description']}; median of {report['repeat']} rounds "
        "(the one-at-a-time run: once)",
        f"page cache: {report['page_cache']['note']}",
        machine_line(report["machine"]),
        f"code: {report['code']}",
        report["data"]["note"], "",
        table(["ingestd --home H run --once", "recorders", "parallel", "median s", "MB/s",
               "MB/s vs 1 alone", "docking MB/s", "sync after s", "peak RSS", "CPU s/GiB",
               "runs s"], rows,
              right=[False, True, True, True, True, True, True, True, True, True, False]), "",
        f"aggregate throughput, {by['parallel']['recorders']} docked at once / 1 alone: "
        f"{ratios['throughput_parallel_over_one']:.2f}x (command time); "
        f"{ratios['docking_throughput_parallel_over_one']:.2f}x (docking span only)",
        f"{by['parallel']['recorders']} recorders one at a time / all at once: "
        f"{ratios['time_sequential_over_parallel']:.2f}x the time",
        "a recorder docked with the others finishes (median) "
        f"{ratios['recorder_finish_parallel_median_over_alone']:.2f}x later than alone", "",
        FAIRNESS + ".",
        "finishing times (s after the first dock session opened; the median-time run of each):",
        table(["run", "min", "median", "max", "median/min", "max/min", "s per GB",
               "median in session s", "max/min of every run"], spread,
              right=[False, True, True, True, True, True, True, True, False]), "",
        "each recorder (the median-time run at once, and the one-at-a-time run: waiting for "
        "its turn, in its session, finished):",
        table(["recorder", "bytes", "at once: finished s", "s per GB",
               "one at a time: waited s", "in session s", "finished s", "s per GB"], per,
              right=[False, True, True, True, True, True, True, True]), "",
        f"ingestd flags on the items (one run at once): {flags or 'none'}", "", "notes:",
        *(f"- {n}" for n in report["notes"]),
    ])


NOTES = [
    "each run: a fresh home (a copy of one made by `ingestd init` and `devices add` for every "
    "recorder, before any timing), a watched root holding hard links to the cached recorders, "
    "`sync` and a dropped page cache; then `ingestd --home H run --once` is timed as a whole "
    "(Python start-up, recovery, scanning the root, every dock session, the jobs after it)",
    "the spot-check audit job that `run --once` runs after docking is off "
    "([scheduler] audit_sample = 0): it re-hashes and decodes random items, which is not "
    "docking; the window check still runs",
    "'docking MB/s' counts only from the first dock session's start to the last one's end "
    "(docked_at and finished_at of the dock sessions in the catalog, as status --json shows "
    "them): no start-up, no jobs",
    "ingestd fsyncs every object and reads it back from disk before calling it stored; "
    "'sync after s' is the `sync` after each run (ingestd leaves little to write)",
    "results are checked outside the timing: one done session per recorder with every file "
    "new and none failed, and the catalog's items (recorder, SHA-256) equal to the data's",
    "peak RSS: ru_maxrss of the command's process tree (the largest single process: ingestd "
    "itself, with all its dock threads, or an ffprobe it ran)",
    "CPU s/GiB: user + system time of the command and the children it waited for (ffprobe), "
    "per GiB docked, median of the runs",
]


# -- the command ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench docks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recorders", type=int, default=8,
                   help="recorders docked at once (default 8, the default "
                        "max_parallel_recorders)")
    p.add_argument("--size-mib", type=int, default=256,
                   help="bytes on each recorder, in MiB (default 256)")
    p.add_argument("--photos", type=int, default=20,
                   help="photo-sized files of 200-500 KiB on each recorder (default 20)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK,
                   help=f"work folder (default {DEFAULT_WORK})")
    p.add_argument("--drop-data", action="store_true",
                   help="remove the cached recorders at the end too")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.size_mib < 1 or args.photos < 0 or not 2 <= args.recorders <= 64:
        p.error("--repeat and --size-mib must be at least 1, --photos not negative, "
                "--recorders between 2 and 64")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    work: Path = args.work.resolve()
    fleet = load_or_build(work, args.recorders, args.size_mib * MiB, args.photos)
    if free_bytes(work) < int(1.1 * fleet.total) + 512 * MiB:
        raise BenchError(f"not enough free space in {work} for a station's copy of "
                         f"{fmt_bytes(fleet.total)}")
    dropper = CacheDropper()
    count = len(fleet.recorders)
    scenarios = [
        Scenario(key="one", label="1 recorder alone", recorders=fleet.recorders[:1],
                 parallel=count),
        Scenario(key="parallel", label=f"{count} recorders at once", recorders=fleet.recorders,
                 parallel=count),
    ]
    sequential = Scenario(key="sequential", label=f"{count} recorders, one at a time",
                          recorders=fleet.recorders, parallel=1)
    run_dir = work / f"run-docks-{os.getpid()}"
    try:
        template = run_dir / "template"
        make_template(template, count)
        seen: set[str] = set()
        runs = measure(scenarios, sequential, args.repeat, template, run_dir / "runs", dropper,
                       seen)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.drop_data:
            shutil.rmtree(work / "data-docks", ignore_errors=True)
    notes = [*NOTES, f"the benchmark took {time.perf_counter() - started:.0f} s"]
    if (note := concurrency_note(seen)) is not None:
        notes.append(note)
    return build_report(fleet, [*scenarios, sequential], runs, repeat=args.repeat,
                        dropper=dropper, notes=notes, machine=machine_info(load_start))


def main(argv: list[str]) -> int:
    return bench_main("docks", argv, parse_args, run, render)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
