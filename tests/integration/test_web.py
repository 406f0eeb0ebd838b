"""The status page, its JSON API and ``/healthz``, served by a real ``ingestd run``.

What IT staff rely on, checked here:

* ``/`` loaded in headless Chromium shows the store, the recorders docked now, the last docks
  with their health, the queues, the flagged items with links, the last checks and ledger
  events, in Chinese by default and in English when configured so; an item's page
  (``/items/PREFIX``) shows its custody timeline;
* a file named like a script, and a label typed like one, show as text: no script runs;
* ``/api/status`` says what ``ingestd status --json`` says; ``/api/items`` filters and pages as
  ``ingestd items`` lists; ``/healthz`` answers 200 while the catalog answers, 503 when not;
* only GET and HEAD are answered (405); beyond loopback every request needs the bearer token
  (401), over TLS when configured; without a token file the daemon refuses to start on such
  an address, naming ``token_file``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    INGESTD,
    ClipFile,
    init_station,
    make_test_clip,
    place,
    random_file,
    run_ingestd,
    shared_random_file,
    subprocess_env,
    wait_for,
)

from ingestd import config as config_mod
from ingestd.station import system_clock
from ingestd.web.server import WebServer

pytestmark = pytest.mark.integration

SERIAL = "BWC-0300"
SLOW = "BWC-0301"
#: A recorder file named like a script: the folder "<script>...<" and the file "script>.mp4"
#: make the path the recorder gives, as the file system allows no "/" in a name.
HOSTILE_PATH = "<script>document.body.dataset.pwned='name'</script>.mp4"
#: What a person types as a label.
HOSTILE_CASE = '<img src=x onerror="document.body.dataset.pwned=\'case\'">'
HOSTILE_PARTY = "<script>document.body.dataset.pwned='party'</script>"
CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 90.0


def _home(root: Path, web: str, *, register: dict[str, tuple[str, str]] | None = None,
          extra: str = "") -> Path:
    return init_station(
        root, clock=system_clock, register=register,
        config='[docks]\nwatch_root = "docks"\nsettle = "0.5s"\n'
               '\n[scheduler]\naudit_sample = 0\n' + extra + "\n[web]\n" + web)


class Daemon:
    """``ingestd run`` in the background, and the address its status page says it serves."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log = home.parent / f"{home.name}-daemon.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([str(INGESTD), "--home", str(home), "run"],
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     env=subprocess_env())
        found = wait_for(self._address, timeout=TIMEOUT, what="the status page's address")
        self.url = found

    def _address(self) -> str | None:
        if self.proc.poll() is not None:
            pytest.fail(f"ingestd run ended ({self.proc.returncode}):\n{self.output()}")
        match = re.search(r"status page at (https?://\S+/)", self.output())
        return match.group(1) if match else None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._out.close()


def browse(url: str, tmp: Path, *, screenshot: Path | None = None,
           size: tuple[int, int] = (1280, 900)) -> str:
    """The page's DOM after Chromium loaded it and ran whatever it would run."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str) -> str:
    """What a reader sees of a DOM, roughly: tags gone, entities read back."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


@dataclass
class Station:
    home: Path
    daemon: Daemon
    clips: list[ClipFile]
    hostile: ClipFile
    big: ClipFile  # docked after the others were replicated: it waits for the target
    labelled: str
    docked_now_api: dict[str, Any]
    docked_now_html: str

    @property
    def url(self) -> str:
        return self.daemon.url


def _dock(home: Path, serial: str, files: dict[str, Path]) -> None:
    """A recorder folder appearing whole under the watched root, as a plug-in does (its files
    hard links where they can be)."""
    staging = home / "docks" / f".{serial}.staging"
    for rel, source in files.items():
        place(source, staging / rel)
    (staging / "SYSTEM").mkdir(parents=True, exist_ok=True)
    (staging / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={serial}\n", encoding="ascii")
    staging.rename(home / "docks" / serial)


def _done(url: str, serial: str) -> bool:
    docks = httpx.get(url + "api/status", timeout=30).json()["docks"]
    return any(d["serial"] == serial and d["state"] == "done" for d in docks)


def _job_ended(home: Path, job: str) -> bool:
    jobs = json.loads(run_ingestd(home, "status", "--json").stdout)["jobs"]
    return any(run["job"] == job and run["finished_at"] for run in jobs)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    """One daemon, Chinese by default: a recorder ingested (two clips and a file named like
    a script, which no player reads: flagged), an item labelled like a script, everything
    replicated to a folder target; then a big file docked, seen while it is copied."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed (Debian package ffmpeg)")
    root = tmp_path_factory.mktemp("web")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    clips = [make_test_clip(root / f"clip{i}.mp4", seconds=1, recorded=base + timedelta(
        minutes=i)) for i in range(2)]
    hostile = random_file(root / "hostile.bin", 64 * 1024)
    big = shared_random_file(tmp_path_factory, 384)
    nas = root / "nas"
    nas.mkdir()
    home = _home(root / "home", 'listen = "127.0.0.1:0"\nrefresh = "20s"\n',
                 register={SERIAL: ("Zhao Lei", "PS-0300"), SLOW: ("Qian Wei", "PS-0301")},
                 # one file at a time, in small reads: the big recorder takes a few seconds
                 extra='\n[ingest]\nparallel_files = 1\nbuffer_size = "64KiB"\n'
                       f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                       "same_filesystem_ok = true\n")
    daemon = Daemon(home)
    try:
        _dock(home, SERIAL, {"DCIM/100MEDIA/CLIP0001.MP4": clips[0].path,
                             "DCIM/100MEDIA/CLIP0002.MP4": clips[1].path,
                             HOSTILE_PATH: hostile.path})
        wait_for(lambda: _done(daemon.url, SERIAL), timeout=TIMEOUT, what="the first dock")
        labelled = run_ingestd(home, "label", clips[0].sha256[:12], "--case", HOSTILE_CASE,
                               "--party", HOSTILE_PARTY, "--by", "tester")
        assert labelled.returncode == 0, labelled.stderr
        # the daemon replicates 5 s after its start, then every 15 minutes: once its first
        # run is over, a replication by hand meets none
        wait_for(lambda: _job_ended(home, "replicate"), timeout=TIMEOUT,
                 what="the daemon's first replication")
        replicated = run_ingestd(home, "replicate")
        assert replicated.returncode == 0, replicated.stderr

        # the same bytes twice: the first copied, the second read and hashed again
        _dock(home, SLOW, {f"DCIM/100MEDIA/BIG000{n}.MP4": big.path for n in range(1, 3)})

        def copying() -> dict[str, Any] | None:
            doc = httpx.get(daemon.url + "api/status", timeout=30).json()
            now = [d for d in doc["docked_now"] if d["serial"] == SLOW]
            if now and now[0]["files_copying"]:
                return doc
            if any(d["serial"] == SLOW and d["state"] != "running" for d in doc["docks"]):
                pytest.fail("the big recorder was taken before the page saw it docked")
            return None

        seen = wait_for(copying, timeout=TIMEOUT, interval=0.02, what="the big file copying")
        page = httpx.get(daemon.url, timeout=30).text
        wait_for(lambda: _done(daemon.url, SLOW), timeout=TIMEOUT, what="the big file taken")
        yield Station(home=home, daemon=daemon, clips=clips, hostile=hostile, big=big,
                      labelled=clips[0].sha256, docked_now_api=seen, docked_now_html=page)
    finally:
        daemon.close()


# -- the page --------------------------------------------------------------------------------


def test_the_page_in_a_browser_shows_the_station_in_chinese(station: Station,
                                                            tmp_path: Path) -> None:
    dom = browse(station.url, tmp_path)
    seen = text_of(dom)
    assert '<html lang="zh-CN">' in dom
    for heading in ("本地存储", "正在接入的记录仪", "最近的接入", "异地备份队列", "带标记的条目",
                    "最近的检查", "最近的账本事件"):
        assert heading in seen, heading
    assert "station-01" in seen and SERIAL in seen and SLOW in seen
    assert "按今天的速度，存储将于此日写满" in seen
    # the dock's health: the folder's free space and file system
    assert "设备可用空间" in seen and "文件系统" in seen
    # the folder target: the big file, docked after the others were replicated, waits
    queues = dom[dom.index('id="queues"'):dom.index('id="flagged"')]
    assert re.search(r"<td>nas</td>\s*<td>1</td>", queues)
    assert f'href="/items/{station.big.sha256}"' in queues
    # the unreadable file is flagged, with a link to its item
    assert "damaged_media" in seen
    assert f'href="/items/{station.hostile.sha256}"' in dom
    assert "http-equiv=\"refresh\" content=\"20\"" in dom
    # nothing from outside: every stylesheet and script the page names is the station's own
    assert re.findall(r'(?:href|src)="(https?:)?//', dom) == []
    assert "<script" not in dom.replace("&lt;script", "")


def test_a_recorder_being_ingested_shows_its_file_and_progress(station: Station) -> None:
    (now,) = [d for d in station.docked_now_api["docked_now"] if d["serial"] == SLOW]
    assert now["files_copying"] == 1
    (file,) = [f for f in now["files"] if f["state"] == "copying"]
    assert re.fullmatch(r"DCIM/100MEDIA/BIG000[12]\.MP4", file["path"])
    assert file["size"] == 384 << 20 and file["item"] is None
    # the files before it are taken, counted with their bytes
    taken = [f for f in now["files"] if f["state"] in ("stored", "known")]
    assert now["files_taken"] == len(taken) and now["bytes_taken"] == len(taken) * (384 << 20)
    html = station.docked_now_html
    docked = html[html.index('id="docked-now"'):html.index('id="last-docks"')]
    assert SLOW in docked and "DCIM/100MEDIA/BIG000" in docked and "copying" in docked
    # once taken, it is no longer docked now, and its bytes count toward today's rate
    doc = httpx.get(station.url + "api/status", timeout=30).json()
    assert [d for d in doc["docked_now"] if d["serial"] == SLOW] == []
    assert doc["store"]["stored_last_day"] >= 384 << 20
    assert doc["store"]["fills_at"] is not None


def test_hostile_names_show_as_text_and_run_nothing(station: Station, tmp_path: Path) -> None:
    for url in (station.url, f"{station.url}items/{station.labelled[:10]}",
                f"{station.url}items/{station.hostile.sha256[:8]}"):
        dom = browse(url, tmp_path)
        assert "data-pwned" not in dom, f"a script ran on {url}"
        assert "<script" not in dom.replace("&lt;script", ""), url
        assert "<img" not in dom, url
    status_dom = browse(station.url, tmp_path)
    assert HOSTILE_PATH in text_of(status_dom)
    item_dom = browse(f"{station.url}items/{station.labelled[:10]}", tmp_path)
    assert HOSTILE_CASE in text_of(item_dom) and HOSTILE_PARTY in text_of(item_dom)
    # and in JSON: the same text, as a JSON string
    item = httpx.get(f"{station.url}api/items/{station.labelled}", timeout=30).json()
    assert (item["case"], item["party"]) == (HOSTILE_CASE, HOSTILE_PARTY)


def test_an_item_page_shows_its_custody_timeline(station: Station, tmp_path: Path) -> None:
    sha = station.labelled
    dom = browse(f"{station.url}items/{sha[:8]}", tmp_path)
    seen = text_of(dom)
    assert sha in seen and "保管记录（账本）" in seen
    kinds = [e["kind"] for e in httpx.get(f"{station.url}api/items/{sha}",
                                          timeout=30).json()["custody"]]
    assert kinds[:2] == ["acquired", "stored"]
    assert "labelled" in kinds and "replicated" in kinds
    for kind in kinds:
        assert kind in seen
    missing = httpx.get(f"{station.url}items/{'0' * 12}", timeout=30)
    assert missing.status_code == 404 and "找不到条目" in missing.text


def test_screenshots_for_a_laptop_and_a_phone(station: Station, tmp_path: Path) -> None:
    for name, size in (("laptop.png", (1280, 900)), ("phone.png", (390, 844))):
        shot = tmp_path / name
        browse(station.url, tmp_path, screenshot=shot, size=size)
        head = shot.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(head[16:20], "big") == size[0]


# -- the API ---------------------------------------------------------------------------------


_MOVING = ("free", "fills_at")  # the file system's free space moves with every write


def _steady(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "store": {k: v for k, v in doc["store"].items() if k not in _MOVING}}


def test_api_status_is_what_status_json_says(station: Station) -> None:
    def same_moment() -> tuple[dict[str, Any], dict[str, Any]] | None:
        cli = _steady(json.loads(run_ingestd(station.home, "status", "--json").stdout))
        api = _steady(httpx.get(station.url + "api/status", timeout=30).json())
        # the page's status may be read up to STATUS_TTL before, and a job may run between
        # the two: read again until the station is still
        return (api, cli) if {k: api.get(k) for k in cli} == cli else None

    api, cli = wait_for(same_moment, timeout=TIMEOUT, interval=0.5, what="the same status")
    assert set(cli) <= set(api)
    assert cli["store"]["stored_last_day"] >= 384 << 20 and cli["docks"][0]["serial"] == SLOW
    assert api["items"]["total"] == 4 and api["items"]["labelled"] == 1
    nas = api["targets"]["nas"]
    assert (nas["verified"], nas["queued"], nas["oldest_waiting"]["sha256"]) == (
        3, 1, station.big.sha256)
    # no player reads random bytes: both such files are flagged, the newest first
    assert [i["sha256"] for i in api["flagged"]["damaged_media"]["items"]] == [
        station.big.sha256, station.hostile.sha256]
    assert api["flagged"]["damaged_media"]["count"] == 2
    assert [e["seq"] for e in api["events"]] == sorted(
        (e["seq"] for e in api["events"]), reverse=True)


def test_api_items_filters_and_pages_as_items_lists(station: Station) -> None:
    listed = json.loads(run_ingestd(station.home, "items", "--json").stdout)["items"]
    assert len(listed) == 4
    pages, after = [], None
    while True:
        query = {"limit": "3", **({"after": after} if after else {})}
        page = httpx.get(station.url + "api/items", params=query, timeout=30).json()
        pages.append(page["items"])
        after = page["next_after"]
        if after is None:
            break
    assert [len(p) for p in pages] == [3, 1]
    assert [i for p in pages for i in p] == listed
    for query, cli in (({"flag": "damaged_media"}, ["--flag", "damaged_media"]),
                       ({"recorder": SLOW}, ["--recorder", SLOW]),
                       ({"case": HOSTILE_CASE}, ["--case", HOSTILE_CASE]),
                       ({"officer": "Zhao Lei"}, ["--officer", "Zhao Lei"]),
                       ({"since": "2000-01-01", "until": "2000-01-02"},
                        ["--since", "2000-01-01", "--until", "2000-01-02"])):
        want = json.loads(run_ingestd(station.home, "items", *cli, "--json").stdout)["items"]
        got = httpx.get(station.url + "api/items", params=query, timeout=30).json()
        assert got["items"] == want, query
    assert [i["sha256"] for i in httpx.get(
        station.url + "api/items", params={"case": HOSTILE_CASE},
        timeout=30).json()["items"]] == [station.labelled]
    bad = httpx.get(station.url + "api/items", params={"flag": "no_such_flag"}, timeout=30)
    assert bad.status_code == 422
    prefix = httpx.get(f"{station.url}api/items/{station.hostile.sha256[:8]}", timeout=30)
    assert prefix.json()["sha256"] == station.hostile.sha256
    assert httpx.get(f"{station.url}api/items/zz", timeout=30).status_code == 404


def test_the_schema_is_served_and_no_docs_page_pulls_a_cdn(station: Station) -> None:
    schema = httpx.get(station.url + "openapi.json", timeout=30).json()
    assert {"/api/status", "/api/items", "/api/items/{ref}", "/healthz"} <= set(
        schema["paths"])
    assert httpx.get(station.url + "docs", timeout=30).status_code == 404


def test_metrics_are_served_beside_the_page_and_pass_promtool(station: Station,
                                                              tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    scrape = httpx.get(station.url + "metrics", timeout=30)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scrape.text)
               for s in family.samples}
    status = json.loads(run_ingestd(station.home, "status", "--json").stdout)
    items = sum(v for (name, _), v in samples.items() if name == "ingestd_items")
    assert items == status["items"]["total"]
    assert samples[("ingestd_replicated_bytes_total", (("target", "nas"),))] > 0
    (tmp_path / "scrape.txt").write_text(scrape.text, encoding="utf-8")
    checked = subprocess.run(["promtool", "check", "metrics"], input=scrape.text, text=True,
                             capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_firing_are_on_the_page_and_in_the_api(station: Station) -> None:
    listed = json.loads(run_ingestd(station.home, "alerts", "list", "--json").stdout)["alerts"]
    # the file named like a script is no media: its dock is alerted, and stays so
    assert any(a["alert"] == f"damaged_media:{SERIAL}" for a in listed)
    api = httpx.get(station.url + "api/alerts", timeout=30).json()["alerts"]
    assert [a["alert"] for a in api] == [a["alert"] for a in listed]
    page = httpx.get(station.url, timeout=30).text
    section = page[page.index('<section id="alerts">'):page.index("</section>")]
    assert "正在告警" in section
    for alert in listed:
        assert alert["alert"] in section


def test_healthz_and_only_reads(station: Station) -> None:
    health = httpx.get(station.url + "healthz", timeout=30)
    assert health.status_code == 200 and health.json()["ok"] is True
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = httpx.request(method, station.url + "api/status", timeout=30)
        assert refused.status_code == 405, method
        assert refused.headers["allow"] == "GET, HEAD"
    head = httpx.head(station.url, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 1000


# -- English, a token beyond loopback, TLS ----------------------------------------------------


def test_the_page_in_english(tmp_path: Path) -> None:
    home = _home(tmp_path / "home", 'listen = "127.0.0.1:0"\nlanguage = "en"\n')
    daemon = Daemon(home)
    try:
        dom = browse(daemon.url, tmp_path)
    finally:
        daemon.close()
    seen = text_of(dom)
    assert '<html lang="en">' in dom
    for heading in ("Local store", "Recorders docked now", "No recorder is being ingested",
                    "Last checks", "No item is flagged", "No off-site target is configured"):
        assert heading in seen, heading
    assert "本地存储" not in seen


def _local_address() -> str:
    """An address of this machine that is not loopback (else 0.0.0.0, which is not either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            address = "0.0.0.0"
    return address if not address.startswith("127.") else "0.0.0.0"


def test_beyond_loopback_a_token_and_tls_are_required(tmp_path: Path) -> None:
    cert, key = tmp_path / "web.crt", tmp_path / "web.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    token = "t0ken-" + os.urandom(16).hex()
    (tmp_path / "token").write_text(token + "\n", encoding="ascii")
    address = _local_address()
    home = _home(tmp_path / "home", f'listen = "{address}:0"\ntoken_file = "{tmp_path}/token"\n'
                 f'tls_cert = "{cert}"\ntls_key = "{key}"\nlanguage = "en"\n')
    daemon = Daemon(home)
    try:
        assert daemon.url.startswith("https://")
        port = daemon.url.rstrip("/").rsplit(":", 1)[1]
        url = f"https://127.0.0.1:{port}/" if address == "0.0.0.0" else daemon.url
        trusted = ssl.create_default_context(cafile=str(cert))
        trusted.check_hostname = False  # the certificate names localhost; the test dials an IP
        with httpx.Client(verify=trusted, timeout=30) as client:
            for path in ("", "api/status", "healthz", "openapi.json", "static/style.css",
                         "metrics"):
                refused = client.get(url + path)
                assert refused.status_code == 401, path
                assert refused.headers.get_list("www-authenticate") == [
                    'Bearer realm="ingestd"', 'Basic realm="ingestd", charset="UTF-8"']
            wrong = client.get(url + "healthz",
                               headers={"Authorization": "Bearer " + token[:-1] + "x"})
            assert wrong.status_code == 401
            good = {"Authorization": f"Bearer {token}"}
            assert client.get(url + "healthz", headers=good).json()["ok"] is True
            # a browser gives it as the password of Basic authentication, any user name
            assert client.get(url + "healthz", auth=("it-staff", token)).status_code == 200
            assert client.get(url + "healthz", auth=("it-staff", token[:-1])).status_code == 401
            assert client.get(url + "metrics", headers=good).status_code == 200
            page = client.get(url, headers=good)
            assert page.status_code == 200 and "Local store" in page.text
            assert client.post(url + "api/status", headers=good).status_code == 405
        # plain HTTP is not served there
        with pytest.raises((httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError)):
            httpx.get(url.replace("https://", "http://"), timeout=10)
        assert token not in daemon.output()
    finally:
        daemon.close()


def test_no_token_no_start_beyond_loopback(tmp_path: Path) -> None:
    home = _home(tmp_path / "home", 'listen = "127.0.0.1:0"\n')
    (home / "ingestd.toml").write_text(
        (home / "ingestd.toml").read_text().replace('"127.0.0.1:0"', '"0.0.0.0:0"'))
    refused = run_ingestd(home, "run", timeout=60)
    assert refused.returncode == 3  # a configuration error
    assert "web: token_file is required" in refused.stderr
    assert "0.0.0.0:0" in refused.stderr


# -- /healthz when the catalog does not answer ------------------------------------------------


def test_healthz_names_the_problem_when_the_catalog_does_not_answer(tmp_path: Path) -> None:
    home = _home(tmp_path / "home", 'listen = "127.0.0.1:0"\n')
    settings = config_mod.load(home / "ingestd.toml")
    server = WebServer(settings)
    server.start()
    try:
        assert httpx.get(server.url + "healthz", timeout=30).status_code == 200
        catalog = home / "catalog.sqlite"
        size = catalog.stat().st_size
        with open(catalog, "r+b") as fh:  # the catalog's file overwritten: not a database
            fh.write(b"\xff" * size)
        for extra in ("-wal", "-shm"):
            Path(f"{catalog}{extra}").unlink(missing_ok=True)
        sick = httpx.get(server.url + "healthz", timeout=30)
        assert sick.status_code == 503
        answer = sick.json()
        assert answer["ok"] is False and "catalog" in answer["problem"]
    finally:
        server.stop()
