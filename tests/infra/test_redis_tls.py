"""Redis over TLS: server verification (CA file, host name), mutual TLS, an ACL user with a
password from a file; and every way it can be refused, each a store failure whose message names
the problem, never a crash, never plain text, never a secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.commands import run_cli
from tests.support.credentials import REDIS_PASSWORD
from tests.support.pki import PKI
from tests.support.servers import RedisServer, RedisTLS, free_port, need, start_or_fail
from tests.support.services import Services, mysql_of, sql_connect
from tests.support.stores import push, stored
from tests.support.waiting import wait_until
from tests.support.workers import tagged_env, worker_process
from trio_worker.config import from_env

# TLS 1.3 ends the handshake before the server checks a client certificate: the client reads
# the server's alert, or (when the reset beats the alert) only the reset. Either message is right.
EITHER = " | "


def tls_env(server: RedisServer, pki: PKI, secret: Path, **changes: str) -> dict[str, str]:
    """Mutual TLS as the ACL user ``worker``, the password read from a file; ``changes``
    override (an empty value removes the variable)."""
    env = {
        "REDIS_URL": f"rediss://worker@localhost:{server.port}/0",
        "REDIS_PASSWORD_FILE": str(secret),
        "REDIS_TLS_CA_FILE": str(pki.ca),
        "REDIS_TLS_CERT_FILE": str(pki.client.cert),
        "REDIS_TLS_KEY_FILE": str(pki.client.key),
    }
    env.update(changes)
    return {k: v for k, v in env.items() if v}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(REDIS_PASSWORD + "\n")
    return path


@pytest.fixture(scope="session")
def expired_redis(pki: PKI, short_dir: Path) -> Iterator[RedisServer]:
    """A TLS Redis whose own certificate has expired (client certificates not required)."""
    need("redis-server")
    directory = short_dir / "expired-redis"
    directory.mkdir()
    server = RedisServer(
        "expired-redis",
        directory,
        tls=RedisTLS(pki.expired_server.cert, pki.expired_server.key, pki.ca, "no"),
        client_tls={"ssl_cert_reqs": "none"},
    )
    start_or_fail(server, "redis-server with TLS")
    yield server
    server.stop()


async def test_a_worker_drains_over_mutual_tls_as_an_acl_user(
    tls_redis: RedisServer,
    pki: PKI,
    secret: Path,
    shared_mysql: dict[str, str],
    services: Services,
    tag: str,
    start_worker: Any,
) -> None:
    config = from_env({**tagged_env(tag), **shared_mysql, **tls_env(tls_redis, pki, secret)})
    assert config.redis_tls
    assert config.redis_username == "worker"
    worker = await start_worker(config)
    ids = [f"tls{i}" for i in range(1500)]
    client = tls_redis.client()
    try:
        push(client, config.vote_queue, ids)
        sql = sql_connect(services)
        with sql:
            await wait_until(
                lambda: len(stored(sql, config.mysql_database)) == len(ids),
                what="every vote stored",
            )
            counts = stored(sql, config.mysql_database)
        assert counts == dict.fromkeys(ids, 1)
        # The server's view (a TLS-only port): the worker's connections log in as its ACL user.
        # One the worker is opening right now has sent nothing yet (cmd=NULL): it is still
        # the server's "default", which is off, until it logs in.
        users = {c["user"] for c in client.client_list() if c["cmd"] != "NULL"}
        assert users == {"worker", "admin"}, users
    finally:
        worker.stop.set()
        await wait_until(lambda: bool(worker.exit_status), what="the drain")
        assert worker.exit_status == [0]
        leftover = list(client.scan_iter(match=f"{config.vote_queue}*"))
        if leftover:
            client.delete(*leftover)
        client.close()


def test_check_says_tls_and_the_user_never_the_password(
    tls_redis: RedisServer, pki: PKI, secret: Path, services: Services, tag: str
) -> None:
    result = run_cli(
        {**tagged_env(tag), **mysql_of(services), **tls_env(tls_redis, pki, secret)}, "check"
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("ok: Redis"))
    assert f"ok: Redis at localhost:{tls_redis.port}: reachable (TLSv1." in line
    assert "certificate and host name verified, client certificate, user 'worker')" in line
    assert REDIS_PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("case", "changes", "message"),
    [
        (
            "wrong CA",
            {"REDIS_TLS_CA_FILE": "{other_ca}"},
            "TLS handshake failed: the server's certificate was refused: self-signed certificate"
            " in certificate chain (is REDIS_TLS_CA_FILE the CA that signed it?)",
        ),
        (
            "wrong host name",
            {"REDIS_URL": "rediss://worker@127.0.0.1:{port}/0"},
            "TLS handshake failed: the server's certificate was refused: IP address mismatch,"
            " certificate is not valid for '127.0.0.1' (connect by a name the certificate lists,"
            " or set REDIS_TLS_VERIFY=ca to check the certificate only)",
        ),
        (
            "plain text to a TLS-only port",
            {"REDIS_URL": "redis://worker@localhost:{port}/0", "REDIS_TLS_CA_FILE": ""},
            "connection reset by peer (if the server accepts TLS only, set REDIS_TLS=true)",
        ),
        (
            "no client certificate",
            {"REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": ""},
            "TLS handshake failed: the server requires a client certificate (REDIS_TLS_CERT_FILE)"
            f"{EITHER}connection reset by peer (did the server refuse our client certificate?"
            " REDIS_TLS_CERT_FILE)",
        ),
        (
            "untrusted client certificate",
            {"REDIS_TLS_CERT_FILE": "{other_cert}", "REDIS_TLS_KEY_FILE": "{other_key}"},
            "TLS handshake failed: the server refused our client certificate (unknown ca;"
            f" REDIS_TLS_CERT_FILE){EITHER}connection reset by peer (did the server refuse our"
            " client certificate? REDIS_TLS_CERT_FILE)",
        ),
    ],
    ids=lambda v: v.replace(" ", "-") if isinstance(v, str) and len(v) < 40 else "",
)
def test_check_names_each_tls_refusal_and_exits_1(
    tls_redis: RedisServer,
    pki: PKI,
    secret: Path,
    services: Services,
    tag: str,
    case: str,
    changes: dict[str, str],
    message: str,
) -> None:
    fill = {
        "other_ca": str(pki.other_ca),
        "port": str(tls_redis.port),
        "other_cert": str(pki.other_client.cert),
        "other_key": str(pki.other_client.key),
    }
    changes = {k: v.format(**fill) for k, v in changes.items()}
    if "REDIS_URL" in changes and changes["REDIS_URL"].startswith("redis://"):
        changes |= {"REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": ""}
    env = {**tagged_env(tag), **mysql_of(services), **tls_env(tls_redis, pki, secret, **changes)}
    result = run_cli(env, "check")
    assert result.returncode == 1, (case, result.stdout, result.stderr)
    host = "127.0.0.1" if "127.0.0.1" in env["REDIS_URL"] else "localhost"
    expected = [f"error: Redis at {host}:{tls_redis.port}: {m}" for m in message.split(EITHER)]
    assert any(e in result.stderr for e in expected), (case, result.stderr)
    assert REDIS_PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_verify_ca_accepts_the_certificate_whatever_the_host_name(
    tls_redis: RedisServer, pki: PKI, secret: Path, services: Services, tag: str
) -> None:
    changes = {
        "REDIS_URL": f"rediss://worker@127.0.0.1:{tls_redis.port}/0",
        "REDIS_TLS_VERIFY": "ca",
    }
    result = run_cli(
        {**tagged_env(tag), **mysql_of(services), **tls_env(tls_redis, pki, secret, **changes)},
        "check",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "certificate verified, not the host name, client certificate, user 'worker'"
        in result.stdout
    )


def test_an_expired_server_certificate_is_refused(
    expired_redis: RedisServer, pki: PKI, services: Services, tag: str
) -> None:
    env = {
        **tagged_env(tag),
        **mysql_of(services),
        "REDIS_URL": f"rediss://localhost:{expired_redis.port}",
        "REDIS_TLS_CA_FILE": str(pki.ca),
    }
    result = run_cli(env, "check")
    assert result.returncode == 1
    assert (
        f"error: Redis at localhost:{expired_redis.port}: TLS handshake failed: the server's"
        " certificate was refused: certificate has expired (the server's certificate must be"
        " renewed)"
    ) in result.stderr


def test_a_wrong_password_is_refused_without_showing_it(
    tls_redis: RedisServer, pki: PKI, tmp_path: Path, services: Services, tag: str
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + REDIS_PASSWORD)
    result = run_cli(
        {**tagged_env(tag), **mysql_of(services), **tls_env(tls_redis, pki, wrong)}, "check"
    )
    assert result.returncode == 1
    assert "invalid username-password pair" in result.stderr
    assert REDIS_PASSWORD not in result.stdout + result.stderr


async def test_a_refused_worker_says_503_and_logs_why_never_a_secret(
    tls_redis: RedisServer, pki: PKI, secret: Path, services: Services, tag: str, tmp_path: Path
) -> None:
    """The worker keeps running (no crash, no plain text): /health and /ready say 503 while
    the log names the certificate problem; no answer and no log line holds a password."""
    env = {
        **tagged_env(tag),
        **mysql_of(services),
        **tls_env(tls_redis, pki, secret, REDIS_TLS_CA_FILE=str(pki.other_ca)),
    }
    from_env(env)  # a configuration the worker accepts
    port = free_port()
    log = tmp_path / "worker.log"
    async with worker_process(env, log, PORT=str(port)) as proc:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as http:

            def logged() -> bool:
                return "TLS handshake failed" in log.read_text(errors="replace")

            await wait_until(logged, what="the TLS failure in the log")
            health = await http.get(url + "/health")
            ready = await http.get(url + "/ready")
            metrics = await http.get(url + "/metrics")
        assert health.status_code == 503
        assert health.json()["redis"] == "disconnected"
        assert ready.status_code == 503
        assert proc.returncode is None, "the worker must keep running"
        text = log.read_text(errors="replace")
        assert "certificate was refused: self-signed certificate in certificate chain" in text
        for body in (health.text, ready.text, metrics.text, text):
            assert REDIS_PASSWORD not in body
            assert "Traceback" not in body
        proc.terminate()
        with trio.fail_after(30):
            await proc.wait()
