"""What every `scripts/bench NAME` benchmark shares: timed runs of commands with their peak
memory, a cold page cache before each run, medians, and a plain-text table.

A benchmark is ``scripts/bench_NAME.py`` with a ``main(argv) -> int``; ``scripts/bench NAME``
runs ``scripts/setup`` and then that module with the venv's Python. Progress goes to stderr, so
that ``--json`` leaves stdout to the machine-readable result.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def run_timed(argv: Sequence[str | os.PathLike[str]], *, stdout: Path,
              cwd: Path | None = None) -> tuple[float, int]:
    """Run a command to its end; return wall seconds and its peak RSS in bytes.

    The peak is ``ru_maxrss`` from ``wait4`` (what ``/usr/bin/time -v`` reports): the
    high-water mark of the command or of the largest of the children it waited for.
    stdout goes to the file given; stderr to ``<stdout>.err``, quoted on failure.
    """
    err_path = stdout.with_name(stdout.name + ".err")
    with stdout.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([os.fspath(a) for a in argv], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C or TERM: stop the command and what it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        tail = err_path.read_text(encoding="utf-8", errors="replace").strip()[-1500:]
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{tail}")
    return seconds, usage.ru_maxrss * 1024


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
