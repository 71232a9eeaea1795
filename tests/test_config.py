"""Configuration: defaults, every variable validated, secrets kept out of sight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trio_worker.config import ConfigError, from_env


def test_defaults_match_the_contract() -> None:
    c = from_env({})
    assert (c.redis_host, c.redis_port, c.redis_db, c.redis_password) == (
        "localhost",
        6379,
        0,
        None,
    )
    assert (c.mysql_host, c.mysql_port, c.mysql_user, c.mysql_password) == (
        "localhost",
        3306,
        "root",
        "",
    )
    assert (c.mysql_database, c.vote_queue, c.http_host, c.http_port) == (
        "voting",
        "votes",
        "0.0.0.0",
        8080,
    )
    assert c.batch_size == 1000
    assert c.flush_interval_s == pytest.approx(0.020)
    assert c.heartbeat_ttl_s == 15
    assert c.shutdown_timeout_s == 25
    assert c.consume_from == "right"
    assert c.vote_choices is None
    assert c.dead_letter_queue == "votes:dead"
    assert c.log_level == "info"
    assert c.worker_id != from_env({}).worker_id  # host name + random suffix


def test_values_are_read() -> None:
    c = from_env(
        {
            "VOTE_QUEUE": "q",
            "BATCH_SIZE": "50",
            "FLUSH_INTERVAL_MS": "0",
            "QUEUE_CONSUME_FROM": "LEFT",
            "VOTE_CHOICES": "cats, dogs",
            "WORKER_ID": "w-1",
            "SHUTDOWN_TIMEOUT_S": "2.5",
        }
    )
    assert c.dead_letter_queue == "q:dead"
    assert c.batch_size == 50
    assert c.flush_interval_s == 0
    assert c.consume_from == "left"
    assert c.vote_choices == frozenset({"cats", "dogs"})
    assert c.worker_id == "w-1"
    assert c.shutdown_timeout_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_PORT", "six"),
        ("REDIS_PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("MYSQL_PORT", "0"),
        ("PORT", "http"),
        ("BATCH_SIZE", "-1"),
        ("BATCH_SIZE", "0"),
        ("BATCH_SIZE", "1.5"),
        ("FLUSH_INTERVAL_MS", "-5"),
        ("FLUSH_INTERVAL_MS", "soon"),
        ("HEARTBEAT_TTL_S", "0"),
        ("HEARTBEAT_TTL_S", "0.5"),
        ("SHUTDOWN_TIMEOUT_S", "nan"),
        ("QUEUE_CONSUME_FROM", "middle"),
        ("VOTE_CHOICES", "a,,b"),
        ("VOTE_CHOICES", "a,waytoolongchoice"),
        ("WORKER_ID", "has space"),
        ("WORKER_ID", "a:b"),
        ("MYSQL_DATABASE", "x`; DROP"),
        ("LOG_LEVEL", "loud"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: expected") as info:
        from_env({variable: value})
    assert info.value.variable == variable


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    c = from_env({"MYSQL_PASSWORD_FILE": str(secret), "MYSQL_PASSWORD": "ignored"})
    assert c.mysql_password == "s3cret"
    assert "s3cret" not in repr(c)
    with pytest.raises(ConfigError, match=r"^MYSQL_PASSWORD_FILE: expected a readable UTF-8 file"):
        from_env({"MYSQL_PASSWORD_FILE": str(tmp_path / "missing")})


def test_secrets_stay_out_of_repr() -> None:
    c = from_env({"MYSQL_PASSWORD": "hunter2", "REDIS_PASSWORD": "swordfish"})
    assert "hunter2" not in repr(c)
    assert "swordfish" not in repr(c)


@pytest.mark.parametrize("command", ["run", "check"])
def test_bad_configuration_exits_2_before_connecting(command: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "BATCH_SIZE": "-1", "MYSQL_PASSWORD": "hunter2"}
    done = subprocess.run(
        [sys.executable, "-m", "trio_worker", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "BATCH_SIZE: expected a whole number from 1 to 100000, got '-1'" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
