"""`scripts/bench cli`: how long the reporting commands take to answer on a small home with
an S3 target configured, as a production station has (`status`, `items`, `show ITEM`,
`verify --hash SHA`, and `--help`), against
`python -c "import click, msgspec, sqlalchemy"` (the floor: the libraries every command
needs, imported and nothing done). A second reference, not the goal's, is the floor first
set for these commands, `import click, pydantic, sqlalchemy`, from when the settings were
pydantic models: it is the larger of the two (pydantic and its compiled core import more
than msgspec), so the goal is judged on the smaller.

Each command runs through the venv's `ingestd` entry point with this tree's code, with a warm
page cache and its bytecode cached (as an installed ingestd runs), one warm-up run each and
then the median of --repeat runs, taken in turns so that a burst of other work on the machine
skews all of them alike. The goal: each at most 1.3x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    DEFAULT_WORK,
    REPO,
    BenchError,
    bench_main,
    code_state,
    fmt_bytes,
    machine_info,
    machine_line,
    median,
    say,
    table,
)

#: What a command may take, as a multiple of the floor.
GOAL = 1.3
FLOOR = "import click, msgspec, sqlalchemy"
#: The floor as first set, with the settings' library of the time (pydantic).
FIRST_FLOOR = "import click, pydantic, sqlalchemy"


def entry_point() -> Path:
    """The venv's ``ingestd``: beside the Python this runs on (scripts/bench runs the venv's)."""
    path = Path(sys.executable).with_name("ingestd")
    if not path.is_file():
        raise BenchError(f"no ingestd entry point beside {sys.executable}: run scripts/setup")
    return path


def command_env() -> dict[str, str]:
    """This tree's ingestd (whatever checkout the venv's editable install names), its bytecode
    written and used, no INGESTD_* of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INGESTD_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["INGESTD_ACTOR"] = "bench"
    return env


#: As a production station has: an off-site S3 target. No command timed here asks it
#: anything (nothing listens at its address), but each would pay for loading an S3 client.
S3_TARGET = ('\n[[targets]]\nname = "offsite"\ntype = "s3"\nbucket = "evidence"\n'
             'endpoint_url = "http://127.0.0.1:9"\n')


def build_home(home: Path, ingestd: Path, env: dict[str, str]) -> str:
    """A station with one simulated recorder docked and ingested, and an S3 target
    configured; returns an item's hash."""
    if home.exists():
        shutil.rmtree(home)
    if shutil.which("ffmpeg") is None:
        raise BenchError("needs ffmpeg to make the simulated recorder's clips: "
                         "apt-get install ffmpeg")
    say(f"building a small home in {home}")
    base: list[str | Path] = [ingestd, "--home", home]
    _prepare([*base, "init"], env)
    _prepare([*base, "simulate-recorder", "BENCH-0001", "--clips", "3"], env)
    _prepare([*base, "ingest", home / "docks" / "BENCH-0001", "--serial", "BENCH-0001"], env)
    with (home / "ingestd.toml").open("a", encoding="utf-8") as config:
        config.write(S3_TARGET)
    out = home.parent / "items.json"
    timed([*base, "items", "--json"], stdout=out, env=env)
    items = json.loads(out.read_text(encoding="utf-8"))["items"]
    if not items:
        raise BenchError(f"the simulated recorder left no item in {home}")
    return str(items[0]["sha256"])


def _prepare(argv: list[str | Path], env: dict[str, str]) -> None:
    """An untimed step of the build; stops the benchmark with its output if it fails."""
    proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True, env=env,
                          check=False)
    if proc.returncode != 0:
        said = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()[-1500:]
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{said}")


def timed(argv: list[str | Path], *, stdout: Path, env: dict[str, str]) -> tuple[
        float, float, int]:
    """Run a command to its end: its wall seconds, CPU seconds (user and system) and peak RSS
    in bytes (``wait4``). Started from this process, which holds far less than any command
    measured (a forked child's peak starts at its parent's size)."""
    with stdout.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([os.fspath(a) for a in argv], stdout=out,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        assert proc.stderr is not None
        said = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    proc.stderr.close()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                         f"{said.decode('utf-8', 'replace').strip()[-1500:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()[0]
    out = args.work / "out-cli"
    out.mkdir(parents=True, exist_ok=True)
    ingestd, env = entry_point(), command_env()
    home = out / "home"
    sha = build_home(home, ingestd, env)
    runs: dict[str, list[str | Path]] = {
        "floor": [sys.executable, "-c", FLOOR],
        "first floor": [sys.executable, "-c", FIRST_FLOOR],
        "status": [ingestd, "--home", home, "status"],
        "items": [ingestd, "--home", home, "items"],
        "show ITEM": [ingestd, "--home", home, "show", sha],
        "verify --hash SHA": [ingestd, "--home", home, "verify", "--hash", sha],
        "--help": [ingestd, "--help"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, int] = dict.fromkeys(runs, 0)
    say(f"timing {len(runs)} commands, {args.repeat} runs each (and one warm-up)")
    for turn in range(args.repeat + 1):
        for name, argv in runs.items():
            took, used, rss = timed(argv, stdout=out / "out.txt", env=env)
            if turn:  # the first turn warms the page cache and writes the bytecode
                seconds[name].append(took)
                cpu[name].append(used)
                peaks[name] = max(peaks[name], rss)
    floor, floor_cpu = median(seconds["floor"]), median(cpu["floor"])
    first_floor = median(seconds["first floor"])
    results = [{"command": name, "seconds": median(seconds[name]),
                "ratio": median(seconds[name]) / floor,
                "first_ratio": median(seconds[name]) / first_floor,
                "cpu_seconds": median(cpu[name]),
                "cpu_ratio": median(cpu[name]) / floor_cpu, "peak_rss": peaks[name]}
               for name in runs]
    return {"benchmark": "cli", "code": code_state(), "machine": machine_info(load),
            "repeat": args.repeat, "goal_ratio": GOAL, "floor": FLOOR,
            "first_floor": FIRST_FLOOR, "results": results}


def render(report: dict[str, Any]) -> str:
    rows = []
    names = {"floor": "the floor", "first floor": "the first floor (pydantic)"}
    for r in report["results"]:
        reference = r["command"] in names
        verdict = "" if reference else "ok" if r["ratio"] <= report["goal_ratio"] else "SLOW"
        rows.append([names.get(r["command"], f"ingestd {r['command']}"),
                     f"{r['seconds'] * 1000:.0f} ms", f"{r['ratio']:.2f}x",
                     f"{r['first_ratio']:.2f}x",
                     f"{r['cpu_seconds'] * 1000:.0f} ms", f"{r['cpu_ratio']:.2f}x",
                     fmt_bytes(r["peak_rss"]), verdict])
    return "\n".join([
        "reporting commands on a small home (one recorder, 3 clips, an S3 target configured "
        "and never contacted) against the floor (importing the libraries every command "
        "needs)",
        f"{report['code']}; warm cache, bytecode cached; median of {report['repeat']}; "
        f"goal: at most {report['goal_ratio']}x the floor",
        machine_line(report["machine"]), "",
        table(["command", "time", "ratio", "to first floor", "CPU time", "CPU ratio",
               "peak memory", "goal"],
              rows, right=[False, True, True, True, True, True, True, False]),
        "",
        f'the floor: python -c "{report["floor"]}"',
        f'the first floor: python -c "{report["first_floor"]}" (pydantic settings, before '
        "msgspec; the goal is judged on the floor above)",
        "time: wall-clock, what a person waits; CPU time: user and system, which other work "
        "on the machine skews less. The goal is judged on the wall-clock ratio.",
    ])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench cli", description=__doc__)
    parser.add_argument("--repeat", type=int, default=11, help="runs of each (median)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="folder for the small home (default .bench/)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str]) -> int:
    return bench_main("cli", argv, parse_args, run, render)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
