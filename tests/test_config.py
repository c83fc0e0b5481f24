from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from sigledger.ledger.errors import ConfigError
from sigledger.ledger.service.config import ServerConfig, load_config, load_settings
from tests.helpers import ROOT


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.listen == "127.0.0.1:8080"
    assert cfg.host_port == ("127.0.0.1", 8080)
    # the platform's data directory, never the working directory (conftest points
    # XDG_DATA_HOME at a temporary directory, so no test touches the real one)
    data = Path(platformdirs.user_data_dir("sigledger")) / "log"
    assert data.is_absolute() and data.is_relative_to(os.environ["XDG_DATA_HOME"])
    assert cfg.db_path == data / "log.db"
    assert cfg.key_path == data / "log.key"
    assert 0 < cfg.batch_max_age < 1


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'data = "from-file"\nlisten = "127.0.0.1:1"\nbatch-max-age = 0.2\n'
        'origin = "example.org/log"\n'
    )
    cfg = load_config(str(f), environ={})
    assert (cfg.data, cfg.listen, cfg.batch_max_age) == ("from-file", "127.0.0.1:1", 0.2)
    env = {"SIGLEDGER_LISTEN": "127.0.0.1:2", "SIGLEDGER_BATCH_MAX_AGE": "0.3"}
    cfg = load_config(str(f), environ=env)
    assert (cfg.listen, cfg.batch_max_age, cfg.data) == ("127.0.0.1:2", 0.3, "from-file")
    cfg = load_config(str(f), {"listen": "127.0.0.1:3", "data": None}, environ=env)
    assert (cfg.listen, cfg.data) == ("127.0.0.1:3", "from-file")
    cfg = load_config(environ={"SIGLEDGER_CONFIG": str(f)})
    assert cfg.origin == "example.org/log"


def test_observe_index_from_file_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'observe-index = ["https://pypi.org/simple https://files.pythonhosted.org/packages/"]\n'
    )
    cfg = load_config(str(f), environ={})
    assert cfg.observe_sources() == [
        ("https://pypi.org/simple/", ("https://files.pythonhosted.org/packages/",))
    ]
    env = {"SIGLEDGER_OBSERVE_INDEX": "http://127.0.0.1:1/simple/,http://127.0.0.1:2/a"}
    cfg = load_config(str(f), environ=env)
    assert cfg.observe_sources() == [
        ("http://127.0.0.1:1/simple/", ()),
        ("http://127.0.0.1:2/a/", ()),
    ]
    assert load_config(environ={}).observe_sources() == []


@pytest.mark.parametrize(
    ("text", "env", "match"),
    [
        ('listn = "x"\n', {}, r"unknown setting 'listn' \(did you mean 'listen'\?\)"),
        ('qwerty = "x"\n', {}, r"unknown setting 'qwerty'$"),
        ("batch_max_size = 'many'\n", {}, "batch_max_size has an invalid value"),
        ("batch_max_size = true\n", {}, "invalid value"),
        ("batch_max_size = 0\n", {}, "at least 1"),
        ('listen = "nowhere"\n', {}, "HOST:PORT"),
        ('origin = "has space"\n', {}, "origin"),
        ('log_format = "xml"\n', {}, "log_format"),
        ('log_level = "loud"\n', {}, "log_level"),
        ("not toml [", {}, "invalid TOML"),
        ("", {"SIGLEDGER_QUEUE_MAX": "lots"}, "SIGLEDGER_QUEUE_MAX"),
        ('observe_index = ["ftp://x/simple/"]\n', {}, "observe_index"),
        ('observe_index = ["https://x/simple/ files.example"]\n', {}, "not an http"),
        ("observe_max_files = 0\n", {}, "at least 1"),
        ("observe_timeout = 0\n", {}, "positive"),
        ("", {"SIGLEDGER_OBSERVE_CLIENT_RATE": "-1"}, "observe_client_rate"),
    ],
)
def test_invalid_config_is_refused(
    tmp_path: Path, text: str, env: dict[str, str], match: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(str(f), environ=env)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/sigledger.toml", environ={})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'listn'"):
        load_config(overrides={"listn": "x"}, environ={})


@dataclass
class _Toy:
    """A second settings class: one scalar, one list only the file and flags give."""

    size: int = 1
    names: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.size < 1:
            raise ConfigError("size must be at least 1")


def _names(value: Any, source: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: name must be a list")
    return [f"{source}:{v}" for v in value]


def test_load_settings_serves_any_settings_class(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('size = 2\nname = ["a"]\n')
    special = {"tables": {"name": ("names", _names)}, "flags": {"names": _names}}
    toy = load_settings(_Toy(), "TOY_", str(f), environ={}, **special)
    assert toy == _Toy(2, [f"{f}:a"])
    # The environment sets scalars only; flags win over both.
    env = {"TOY_SIZE": "3", "TOY_NAMES": "x"}
    toy = load_settings(_Toy(), "TOY_", str(f), {"names": ["b"]}, env, **special)
    assert toy == _Toy(3, ["command line:b"])
    with pytest.raises(ConfigError, match="unknown setting 'names'"):
        f.write_text('names = ["a"]\n')
        load_settings(_Toy(), "TOY_", str(f), environ={}, **special)
    with pytest.raises(ConfigError, match="size must be at least 1"):
        load_settings(_Toy(), "TOY_", None, {"size": 0}, {})


def test_database_setting(tmp_path: Path) -> None:
    default = Path(platformdirs.user_data_dir("sigledger")) / "log" / "log.db"
    assert load_config(environ={}).database_url == f"sqlite://{default}"
    assert load_config(overrides={"data": "log-data"}, environ={}).database_url == (
        "sqlite:log-data/log.db"
    )
    assert load_config(overrides={"data": "/srv/log"}, environ={}).database_url == (
        "sqlite:///srv/log/log.db"
    )
    f = tmp_path / "c.toml"
    f.write_text('database = "postgresql://log@db.example.org:5432/log"\n')
    assert load_config(str(f), environ={}).database_url == (
        "postgresql://log@db.example.org:5432/log"
    )
    env = {"SIGLEDGER_DATABASE": "sqlite:elsewhere.db"}
    assert load_config(str(f), environ=env).database_url == "sqlite:elsewhere.db"
    flags = {"database": "postgres://other@127.0.0.1/x"}
    assert load_config(str(f), flags, environ=env).database == "postgres://other@127.0.0.1/x"
    with pytest.raises(ConfigError, match="database must be a URL"):
        load_config(overrides={"database": "/var/lib/log.db"}, environ={})


def test_the_example_configuration_lists_every_setting() -> None:
    """deploy/sigledger.toml documents every key (deploy/README.md says so) and loads."""
    example = ROOT / "deploy" / "sigledger.toml"
    listed = set(re.findall(r"^#?([a-z_]+) = ", example.read_text(), re.MULTILINE))
    assert listed == {f.name for f in fields(ServerConfig)}
    assert load_config(str(example), environ={}).data == "/var/lib/sigledger"
    # The first commented-out value of each key is its default.
    defaults = load_config(environ={})
    shown: dict[str, object] = {}
    for name, value in re.findall(r"^#([a-z_]+) = (.*)$", example.read_text(), re.MULTILINE):
        shown.setdefault(name, tomllib.loads(f"v = {value}")["v"])

    def default(name: str) -> object:
        value = getattr(defaults, name)
        return list(value) if isinstance(value, tuple) else value

    assert len(shown) > 30
    assert {n: v for n, v in shown.items() if v != default(n)} == {}
