"""Logging in to MySQL: asyncmy's arguments, TLS as ``MYSQL_SSL_MODE`` says, failures said plainly.

``session`` builds the driver's connection (not connected yet) on the asyncio loop; ``failure``
turns a failed connect into the one line an operator can act on. ``connection.Connection`` owns
what happens once the session is open.
"""

from __future__ import annotations

import ssl
from typing import Any

import asyncmy.connection
import asyncmy.errors
from asyncmy.constants import CLIENT

from trio_worker import compat, failures, tls
from trio_worker.config import Config, secrets
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql.codes import code_of

CONNECT_TIMEOUT_S = 5
# The client's error code for a TLS connection that can't be made.
_CR_SSL_CONNECTION_ERROR = 2026

# asyncmy's stubs leave out the handshake's internals that ``_Session`` reads.
_AsyncmyConnection: Any = asyncmy.connection.Connection


class _Session(_AsyncmyConnection):  # type: ignore[misc]
    """asyncmy's connection, deciding on TLS from what the server's greeting offers.

    asyncmy attempts TLS whenever it holds a context, whatever the server offers. Between the
    greeting (``server_capabilities``) and the login, where the mysql client decides too:
    ``preferred_tls`` (``PREFERRED``) is used only if the server offers TLS, and a mandatory
    context (``REQUIRED`` and up, from ``ssl``) stops the connection if it does not.
    """

    preferred_tls: ssl.SSLContext | None = None
    # asyncmy's own attributes (set by its __init__ and greeting).
    _ssl_context: Any
    _client_flag: int
    server_capabilities: int

    async def _request_authentication(self) -> None:
        offered = bool(self.server_capabilities & CLIENT.SSL)
        if self.preferred_tls is not None and offered:
            self._ssl_context = self.preferred_tls
            self._client_flag |= CLIENT.SSL
        elif self._ssl_context is not None and not offered:
            raise asyncmy.errors.OperationalError(
                _CR_SSL_CONNECTION_ERROR,
                "TLS handshake failed: the server does not offer TLS (MYSQL_SSL_MODE)",
            )
        await super()._request_authentication()


def connect_options(config: Config, *, database: bool) -> dict[str, Any]:
    """asyncmy.connect's arguments. ``ssl`` is the context a mandatory ``MYSQL_SSL_MODE``
    (``REQUIRED`` and up) asks for, read afresh each time so that renewed certificates are
    picked up; ``PREFERRED``'s optional TLS is added by ``_Session`` once the server's greeting
    offers it (given to asyncmy here, it would be attempted whatever the server). The password
    too is read afresh: ``MYSQL_PASSWORD_FILE`` again for every connection (a rotated secret)."""
    c = config
    mode = c.mysql_ssl_mode
    mandatory = mode not in ("DISABLED", "PREFERRED") or (
        mode == "PREFERRED" and not c.mysql_unix_socket and not _greeting_decides()
    )
    return {
        "host": c.mysql_host,
        "port": c.mysql_port,
        "unix_socket": c.mysql_unix_socket,
        "user": c.mysql_user,
        # As bytes: asyncmy would encode a str as latin-1 (no euro sign, and an é the server,
        # which hashed the UTF-8 bytes, refuses).
        "password": secrets.mysql_password(c).encode("utf-8"),
        "db": c.mysql_database if database else None,
        "charset": "utf8mb4",
        "autocommit": False,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "ssl": tls.mysql_context(c) if mandatory else None,
    }


def session(config: Config, database: bool) -> Any:
    """On the asyncio loop: the driver's connection, not connected yet."""
    raw = _Session(**connect_options(config, database=database))
    if config.mysql_ssl_mode == "PREFERRED":
        context = tls.mysql_context(config)  # None over a Unix socket
        if _greeting_decides():
            raw.preferred_tls = context
    return raw


def _greeting_decides() -> bool:
    """Whether ``_Session`` can decide on PREFERRED's TLS from the server's greeting; where the
    installed asyncmy lacks the step it overrides (``compat``), PREFERRED asks for TLS always."""
    return compat.present(compat.ASYNCMY_AUTHENTICATION)


def failure(config: Config, exc: MySQLUnavailable) -> MySQLUnavailable:
    """A failed connect, said plainly (``failures.mysql_login``)."""
    cause = exc.__cause__ or exc
    reason = failures.mysql_login(
        exc.reason, cause, code_of(cause), client_cert=config.mysql_ssl_cert is not None
    )
    return exc if reason == exc.reason else MySQLUnavailable(exc.address, reason, kind=exc.kind)
