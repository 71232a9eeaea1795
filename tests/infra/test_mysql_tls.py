"""MySQL over TLS: ``MYSQL_SSL_MODE`` with the mysql client's five meanings, client
certificates, accounts that REQUIRE SSL or X509, and every refusal named (never a crash, never
a fall-back to plain text when TLS was asked for, never a secret)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pymysql
import pytest
import redis
import trio
import trio_asyncio

from tests.support.commands import run_cli
from tests.support.credentials import MYSQL_PASSWORD
from tests.support.faults import FaultProxy
from tests.support.pki import PKI
from tests.support.servers import TLSMariaDB
from tests.support.services import Services, redis_of
from tests.support.stores import push, stored
from tests.support.waiting import wait_until
from tests.support.workers import stop_and_clean, tagged_env
from trio_worker.config import from_env
from trio_worker.mysql.connection import Connection


def mysql_env(db: TLSMariaDB, user: str, **settings: str) -> dict[str, str]:
    return {
        "MYSQL_HOST": "localhost",
        "MYSQL_PORT": str(db.port),
        "MYSQL_USER": user,
        "MYSQL_PASSWORD": MYSQL_PASSWORD,
        **settings,
    }


async def test_a_worker_drains_with_verify_identity_and_a_client_certificate(
    tls_mariadb: TLSMariaDB, pki: PKI, services: Services, tag: str, start_worker: Any
) -> None:
    """The account requires a client certificate (REQUIRE X509): every connection the worker
    opens (three flushers, the probe, the pruner) is TLS with the certificate, verified by CA
    and host name."""
    tls = {
        "MYSQL_SSL_MODE": "VERIFY_IDENTITY",
        "MYSQL_SSL_CA": str(pki.ca),
        "MYSQL_SSL_CERT": str(pki.client.cert),
        "MYSQL_SSL_KEY": str(pki.client.key),
    }
    config = from_env(
        {**tagged_env(tag), **redis_of(services), **mysql_env(tls_mariadb, "x509_user", **tls)}
    )
    worker = await start_worker(config)
    ids = [f"my{i}" for i in range(1200)]
    client = redis.Redis(host=services.redis_host, port=services.redis_port)
    admin = tls_mariadb.admin()
    try:
        push(client, config.vote_queue, ids)
        await wait_until(
            lambda: len(stored(admin, config.mysql_database)) == len(ids), what="every vote stored"
        )
        assert stored(admin, config.mysql_database) == dict.fromkeys(ids, 1)
    finally:
        await stop_and_clean(worker, client, admin, config.mysql_database, config.vote_queue)
    assert worker.exit_status == [0]


# (case, user, settings, host, expected line on success, or None; expected error otherwise)
CASES: list[tuple[str, str, dict[str, str], str, str]] = [
    (
        "verify-identity",
        "tls_user",
        {"MYSQL_SSL_MODE": "VERIFY_IDENTITY", "MYSQL_SSL_CA": "{ca}"},
        "localhost",
        "ok: certificate and host name verified, user 'tls_user@%'",
    ),
    (
        "verify-identity-wrong-host-name",
        "tls_user",
        {"MYSQL_SSL_MODE": "VERIFY_IDENTITY", "MYSQL_SSL_CA": "{ca}"},
        "127.0.0.1",
        "error: TLS handshake failed: the server's certificate was refused: IP address mismatch,"
        " certificate is not valid for '127.0.0.1' (connect by a name the certificate lists, or"
        " set MYSQL_SSL_MODE=VERIFY_CA to check the certificate only)",
    ),
    (
        "verify-ca-any-host-name",
        "tls_user",
        {"MYSQL_SSL_CA": "{ca}"},  # a CA alone means VERIFY_CA, as the mysql client
        "127.0.0.1",
        "ok: certificate verified, not the host name, user 'tls_user@%'",
    ),
    (
        "verify-ca-wrong-ca",
        "tls_user",
        {"MYSQL_SSL_MODE": "VERIFY_CA", "MYSQL_SSL_CA": "{other_ca}"},
        "localhost",
        "error: TLS handshake failed: the server's certificate was refused: self-signed"
        " certificate in certificate chain (is MYSQL_SSL_CA the CA that signed it?)",
    ),
    (
        "required-no-verification",
        "tls_user",
        {"MYSQL_SSL_MODE": "REQUIRED"},
        "127.0.0.1",
        "ok: not verified: MYSQL_SSL_MODE=REQUIRED, user 'tls_user@%'",
    ),
    (
        "preferred-server-offers-tls",
        "tls_user",
        {},
        "127.0.0.1",
        "ok: not verified: MYSQL_SSL_MODE=PREFERRED, user 'tls_user@%'",
    ),
    (
        "disabled-account-requires-ssl",
        "tls_user",
        {"MYSQL_SSL_MODE": "DISABLED"},
        "127.0.0.1",
        "error: Access denied for user 'tls_user'@'127.0.0.1' (using password: YES) (error"
        " 1045): a wrong user or password, or an account that requires TLS or a client"
        " certificate (MYSQL_SSL_MODE, MYSQL_SSL_CERT)",
    ),
    (
        "x509-without-client-certificate",
        "x509_user",
        {"MYSQL_SSL_MODE": "VERIFY_IDENTITY", "MYSQL_SSL_CA": "{ca}"},
        "localhost",
        "error: Access denied for user 'x509_user'@'127.0.0.1' (using password: YES) (error"
        " 1045): a wrong user or password, or an account that requires TLS or a client"
        " certificate (MYSQL_SSL_MODE, MYSQL_SSL_CERT)",
    ),
    (
        "x509-with-client-certificate",
        "x509_user",
        {
            "MYSQL_SSL_MODE": "VERIFY_IDENTITY",
            "MYSQL_SSL_CA": "{ca}",
            "MYSQL_SSL_CERT": "{cert}",
            "MYSQL_SSL_KEY": "{key}",
        },
        "localhost",
        "ok: certificate and host name verified, client certificate, user 'x509_user@%'",
    ),
    (
        "x509-untrusted-client-certificate",
        "x509_user",
        {
            "MYSQL_SSL_MODE": "VERIFY_IDENTITY",
            "MYSQL_SSL_CA": "{ca}",
            "MYSQL_SSL_CERT": "{other_cert}",
            "MYSQL_SSL_KEY": "{other_key}",
        },
        "localhost",
        # TLS 1.3: the server's alert, or a reset that beat it (either way, said).
        "error: TLS handshake failed: the server refused our client certificate (unknown ca;"
        " MYSQL_SSL_CERT) | did the server refuse our client certificate? (MYSQL_SSL_CERT)",
    ),
]


@pytest.mark.parametrize(
    ("case", "user", "settings", "host", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_check_follows_each_ssl_mode(
    tls_mariadb: TLSMariaDB,
    pki: PKI,
    services: Services,
    tag: str,
    case: str,
    user: str,
    settings: dict[str, str],
    host: str,
    expected: str,
) -> None:
    fill = {
        "ca": pki.ca,
        "other_ca": pki.other_ca,
        "cert": pki.client.cert,
        "key": pki.client.key,
        "other_cert": pki.other_client.cert,
        "other_key": pki.other_client.key,
    }
    settings = {k: v.format(**fill) for k, v in settings.items()}
    env = {**tagged_env(tag), **redis_of(services), **mysql_env(tls_mariadb, user, **settings)}
    env["MYSQL_HOST"] = host
    result = run_cli(env, "check")
    status, text = expected.split(": ", 1)
    where = f"MySQL at {host}:{tls_mariadb.port}"
    if status == "ok":
        assert result.returncode == 0, result.stderr
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"ok: {where}"))
        assert ", TLSv1." in line, line
        assert text in line, line
    else:
        assert result.returncode == 1, result.stdout
        assert f"error: {where}: " in result.stderr
        assert any(t in result.stderr for t in text.split(" | ")), result.stderr
    assert MYSQL_PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def _offers_tls(services: Services) -> bool:
    conn = pymysql.connect(
        host=services.mysql_host,
        port=services.mysql_port,
        user=services.mysql_user,
        password=services.mysql_password,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
        row = cur.fetchone()
    return row is not None and row[1] == "YES"


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("PREFERRED", 0, "plain text: the server offers no TLS"),
        ("REQUIRED", 1, "TLS handshake failed: the server does not offer TLS (MYSQL_SSL_MODE)"),
        (
            "VERIFY_IDENTITY",
            1,
            "TLS handshake failed: the server does not offer TLS (MYSQL_SSL_MODE)",
        ),
    ],
)
def test_against_a_server_without_tls_only_preferred_goes_on_in_plain_text(
    services: Services, tag: str, mode: str, status: int, message: str
) -> None:
    if _offers_tls(services):
        pytest.skip("the shared MySQL server offers TLS")
    env = {
        **tagged_env(tag),
        **redis_of(services),
        "MYSQL_HOST": services.mysql_host,
        "MYSQL_PORT": str(services.mysql_port),
        "MYSQL_USER": services.mysql_user,
        "MYSQL_PASSWORD": services.mysql_password,
        "MYSQL_SSL_MODE": mode,
    }
    result = run_cli(env, "check")
    assert result.returncode == status, result.stdout + result.stderr
    assert message in (result.stdout if status == 0 else result.stderr)


async def test_a_worker_refused_by_mysql_tls_says_503_and_logs_why(
    tls_mariadb: TLSMariaDB,
    pki: PKI,
    services: Services,
    tag: str,
    start_worker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = {"MYSQL_SSL_MODE": "VERIFY_CA", "MYSQL_SSL_CA": str(pki.other_ca)}
    config = from_env(
        {**tagged_env(tag), **redis_of(services), **mysql_env(tls_mariadb, "tls_user", **tls)}
    )
    worker = await start_worker(config, ready=False)

    def logged() -> bool:
        return any(
            "certificate was refused" in str(getattr(r, "error", "")) for r in caplog.records
        )

    await wait_until(logged, what="the TLS failure in the log")
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(worker.url + "/health")
        assert answer.status_code == 503
        assert answer.json()["database"] == "disconnected"
        assert (await http.get(worker.url + "/ready")).status_code == 503
        assert MYSQL_PASSWORD not in answer.text
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the worker to stop")


async def test_a_hard_close_over_tls_closes_the_socket_even_if_the_server_cannot_answer(
    tls_mariadb: TLSMariaDB, pki: PKI, services: Services, tag: str, nursery: trio.Nursery
) -> None:
    """A TLS close sends close_notify and, by asyncio's rules, keeps the socket until the
    server answers. A connection the worker gives up on (or closes as it stops) must not wait
    for that: the loop may end first, leaving the socket open for the garbage collector. So,
    with the server unreachable behind a black hole, the socket is closed all the same."""
    proxy = FaultProxy("127.0.0.1", tls_mariadb.port)
    port = await nursery.start(proxy.serve)
    tls = {"MYSQL_SSL_MODE": "REQUIRED"}
    env = {**tagged_env(tag), **redis_of(services), **mysql_env(tls_mariadb, "tls_user", **tls)}
    config = replace(from_env(env), mysql_host="127.0.0.1", mysql_port=port)
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await conn.open(database=False)
        raw = conn._raw  # the driver's own socket is what is checked
        assert raw._transport.get_extra_info("cipher"), "not TLS"
        sock = raw._transport.get_extra_info("socket")
        proxy.set_blackhole(True)
        conn.close()
        await trio.sleep(0.2)  # the loop runs on; the server's close_notify never comes
        assert sock.fileno() == -1, "the socket is still open, waiting for the server"
    proxy.set_blackhole(False)
