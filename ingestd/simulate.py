"""A simulated recorder: a folder laid out like a body-worn camera's storage, with real clips.

Used by ``./scripts/run --demo``, the benchmarks and the tests. Clips are made by ffmpeg from
its test sources and carry ``creation_time`` as a recorder writes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .errors import MediaError


@dataclass(frozen=True, kw_only=True)
class Clip:
    name: str
    seconds: float = 3.0
    recorded: datetime | None = None
    size: str = "640x360"
    rate: int = 25


def make_clip(path: Path, *, seconds: float = 3.0, recorded: datetime | None = None,
              size: str = "640x360", rate: int = 25, bitrate: str | None = None) -> Path:
    """Write an H.264/AAC MP4 (test pattern and tone) like a recorder's."""
    if shutil.which("ffmpeg") is None:
        raise MediaError("ffmpeg is not installed (Debian package ffmpeg)")
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
            "-pix_fmt", "yuv420p"]
    if bitrate:
        args += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate]
    if recorded is not None:
        args += ["-metadata", f"creation_time={recorded.strftime('%Y-%m-%dT%H:%M:%S.000000Z')}"]
    args.append(str(path))
    proc = subprocess.run(args, capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg could not make {path}: "
                         f"{proc.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    if recorded is not None:
        stamp = (recorded + timedelta(seconds=seconds)).timestamp()
        os.utime(path, (stamp, stamp))
    return path


def make_recorder(root: Path, *, serial: str, clips: Sequence[Clip],
                  identity_file: str | None = None) -> Path:
    """A recorder tree: ``DCIM/100MEDIA/<name>`` for each clip, plus what recorders carry."""
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        make_clip(media / clip.name, seconds=clip.seconds, recorded=clip.recorded,
                  size=clip.size, rate=clip.rate)
    (root / "SYSTEM").mkdir(exist_ok=True)
    (root / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={serial}\n", encoding="ascii")
    if identity_file:
        (root / identity_file).write_text(serial + "\n", encoding="ascii")
    return root


def demo_clips(now: datetime, count: int = 3) -> list[Clip]:
    """Clips as a shift leaves them: recorded in the last hours, named by local time."""
    out = []
    for i in range(count):
        recorded = now - timedelta(hours=count - i, minutes=7 * i)
        local = recorded + timedelta(hours=8)
        out.append(Clip(name=f"{local:%Y%m%d_%H%M%S}_{i + 1:04d}.MP4", seconds=3 + i,
                        recorded=recorded))
    return out
