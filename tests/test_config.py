"""Configuration: defaults, every variable validated, secrets kept out of sight."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from trio_worker.config import ConfigError, from_env, variables
from trio_worker.config.env import read
from trio_worker.config.reader import Env


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
    assert c.batch_size == 2000
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
    c = from_env({"MYSQL_PASSWORD_FILE": str(secret)})
    assert (c.mysql_password, c.mysql_password_file) == ("s3cret", str(secret))
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


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    env = Env({})
    read(env)
    assert env.read == variables.NAMES


def test_readme_and_contract_document_every_variable() -> None:
    root = Path(__file__).resolve().parent.parent
    for doc in ("README.md", "docs/contract.md"):
        text = (root / doc).read_text(encoding="utf-8")
        missing = [name for name in variables.NAMES if f"`{name}`" not in text]
        assert not missing, f"{doc} does not document {missing}"


def test_help_lists_every_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_worker", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    missing = [name for name in variables.NAMES if name not in done.stdout]
    assert not missing


def test_long_tail_settings() -> None:
    c = from_env({})
    assert (c.max_message_bytes, c.ledger_retention_s, c.mysql_read_timeout_s) == (
        65536,
        7 * 24 * 3600,
        30.0,
    )
    c = from_env(
        {"MAX_MESSAGE_BYTES": "1024", "LEDGER_RETENTION_S": "30", "MYSQL_READ_TIMEOUT_S": "2.5"}
    )
    assert (c.max_message_bytes, c.ledger_retention_s, c.mysql_read_timeout_s) == (1024, 30, 2.5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_MESSAGE_BYTES", "0"),
        ("MAX_MESSAGE_BYTES", "big"),
        ("MAX_MESSAGE_BYTES", str(1 << 30)),
        ("LEDGER_RETENTION_S", "29"),
        ("LEDGER_RETENTION_S", "a week"),
        ("MYSQL_READ_TIMEOUT_S", "0"),
        ("MYSQL_READ_TIMEOUT_S", "-1"),
        ("REDIS_TLS", "maybe"),
        ("REDIS_TLS_VERIFY", "none"),
        ("REDIS_CLUSTER", "sometimes"),
        ("REDIS_WAIT_REPLICAS", "-1"),
        ("REDIS_SENTINELS", "host-without-port"),
        ("REDIS_SENTINELS", "a:1,b:notaport"),
        ("REDIS_SENTINELS", "a:\u00b2"),  # a digit to str.isdigit, not to int()
        ("MYSQL_SSL_MODE", "ALWAYS"),
        ("REDIS_URL", "http://example.com"),
        ("REDIS_URL", "redis://host:99999"),
        ("REDIS_URL", "redis://host/notadb"),
        ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_a_bad_connection_value_names_the_variable(variable: str, value: str) -> None:
    extra = {"REDIS_TLS": "true"} if variable.startswith("REDIS_TLS_") else {}
    with pytest.raises(ConfigError, match=f"^{variable}: expected") as info:
        from_env({variable: value, **extra})
    assert info.value.variable == variable


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache:6380/2", ("cache", 6380, 2, None, None, False, None)),
        ("redis://app:p%40ss@cache", ("cache", 6379, 0, "app", "p@ss", False, None)),
        (
            "rediss://:secret@cache.example.com:6390",
            ("cache.example.com", 6390, 0, None, "secret", True, None),
        ),
        (
            "unix:///run/redis.sock?db=3",
            ("localhost", 6379, 3, None, None, False, "/run/redis.sock"),
        ),
    ],
)
def test_redis_url(url: str, expected: tuple[object, ...]) -> None:
    c = from_env({"REDIS_URL": url})
    got = (
        c.redis_host,
        c.redis_port,
        c.redis_db,
        c.redis_username,
        c.redis_password,
        c.redis_tls,
        c.redis_unix_socket,
    )
    assert got == expected
    assert "secret" not in repr(c)


@pytest.mark.parametrize(
    "other", ["REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "REDIS_USERNAME"]
)
def test_redis_url_and_a_variable_it_replaces_exit_2_naming_both(other: str) -> None:
    with pytest.raises(ConfigError, match=f"^{other}: expected to be unset when REDIS_URL is set"):
        from_env({"REDIS_URL": "redis://cache", other: "1"})


def test_tls_files_with_tls_off_are_refused_never_ignored(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"^REDIS_TLS_CA_FILE: expected REDIS_TLS=true"):
        from_env({"REDIS_TLS_CA_FILE": str(ca)})
    with pytest.raises(ConfigError, match=r"^REDIS_TLS: expected true as REDIS_URL's scheme says"):
        from_env({"REDIS_URL": "rediss://cache", "REDIS_TLS": "false"})
    c = from_env({"REDIS_URL": "rediss://cache", "REDIS_TLS_CA_FILE": str(ca)})
    assert (c.redis_tls, c.redis_tls_ca_file, c.redis_tls_verify) == (True, str(ca), "full")


def test_redis_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("swordfish\n")
    c = from_env({"REDIS_PASSWORD_FILE": str(secret), "REDIS_USERNAME": "app"})
    assert (c.redis_username, c.redis_password) == ("app", "swordfish")
    with pytest.raises(ConfigError, match=r"^REDIS_PASSWORD_FILE: expected to be unset"):
        from_env({"REDIS_URL": "redis://:pw@cache", "REDIS_PASSWORD_FILE": str(secret)})


def test_sentinel_and_cluster_settings() -> None:
    c = from_env({"REDIS_SENTINELS": "s1:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "votes"})
    assert c.redis_sentinels == (("s1", 26379), ("::1", 26380))
    assert c.redis_address == "votes via Sentinel s1:26379,::1:26380"
    c = from_env({"REDIS_CLUSTER": "true", "VOTE_QUEUE": "{votes}"})
    assert (c.redis_cluster, c.dead_letter_queue) == (True, "{votes}:dead")
    with pytest.raises(ConfigError, match=r"^VOTE_QUEUE: expected a hash tag"):
        from_env({"REDIS_CLUSTER": "true"})
    with pytest.raises(ConfigError, match=r"^DEAD_LETTER_QUEUE: expected the queue's hash tag"):
        from_env({"REDIS_CLUSTER": "true", "VOTE_QUEUE": "{votes}", "DEAD_LETTER_QUEUE": "dead"})
    with pytest.raises(ConfigError, match=r"^REDIS_SENTINELS: expected to be unset"):
        from_env({"REDIS_CLUSTER": "true", "VOTE_QUEUE": "{v}", "REDIS_SENTINELS": "s:1"})


def test_mysql_tls_modes_and_socket(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert from_env({}).mysql_ssl_mode == "PREFERRED"
    assert from_env({"MYSQL_SSL_CA": str(ca)}).mysql_ssl_mode == "VERIFY_CA"
    c = from_env({"MYSQL_SSL_CA": str(ca), "MYSQL_SSL_MODE": "verify_identity"})
    assert c.mysql_ssl_mode == "VERIFY_IDENTITY"
    with pytest.raises(
        ConfigError, match=r"^MYSQL_SSL_MODE: expected VERIFY_CA or VERIFY_IDENTITY"
    ):
        from_env({"MYSQL_SSL_CA": str(ca), "MYSQL_SSL_MODE": "REQUIRED"})
    c = from_env({"MYSQL_UNIX_SOCKET": "/cloudsql/p:r:i/.s.PGSQL"})
    assert c.mysql_address == "unix:/cloudsql/p:r:i/.s.PGSQL"
    with pytest.raises(
        ConfigError, match=r"^MYSQL_HOST: expected to be unset when MYSQL_UNIX_SOCKET"
    ):
        from_env({"MYSQL_UNIX_SOCKET": "/s", "MYSQL_HOST": "db"})


def _documented_defaults(doc: str) -> dict[str, str]:
    """Each variable's default as a Markdown table of ``doc`` shows it (``| `A` / `B` | a / b |
    ...``), backticks and case aside."""
    found: dict[str, str] = {}
    for line in doc.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        if len(cells) < 3 or not names or not set(names) <= variables.NAMES:
            continue
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        if len(defaults) == 1:
            defaults *= len(names)  # one default said once for all of them ("unset")
        assert len(defaults) == len(names), f"{line}: one default per variable, or one for all"
        for name, default in zip(names, defaults, strict=True):
            found[name] = _plain(default)
    return found


def _plain(text: str) -> str:
    return " ".join(text.replace("`", "").lower().split())


@pytest.mark.parametrize("doc", ["README.md", "docs/contract.md"])
def test_the_docs_tables_give_each_variable_the_default_it_has(doc: str) -> None:
    """The README's and the contract's tables agree with the variable table, defaults included
    (the table is what the reader and --help use)."""
    root = Path(__file__).resolve().parent.parent
    shown = _documented_defaults((root / doc).read_text(encoding="utf-8"))
    wrong = {
        v.name: (shown[v.name], _plain(v.documented))
        for v in variables.ALL
        if v.name in shown and shown[v.name] != _plain(v.documented)
    }
    assert not wrong, f"{doc} (docs, table): {wrong}"


def test_every_default_in_the_table_is_a_value_the_reader_accepts() -> None:
    """Each literal default goes through the same parsing as a value from the environment:
    the configuration with nothing set is the table's, and so is each variable set to its
    default."""
    bare = replace(from_env({}), worker_id="w")
    for v in variables.ALL:
        if v.default is not None:
            assert replace(from_env({v.name: v.default}), worker_id="w") == bare, v.name
