"""``[web]``: the address the status page listens on, and what an address beyond loopback
needs; the page's words exist in every language; the status a page shows is read once a
while, however many pages ask."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestd import config
from ingestd.domain.models import Recorder
from ingestd.errors import ConfigError
from ingestd.station import Station
from ingestd.usecases import registry
from ingestd.web.reading import StatusReader
from ingestd.web.text import LANGUAGES


def web(**keys: object) -> config.WebSettings:
    return config.from_mapping({"web": keys}, home=Path("/tmp")).web


def test_not_served_unless_listen_is_set() -> None:
    assert config.from_mapping({}, home=Path("/tmp")).web.address is None


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:8765", ("127.0.0.1", 8765)),
    ("[::1]:0", ("::1", 0)),
    ("localhost:80", ("localhost", 80)),
])
def test_loopback_needs_no_token(listen: str, address: tuple[str, int]) -> None:
    assert web(listen=listen).address == address


@pytest.mark.parametrize("listen", ["127.0.0.1", ":8765", "127.0.0.1:http", "1.2.3.4:70000",
                                    "station.example.org:8765", "127.0.0.1:-1"])
def test_a_bad_address_names_the_key(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"web\.listen: "):
        web(listen=listen)


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "[::]:8765", "192.168.1.20:8765"])
def test_beyond_loopback_a_token_file_is_required(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"web: token_file is required"):
        web(listen=listen)
    assert web(listen=listen, token_file="/etc/ingestd/web-token").address is not None


def test_tls_takes_a_certificate_and_its_key() -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        web(listen="127.0.0.1:8765", tls_cert="web.crt")
    assert web(listen="127.0.0.1:8765", tls_cert="web.crt", tls_key="web.key").tls_key


def test_language_is_zh_or_en() -> None:
    assert web().language == "zh"
    with pytest.raises(ConfigError, match=r"web\.language"):
        web(language="fr")


def test_every_language_has_every_word() -> None:
    keys = {lang: set(words) for lang, words in LANGUAGES.items()}
    assert set(keys) == {"zh", "en"}
    assert keys["zh"] == keys["en"]
    assert all(LANGUAGES["zh"][k] != LANGUAGES["en"][k] for k in ("title", "store"))


def test_the_status_is_read_once_a_while_however_many_ask(station: Station) -> None:
    now = [100.0]
    reader = StatusReader(station, ttl=2.0, clock=lambda: now[0])
    first = reader()
    now[0] += 1.9
    assert reader() is first  # a second page within the TTL: no second read
    registry.register(station, Recorder(serial="BWC-0999", officer="Li Si", officer_id="PS-9"),
                      actor="tester")
    now[0] += 0.2
    again = reader()
    assert again is not first and again.recorders == first.recorders + 1
