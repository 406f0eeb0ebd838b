"""The custody report of an export package: ``custody-report.html`` and
``custody-report.pdf``, rendered from one template.

The template is autoescaped: every value it shows (names, labels, reasons, paths, anything a
person or a recorder wrote) is text, never markup. It needs nothing outside itself (no
stylesheet, image or font file is fetched; the PDF's fonts are the system's Noto CJK), so
the HTML reads the same anywhere and the PDF renderer is given no URL it may open. Jinja2 and
WeasyPrint are imported when a report is written, not when this module is: the command line
starts without them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.policy import local_time
from ..domain.timeline import ItemTimeline, Outcome, human_size
from ..integrity.hashing import fsync_dir
from ..modes import FILE_MODE

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)

HTML_NAME = "custody-report.html"
PDF_NAME = "custody-report.pdf"
TEMPLATE = "custody-report.html.j2"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, kw_only=True)
class PackageInfo:
    """What the report's header says of the package. Empty text: not stated."""

    package_id: str
    created_at: datetime  # aware (UTC)
    station: str
    case: str = ""
    party: str = ""
    officers: tuple[str, ...] = ()
    approver: str = ""
    requester: str = ""
    purpose: str = ""
    reason: str = ""
    #: The ledger checkpoint the package is anchored to, when it is.
    checkpoint_seq: int | None = None
    checkpoint_head: str | None = None
    merkle_root: str | None = None
    #: The file in the package that says how to verify it.
    verify_file: str = "VERIFY.txt"


def write_custody_report(out_dir: Path, *, package: PackageInfo, items: Iterable[ItemTimeline],
                         tz: tzinfo) -> tuple[Path, Path]:
    """Write ``custody-report.html`` and ``custody-report.pdf`` into ``out_dir`` (which must
    exist) and return their paths (HTML, PDF). Every time is shown in ``tz`` with its offset.

    ``items`` is read once, in order, as the HTML is written (a generator is fine). Each file
    is written under a temporary name, fsynced and renamed, with the private file mode (the
    report names parties). Raises OSError when a file cannot be written."""
    html_path = out_dir / HTML_NAME
    pdf_path = out_dir / PDF_NAME
    template = _environment(tz).get_template(TEMPLATE)
    chunks = template.generate(package=package, items=_numbered(items), tz_name=_zone_name(tz),
                               created=local_time(package.created_at, tz))
    _atomic(html_path, lambda tmp: _write_chunks(tmp, chunks))
    _atomic(pdf_path, lambda tmp: _render_pdf(html_path, tmp))
    fsync_dir(out_dir)
    return html_path, pdf_path


def _numbered(items: Iterable[ItemTimeline]) -> Iterator[tuple[int, ItemTimeline]]:
    yield from enumerate(items, start=1)


def _zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


def _environment(tz: tzinfo) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["local"] = lambda moment: local_time(moment, tz) if moment else "—"
    env.filters["size"] = human_size
    env.filters["duration"] = _duration
    env.filters["css_string"] = _css_string
    env.globals["OK"] = Outcome.OK
    env.globals["FAILED"] = Outcome.FAILED
    return env


def _css_string(value: str) -> str:
    """``value`` for the inside of a quoted CSS string: anything but a letter, digit, dot,
    dash or underscore as a CSS escape, so it can neither end the string nor the style."""
    from markupsafe import Markup

    return Markup("".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-")
                          else f"\\{ord(ch):06x}" for ch in value))


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d} ({seconds:.3f} s)"


def _write_chunks(path: Path, chunks: Iterator[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(chunk)


def _render_pdf(html_path: Path, pdf_path: Path) -> None:
    import weasyprint
    from weasyprint.urls import URLFetcher

    # No protocol allowed: the document has no external resource, and gets none.
    nothing = URLFetcher(allowed_protocols=())
    weasyprint.HTML(filename=str(html_path), url_fetcher=nothing).write_pdf(str(pdf_path))


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)``, fsync ``tmp`` and rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    os.close(fd)
    os.chmod(tmp, FILE_MODE)  # whatever the umask
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
