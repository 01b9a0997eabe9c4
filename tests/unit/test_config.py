"""Settings: defaults, TOML, environment, --set; unknown keys and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.config import SETTINGS, Settings, env_name
from headrace.errors import ConfigError


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s["http.host"] == "127.0.0.1" and s["http.port"] == 8080
    assert s["mqtt.port"] == 1883 and s["mqtt.tls_port"] == 8883 and s["noti.port"] == 2015
    assert s["admin.token"] == "" and s.data_dir == Path("./headrace-data")
    assert all(src == "default" for _, _, src in s.items())


def test_every_setting_has_help_and_a_valid_default() -> None:
    names = [x.name for x in SETTINGS]
    assert len(names) == len(set(names))
    for x in SETTINGS:
        assert x.help and isinstance(x.default, x.type)


def test_sources_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text('[http]\nport = 9000\nhost = "0.0.0.0"\n[mqtt]\nport = 1999\n')
    s = Settings.load(cfg, ["mqtt.port=2001"], environ={"HEADRACE_HTTP_PORT": "9100"})
    assert s["http.host"] == "0.0.0.0"  # file
    assert s["http.port"] == 9100  # environment beats the file
    assert s["mqtt.port"] == 2001  # --set beats both
    assert s.sources["mqtt.port"] == "--set" and s.sources["http.port"] == "environment"
    assert env_name("mqtt.tls_port") == "HEADRACE_MQTT_TLS_PORT"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"overrides": ["http.prot=1"]}, "unknown setting 'http.prot'"),
        ({"overrides": ["http.port"]}, "key=value"),
        ({"overrides": ["http.port=abc"]}, "expects int"),
        ({"overrides": ["http.port=70000"]}, "port number"),
        ({"overrides": ["store.synchronous=sometimes"]}, "one of full, normal"),
        ({"overrides": ["tls.cert_file=/x.pem"]}, "together"),
        ({"overrides": ["push.write_delay_ms=-1"]}, "must not be negative"),
        ({"environ": {"HEADRACE_NOPE": "1"}}, "HEADRACE_NOPE"),
    ],
)
def test_refusals(kwargs: dict, words: str) -> None:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as e:
        Settings.load(**kwargs)
    assert words in e.value.message


def test_unknown_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text("[http]\nports = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'http\.ports'"):
        Settings.load(cfg, environ={})
    cfg.write_text("[http\n")
    with pytest.raises(ConfigError, match=r"h\.toml"):
        Settings.load(cfg, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.load(tmp_path / "missing.toml", environ={})
