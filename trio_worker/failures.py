"""Failures said plainly: the one place a store error becomes its short, secret-free text.

Both stores' boundaries (``queue.errors`` for Redis, ``mysql.codes`` for MySQL) map a driver's
exception to a domain error whose reason comes from here: a refused or dropped connection, a
TLS handshake that failed (naming the certificate problem and the variable to look at), a
Sentinel group that names no primary, a MySQL login refused. Nothing here includes a password,
a URL or an option value: only what the server or the socket said, and our variables' names.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TLSNames:
    """The variables a TLS failure's message points at, per store."""

    ca: str
    cert: str
    identity_off: str  # how to check the certificate but not the host name


REDIS_TLS = TLSNames("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_VERIFY=ca")
MYSQL_TLS = TLSNames("MYSQL_SSL_CA", "MYSQL_SSL_CERT", "MYSQL_SSL_MODE=VERIFY_CA")

# OpenSSL's reasons for an alert the server sent about our client certificate.
_CLIENT_CERT_REQUIRED = ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE")
_CLIENT_CERT_REFUSED = (
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
)
# What a TLS client reads when the other end answers in plain text.
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "RECORD_LAYER_FAILURE",
)


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for a store error ("connection refused", "timed out")."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, OSError):
        return describe(cause)
    if len(exc.args) == 2 and isinstance(exc.args[0], int) and isinstance(exc.args[1], str):
        text = exc.args[1].strip()  # a driver's (code, message): the code is reported apart
    else:
        text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    return text.splitlines()[0][:200]


def tls_failure(exc: BaseException, names: TLSNames) -> str | None:
    """What went wrong in TLS, if ``exc`` is (or was caused by) a TLS failure; else None."""
    for error in chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            why = getattr(error, "verify_message", None) or getattr(error, "reason", None)
            why = why or "not trusted"
            why = str(why).rstrip(".")
            if "mismatch" in why:
                hint = (
                    "connect by a name the certificate lists, or set "
                    f"{names.identity_off} to check the certificate only"
                )
            elif "expired" in why or "not yet valid" in why:
                hint = "the server's certificate must be renewed"
            else:
                hint = f"is {names.ca} the CA that signed it?"
            return f"TLS handshake failed: the server's certificate was refused: {why} ({hint})"
        if isinstance(error, ssl.SSLError):
            reason = str(getattr(error, "reason", None) or "")
            if reason in _CLIENT_CERT_REQUIRED:
                return (
                    f"TLS handshake failed: the server requires a client certificate ({names.cert})"
                )
            if reason in _CLIENT_CERT_REFUSED:
                alert = reason.split("ALERT_", 1)[-1].replace("_", " ").lower()
                return (
                    f"TLS handshake failed: the server refused our client certificate ({alert};"
                    f" {names.cert})"
                )
            if reason in _NOT_TLS:
                return "TLS handshake failed: the server did not answer in TLS (a plain-text port?)"
            detail = reason.replace("_", " ").lower() if reason else type(error).__name__
            return f"TLS failed: {detail}"
    return None


def store_failure(exc: BaseException, names: TLSNames) -> str:
    """The reason for a failed store call: the TLS problem if there was one, else ``describe``."""
    reason = tls_failure(exc, names)
    return describe(exc) if reason is None else reason


def no_primary(text: str) -> str:
    """Sentinel's "No master found for 'x' : <client> - <error>, ...", said shortly (redis-py's
    text repeats each Sentinel client's whole configuration)."""
    found = re.search(r"for '([^']*)'", text)
    service = found.group(1) if found else "?"
    _, _, errors = text.partition(" : ")
    silent = errors.count(" - ")
    if silent:
        return (
            f"no Sentinel named a primary for {service!r}: {silent} did not answer"
            " (unreachable, or refusing REDIS_SENTINEL_PASSWORD)"
        )
    return (
        f"the Sentinels name no primary for {service!r} (a failover under way, or a service"
        " they do not watch: REDIS_SENTINEL_MASTER)"
    )


# MySQL's client codes a failed login raises itself.
_ACCESS_DENIED = 1045
_CR_SERVER_LOST = 2013


def mysql_login(reason: str, cause: BaseException, code: int | None, client_cert: bool) -> str:
    """A failed MySQL connect, said plainly: the certificate problem, or what else to look at."""
    tls = tls_failure(cause, MYSQL_TLS)
    if tls is not None:
        return tls
    if code == _ACCESS_DENIED and not client_cert:
        return (
            f"{reason}: a wrong user or password, or an account that requires TLS or a client"
            " certificate (MYSQL_SSL_MODE, MYSQL_SSL_CERT)"
        )
    if code == _CR_SERVER_LOST and client_cert:
        return f"{reason}: did the server refuse our client certificate? (MYSQL_SSL_CERT)"
    return reason
