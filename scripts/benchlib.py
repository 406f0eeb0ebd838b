"""What every `scripts/bench NAME` benchmark shares: timed runs of commands with their peak
memory, a cold page cache before each run, medians, and a plain-text table.

A benchmark is ``scripts/bench_NAME.py`` with a ``main(argv) -> int``; ``scripts/bench NAME``
runs ``scripts/setup`` and then that module with the venv's Python. Progress goes to stderr, so
that ``--json`` leaves stdout to the machine-readable result.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
DEFAULT_WORK = REPO / ".bench"  # git-ignored

MiB = 2**20
GiB = 2**30


def say(message: str) -> None:
    """Progress for the person watching; never on stdout."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A benchmark could not run or a tool produced a wrong result; the message says which."""


# -- tools ----------------------------------------------------------------------------------


def ensure_debian_packages(packages: Iterable[str], *, required: bool) -> list[str]:
    """Install the Debian packages whose command is missing (command name = package name).

    Returns the packages still missing. Raises when ``required`` and one cannot be installed.
    """
    missing = [p for p in packages if shutil.which(p) is None]
    if missing and os.geteuid() == 0:
        say(f"installing {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(cmd, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
            subprocess.run(cmd, capture_output=True, env=env, check=False)
        missing = [p for p in missing if shutil.which(p) is None]
    if missing and required:
        raise BenchError(f"needs {' '.join(missing)}: apt-get install {' '.join(missing)}")
    return missing


# -- a cold page cache ------------------------------------------------------------------------


class CacheDropper:
    """Empties the page cache before a timed run so that every tool reads from the disk.

    ``echo 3 > /proc/sys/vm/drop_caches`` (root) drops everything. Without it, the fallback is
    ``posix_fadvise(DONTNEED)`` on the files given, which evicts their clean pages only.
    """

    PROC = Path("/proc/sys/vm/drop_caches")

    def __init__(self) -> None:
        self.method = "drop_caches" if self._drop_all() else "fadvise"

    def _drop_all(self) -> bool:
        os.sync()
        try:
            self.PROC.write_text("3\n", encoding="ascii")
        except OSError:
            return False
        return True

    def describe(self) -> str:
        if self.method == "drop_caches":
            return "dropped before every timed run (echo 3 > /proc/sys/vm/drop_caches: worked)"
        return ("NOT fully dropped: /proc/sys/vm/drop_caches is not writable (not root?); "
                "fell back to posix_fadvise(DONTNEED) on the source files only")

    def drop(self, files: Iterable[Path]) -> None:
        """Flush dirty pages (so no writeback of an earlier run lands in this one), then drop."""
        os.sync()
        if self.method == "drop_caches" and self._drop_all():
            return
        self.method = "fadvise"
        for path in files:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- timed runs -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Measured:
    seconds: float
    peak_rss: int | None  # bytes; the largest single process of the command's tree
    sync_seconds: float  # the `sync` right after the run: dirty data the tool left behind
    cpu_seconds: float | None = None  # user + system, the command and the children it waited for


class BenchTimeout(BenchError):
    """A command did not finish within the time it was given, and was killed."""


def run_timed(argv: Sequence[str | os.PathLike[str]], *, stdout: Path,
              cwd: Path | None = None, env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> tuple[float, int]:
    """Run a command to its end; return wall seconds and its peak RSS in bytes.

    The peak is ``ru_maxrss`` from ``wait4`` (what ``/usr/bin/time -v`` reports): the
    high-water mark of the command or of the largest of the children it waited for.
    stdout goes to the file given; stderr to ``<stdout>.err``, quoted on failure. ``env``
    replaces the environment (default: this process's). After ``timeout`` seconds the command
    and what it started are killed and BenchTimeout is raised.
    """
    err_path = stdout.with_name(stdout.name + ".err")
    expired = threading.Event()
    with stdout.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([os.fspath(a) for a in argv], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
                                env=None if env is None else dict(env))

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, expire) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C or TERM: stop the command and what it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if expired.is_set() and proc.returncode == -signal.SIGKILL:
        raise BenchTimeout(f"{' '.join(map(str, argv))} did not finish in {timeout:.0f} s "
                           "and was killed")
    if proc.returncode != 0:
        tail = err_path.read_text(encoding="utf-8", errors="replace").strip()[-1500:]
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{tail}")
    return seconds, usage.ru_maxrss * 1024


# A launcher whose own memory is small (python -I -S: about 8 MiB): it forks the command,
# times it and reports the wait4 peak. Needed because a forked child's ru_maxrss starts at its
# parent's resident size (Linux records the old image's high-water mark at exec): a command
# started straight from a benchmark that holds a server (moto) or boto3 would seem to use
# what the benchmark uses.
_LEAN_LAUNCHER = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(out, "w") as fh:
    fh.write(f"{seconds!r} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime!r}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(argv: Sequence[str | os.PathLike[str]], *, stdout: Path,
                 cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 timeout: float | None = None) -> tuple[float, int]:
    """As ``run_timed``, with the peak RSS the command's own: it is started by a small
    launcher rather than forked from this (possibly large) process. The launcher's floor,
    about 8 MiB, stays: a command smaller than that reads as that."""
    seconds, peak, _cpu = run_measured_cpu(argv, stdout=stdout, cwd=cwd, env=env,
                                           timeout=timeout)
    return seconds, peak


def run_measured_cpu(argv: Sequence[str | os.PathLike[str]], *, stdout: Path,
                     cwd: Path | None = None, env: Mapping[str, str] | None = None,
                     timeout: float | None = None) -> tuple[float, int, float]:
    """As ``run_measured``, with the CPU seconds (user + system) of the command and of the
    children it waited for (ffprobe, ...)."""
    report = stdout.with_name(stdout.name + ".measured")
    try:
        run_timed([sys.executable, "-I", "-S", "-c", _LEAN_LAUNCHER, report, *argv],
                  stdout=stdout, cwd=cwd, env=env, timeout=timeout)
    except BenchError as exc:  # name the command, not the launcher
        text, marker = str(exc), f"{report} "
        text = text.split(marker, 1)[1] if marker in text else text
        raise type(exc)(text) from None
    seconds, maxrss_kib, cpu = report.read_text(encoding="ascii").split()
    return float(seconds), int(maxrss_kib) * 1024, float(cpu)


def run_quiet(argv: Sequence[str | os.PathLike[str]]) -> None:
    """An untimed preparation step; stops the benchmark with its output if it fails."""
    proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True, check=False)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()[-1500:]
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{out}")


def timed_sync() -> float:
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def self_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- numbers and tables ---------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_bytes(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / 1024:.0f} KiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          right: Sequence[bool] | None = None) -> str:
    """A plain-text table; ``right`` marks the columns aligned right (numbers)."""
    right = right or [False] * len(headers)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, right, strict=True)
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in cols]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


# -- generated recorders (shared by `bench docks` and `bench replicate`) -----------------------
# (bench_ingest keeps its own copies of these: it relies on them as they are.)


def write_padded(path: Path, head: bytes, size: int, mtime: float, *, tail: bytes = b"",
                 chunk: int = 4 * MiB) -> str:
    """``head``, random bytes, then ``tail``, ``size`` bytes in all; returns their SHA-256.

    Every file so made is distinct content (no deduplication) whose first bytes are real media
    (and whose last, with ``tail``, can be the end marker a whole photo has).
    """
    if size < len(head) + len(tail) + 4096:
        raise BenchError(f"{path.name}: {fmt_bytes(size)} leaves no room for random bytes "
                         f"after its {fmt_bytes(len(head))} of real media: choose larger sizes")
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(head)
        digest.update(head)
        left = size - len(head) - len(tail)
        while left:
            block = os.urandom(min(chunk, left))
            out.write(block)
            digest.update(block)
            left -= len(block)
        out.write(tail)
        digest.update(tail)
    os.utime(path, (mtime, mtime))
    return digest.hexdigest()


JPEG_END = b"\xff\xd9"  # a JPEG's end-of-image marker: ingestd flags a photo without it


def seed_media(folder: Path, recorded: datetime, seconds: float = 10) -> tuple[bytes, bytes]:
    """The bytes of one real 720p H.264/AAC clip (10 s: 9 MiB) and one real 1080p JPEG
    (114 KiB), made by ffmpeg."""
    from ingestd.simulate import make_clip  # only when data is built

    clip = make_clip(folder / "seed.mp4", seconds=seconds, size="1280x720", rate=30,
                     recorded=recorded)
    photo = folder / "seed.jpg"
    run_quiet(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
               "testsrc2=size=1920x1080", "-frames:v", "1", "-q:v", "2", photo])
    return clip.read_bytes(), photo.read_bytes()


def cached_build(base: Path, name: str, need: int, build: Callable[[Path], None],
                 valid: Callable[[Path], bool]) -> Path:
    """``base/name``, built by ``build(folder)`` when missing or not ``valid``.

    ``base`` belongs to one benchmark: older entries in it (other sizes, formats) are removed
    before a build, nothing outside it. The build happens in ``name.partial`` and is renamed
    into place only when complete, so an interrupted build is never taken for a cache.
    """
    folder = base / name
    if folder.is_dir() and valid(folder):
        say(f"using the cached data in {folder}")
        return folder
    base.mkdir(parents=True, exist_ok=True)
    for other in base.iterdir():
        say(f"removing older cached data: {other}")
        shutil.rmtree(other)
    if free_bytes(base) < need:
        raise BenchError(f"not enough free space in {base}: needs about {fmt_bytes(need)}, "
                         f"has {fmt_bytes(free_bytes(base))}")
    partial = base / (name + ".partial")
    say(f"building {folder} (once; cached)")
    start = time.perf_counter()
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        build(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(folder)
    os.sync()
    say(f"built in {time.perf_counter() - start:.1f} s")
    return folder


def machine_info(load_start: float) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0]}


def machine_line(machine: dict[str, Any]) -> str:
    return (f"machine: {machine['cpus']} CPUs, 1-minute load average "
            f"{machine['load_average_start']:.2f} at the start, "
            f"{machine['load_average_end']:.2f} at the end (other work skews times; compare "
            "ratios within one run)")


def code_state() -> str:
    """Which ingestd was measured: the commit, and files of ingestd/ changed since it."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.rstrip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = git("status", "--porcelain", "--", "ingestd").splitlines()
    if not changed:
        return f"ingestd at commit {commit}, unmodified"
    names = ", ".join(line[3:] for line in changed)
    return f"ingestd at commit {commit} WITH uncommitted changes to {names}"


def other_benchmarks() -> list[str]:
    """Other `scripts/bench` runs on this machine now (they drop the page cache and load the
    disk too): ``pid: command`` of each."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        if pid in (os.getpid(), os.getppid()):
            continue
        try:
            args = [a.decode("utf-8", "replace") for a in cmdline.read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if any(Path(a).name.startswith("bench_") and a.endswith(".py") for a in args[:3]):
            found.append(f"{pid}: {' '.join(args)[:120]}")
    return sorted(found)


def concurrency_note(seen: Iterable[str]) -> str | None:
    """A note for the report when other benchmarks ran during this one, else None."""
    seen = sorted(set(seen))
    if not seen:
        return None
    return ("OTHER BENCHMARKS RAN DURING THIS ONE (they drop the page cache and load the disk "
            "and CPUs: times are skewed, compare ratios with care): " + "; ".join(seen))


def bench_main(name: str, argv: list[str], parse_args: Callable[[list[str]], Any],
               run: Callable[[Any], dict[str, Any]],
               render: Callable[[dict[str, Any]], str]) -> int:
    """A benchmark's entry point: parse, run, print the report (text or ``--json``)."""
    args = parse_args(argv)
    # ingestd runs from its bytecode, as an installed one does (pip writes it at install): a
    # checkout edited since its last run, under PYTHONDONTWRITEBYTECODE, would otherwise
    # compile its changed modules at every command timed.
    compileall.compile_dir(REPO / "ingestd", quiet=2)
    # A TERM (like Ctrl-C) unwinds, so that the running tool (and any server) is stopped and
    # the work folders go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(args)
    except BenchError as exc:
        print(f"bench {name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def split_sizes(total: int, small_count: int, *, seed: str, small: tuple[int, int],
                weights: Sequence[int], too_small: str) -> tuple[list[int], list[int]]:
    """(large sizes in proportion to ``weights``, ``small_count`` random small sizes) adding up
    to ``total``; the same for the same arguments, so cached data can be reused."""
    rng = random.Random(seed)
    smalls = [rng.randint(*small) for _ in range(small_count)]
    large_total = total - sum(smalls)
    if large_total < 64 * MiB:
        raise BenchError(f"{fmt_bytes(total)} is too small: {too_small}")
    unit = large_total // sum(weights)
    large = [unit * w for w in weights]
    large[0] += large_total - sum(large)
    return large, smalls
