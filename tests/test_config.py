from __future__ import annotations

from pathlib import Path

import pytest

from sigledger.ledger.errors import ConfigError
from sigledger.ledger.service.config import load_config


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.listen == "127.0.0.1:8080"
    assert cfg.host_port == ("127.0.0.1", 8080)
    assert cfg.db_path == Path("sigledger-data/log.db")
    assert cfg.key_path == Path("sigledger-data/log.key")
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


@pytest.mark.parametrize(
    ("text", "env", "match"),
    [
        ('listn = "x"\n', {}, "unknown setting 'listn'"),
        ("batch_max_size = 'many'\n", {}, "batch_max_size has an invalid value"),
        ("batch_max_size = true\n", {}, "invalid value"),
        ("batch_max_size = 0\n", {}, "at least 1"),
        ('listen = "nowhere"\n', {}, "HOST:PORT"),
        ('origin = "has space"\n', {}, "origin"),
        ('log_format = "xml"\n', {}, "log_format"),
        ("not toml [", {}, "invalid TOML"),
        ("", {"SIGLEDGER_QUEUE_MAX": "lots"}, "SIGLEDGER_QUEUE_MAX"),
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
