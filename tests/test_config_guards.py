"""Configuration mistakes an ordinary deployment makes, stopped at start with exit 2 and a
message that says what to do: a secret given twice, a Kubernetes service link in a ``*_PORT``;
and the MySQL settings, which a command that needs only Redis never reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trio_worker.config import ConfigError, from_env, variables
from trio_worker.config.env import read
from trio_worker.config.reader import Env
from trio_worker.config.secrets import SecretUnreadable, current

SECRETS = [
    ("MYSQL_PASSWORD", "MYSQL_PASSWORD_FILE"),
    ("REDIS_PASSWORD", "REDIS_PASSWORD_FILE"),
    ("REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_PASSWORD_FILE"),
]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_worker", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("name", "file_name"), SECRETS)
def test_a_secret_given_twice_names_both_variables(
    tmp_path: Path, name: str, file_name: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n")
    with pytest.raises(ConfigError) as info:
        from_env({name: "given-directly", file_name: str(secret)})
    message = str(info.value)
    assert message.startswith(f"{file_name}: expected to be unset when {name} is set")
    assert "given-directly" not in message
    assert "from-the-file" not in message


def test_a_secret_given_twice_exits_2_before_connecting(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    done = run_cli({"MYSQL_PASSWORD": "hunter3", "MYSQL_PASSWORD_FILE": str(secret)}, "check")
    assert done.returncode == 2, done.stderr
    assert "MYSQL_PASSWORD_FILE: expected to be unset when MYSQL_PASSWORD is set" in done.stderr
    assert "hunter" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_PORT": "tcp://10.96.0.12:6379"}, "REDIS_PORT"),
        # Switched to a URL: the ConfigMap no longer sets REDIS_PORT, the service link still does.
        (
            {"REDIS_URL": "redis://cache:6379/0", "REDIS_PORT": "tcp://10.96.0.12:6379"},
            "REDIS_PORT",
        ),
        ({"MYSQL_PORT": "tcp://10.96.0.13:3306"}, "MYSQL_PORT"),
        ({"MYSQL_UNIX_SOCKET": "/cloudsql/x", "MYSQL_PORT": "tcp://10.96.0.13:3306"}, "MYSQL_PORT"),
    ],
)
def test_a_kubernetes_service_link_in_a_port_names_enable_service_links(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: expected a port number")
    assert "set enableServiceLinks: false in the pod spec" in str(info.value)
    service = variable.removesuffix("_PORT").lower()
    assert f"a Service named {service!r}" in str(info.value)


def test_redis_url_with_an_injected_redis_port_exits_2_naming_enable_service_links() -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_PORT": "tcp://10.96.0.12:6379"}
    for command in (["check"], ["run"], ["dlq", "list"]):
        done = run_cli(env, *command)
        assert done.returncode == 2, (command, done.stderr)
        assert "REDIS_PORT: expected a port number" in done.stderr
        assert "enableServiceLinks: false" in done.stderr


def test_a_redis_only_configuration_reads_no_mysql_variable() -> None:
    env = Env({})
    config = read(env, mysql=False)
    assert config.mysql_configured is False
    assert {name for name in env.read if name.startswith("MYSQL_")} == set()
    assert env.read == {v.name for v in variables.ALL if not v.name.startswith("MYSQL_")}


def test_a_bad_mysql_setting_stops_mysql_commands_only(tmp_path: Path) -> None:
    bad = {
        "MYSQL_SSL_CA": str(tmp_path / "absent.pem"),
        "MYSQL_PASSWORD": "a",
        "MYSQL_PASSWORD_FILE": "b",
    }
    with pytest.raises(ConfigError):
        from_env(bad)
    assert from_env(bad, mysql=False).mysql_configured is False


def test_a_password_file_is_read_as_it_is_now(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    config = from_env({"MYSQL_PASSWORD_FILE": str(secret)})
    assert current("MYSQL_PASSWORD_FILE", config.mysql_password, config.mysql_password_file) == (
        "first"
    )
    secret.write_text("second\n")
    assert current("MYSQL_PASSWORD_FILE", config.mysql_password, config.mysql_password_file) == (
        "second"
    )
    secret.unlink()
    with pytest.raises(SecretUnreadable) as info:
        current("MYSQL_PASSWORD_FILE", config.mysql_password, config.mysql_password_file)
    assert str(info.value) == "MYSQL_PASSWORD_FILE could not be read (No such file or directory)"
    # A password given directly is what it was.
    assert current("MYSQL_PASSWORD_FILE", "given", None) == "given"
