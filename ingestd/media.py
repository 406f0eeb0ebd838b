"""Media facts from ffprobe and an end-to-end decode check with ffmpeg, via ffmpeg-python.

Files are probed where they are stored (content-addressed, read-only), never on the recorder, so
a hostile recorder file name never reaches a command line. Every run is bounded by a timeout.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .domain.models import MediaInfo
from .errors import MediaError

log = logging.getLogger(__name__)


def _creation_time(tags: dict[str, Any]) -> datetime | None:
    text = tags.get("creation_time") or tags.get("date")
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_probe(data: dict[str, Any]) -> MediaInfo:
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration: float | None = None
    try:
        duration = float(fmt["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    tags = dict(fmt.get("tags") or {})
    if video is not None:
        tags = {**(video.get("tags") or {}), **tags}
    return MediaInfo(
        ok=bool(streams),
        duration=duration,
        creation_time=_creation_time(tags),
        format_name=str(fmt.get("format_name", "")),
        video_codec=str(video.get("codec_name", "")) if video else "",
        audio_codec=str(audio.get("codec_name", "")) if audio else "",
        width=int(video["width"]) if video and "width" in video else None,
        height=int(video["height"]) if video and "height" in video else None,
        error="" if streams else "no audio or video stream",
    )


#: The demuxers ffprobe may take a stored file with: the containers and raw streams that
#: recorders write. Others are refused, not guessed at: ffprobe tries every demuxer it has on a
#: file it cannot place, and random bytes can pass for a text format (LRC lyrics, subtitles)
#: that it then parses to the end, seconds of CPU per 100 MB and its "tags" in the output.
#: Fewer demuxers also means less of ffprobe exposed to a hostile recorder's files.
RECORDING_FORMATS = ",".join((
    "mov", "avi", "matroska", "mpegts", "mpeg", "asf", "flv", "m4v", "h264", "hevc",
    "wav", "mp3", "aac", "amr", "ogg", "flac", "image2", "jpeg_pipe", "png_pipe", "bmp_pipe",
))
#: What ``parse_probe`` reads, and no more: the output stays small whatever the file holds.
SHOWN = ("format=duration,format_name:format_tags=creation_time,date"
         ":stream=codec_type,codec_name,width,height:stream_tags=creation_time,date")
_NOT_LISTED = re.compile(r"^\[([A-Za-z0-9_,]+) @ [^]]*\] Format not on whitelist")

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_TAIL = 64 * 1024


def still_image(path: Path) -> MediaInfo | None:
    """A JPEG or PNG photo, checked for being whole (its end marker is there); None for
    anything else. Photos are a recorder's many small files: starting ffprobe for each would
    cost more than copying them, and ffprobe tells nothing more of a photo's integrity."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if not (head.startswith(_JPEG) or head.startswith(_PNG)):
            return None
        size = fh.seek(0, 2)
        fh.seek(max(0, size - _TAIL))
        tail = fh.read().rstrip(b"\x00")  # some cameras pad the file with zeros
    if head.startswith(_JPEG):
        whole = tail.endswith(b"\xff\xd9")
        return MediaInfo(ok=whole, format_name="jpeg",
                         error="" if whole else "truncated JPEG: no end-of-image marker")
    whole = b"IEND" in tail[-16:]
    return MediaInfo(ok=whole, format_name="png",
                     error="" if whole else "truncated PNG: no IEND chunk")


def probe(path: Path, *, timeout: float = 60.0) -> MediaInfo:
    """ffprobe a file (photos are checked without it). A file that cannot be read as media
    gives ``ok=False`` and the reason; only a missing or hung ffprobe raises."""
    image = still_image(path)
    if image is not None:
        return image
    args = ["ffprobe", "-v", "error", "-format_whitelist", RECORDING_FORMATS,
            "-show_entries", SHOWN, "-of", "json", str(path)]
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise MediaError("ffprobe is not installed (Debian package ffmpeg)") from None
    except subprocess.TimeoutExpired:
        return MediaInfo(ok=False, error=f"ffprobe did not finish within {timeout:.0f}s")
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        refused = next((m for line in reason if (m := _NOT_LISTED.search(line))), None)
        if refused is not None:
            return MediaInfo(ok=False, error=(
                f"not an audio or video format recorders write (its bytes look like "
                f"{refused.group(1)})"))
        last = reason[-1].replace(f"{path}: ", "") if reason else f"ffprobe exit {proc.returncode}"
        return MediaInfo(ok=False, error=last)
    try:
        return parse_probe(json.loads(proc.stdout))
    except (ValueError, TypeError) as exc:
        return MediaInfo(ok=False, error=f"unreadable ffprobe output: {exc}")


@dataclass(frozen=True, kw_only=True)
class DecodeResult:
    ok: bool
    errors: list[str]


def decode_check(path: Path, *, timeout: float = 600.0) -> DecodeResult:
    """Decode every stream end to end, every frame (played back, not displayed), stopping at
    the first error (``-xerror``); report the decoder's last messages."""
    import ffmpeg  # here, not above: the commands that only report never decode a file

    stream = ffmpeg.input(str(path)).output("-", format="null")
    args = ffmpeg.compile(stream, overwrite_output=True)
    args[1:1] = ["-nostdin", "-v", "error", "-xerror"]
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise MediaError("ffmpeg is not installed (Debian package ffmpeg)") from None
    except subprocess.TimeoutExpired:
        return DecodeResult(ok=False, errors=[f"decode did not finish within {timeout:.0f}s"])
    # The decoder names the file it reads: the store's path says nothing a reader needs.
    errors = [ln.replace(f"{path}: ", "").strip()
              for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if proc.returncode != 0 and not errors:
        errors = [f"ffmpeg exit {proc.returncode}"]
    return DecodeResult(ok=proc.returncode == 0 and not errors, errors=errors[-20:])
