"""``[timestamping]``: off by default; a URL with secrets in it, or without the CA that must
verify its tokens, is a configuration error naming the key."""

from pathlib import Path

import pytest

from ingestd import config
from ingestd.errors import ConfigError

HOME = Path("/srv/ingestd")


def load(section: str) -> config.Settings:
    import tomllib

    return config.from_mapping(tomllib.loads(section), home=HOME)


def test_no_authority_by_default() -> None:
    settings = load("")
    assert settings.timestamping.url is None and settings.timestamping.ca_file is None
    assert settings.timestamping.timeout.total_seconds() == 10


def test_an_authority_with_its_ca_file() -> None:
    ts = load('[timestamping]\nurl = "https://tsa.example.org/tsr"\nca_file = "tsa.pem"\n'
              'timeout = "30s"\npolicy = "1.3.6.1.4.1.4146.2.3"\n').timestamping
    assert (ts.url, ts.ca_file, ts.timeout.total_seconds(), ts.policy) == (
        "https://tsa.example.org/tsr", Path("tsa.pem"), 30, "1.3.6.1.4.1.4146.2.3")


@pytest.mark.parametrize(("section", "named", "said"), [
    ('url = "https://tsa.example.org/tsr"', "timestamping", "needs ca_file"),
    ('url = "https://user:hunter2@tsa.example.org/tsr"\nca_file = "a.pem"',
     "timestamping.url", "must not hold a user name or password"),
    ('url = "ftp://tsa.example.org/tsr"\nca_file = "a.pem"', "timestamping.url", "http(s)"),
    ('url = "https://tsa.example.org/tsr"\nca_file = "a.pem"\npolicy = "x.y"',
     "timestamping.policy", "object identifier"),
    ('url = "https://tsa.example.org/tsr"\nca_file = "a.pem"\ntimeout = "0s"',
     "timestamping.timeout", ""),
    ('uri = "https://tsa.example.org/tsr"', "timestamping.uri", "unknown key"),
])
def test_a_bad_section_is_an_error_naming_the_key(section: str, named: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load("[timestamping]\n" + section + "\n")
    message = caught.value.message
    assert f"  {named}: " in message and said in message
    assert "hunter2" not in message
