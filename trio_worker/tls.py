"""TLS for both stores: MySQL's context from ``MYSQL_SSL_MODE``, and a failed handshake said
plainly.

Redis' TLS is redis-py's own (its ``ssl_*`` options, see ``queue.client``); MySQL's is an
``ssl.SSLContext`` handed to asyncmy (``mysql.connection``). Either way a handshake that fails is
a store failure whose message names the certificate problem (``describe_failure``): never a
crash, never a fall-back to plain text. Messages name certificates' problems and the variables
to look at, never a secret.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from trio_worker.config import Config


@dataclass(frozen=True)
class Names:
    """The variables a TLS failure's message points at, per store."""

    ca: str
    cert: str
    identity_off: str  # how to check the certificate but not the host name


REDIS = Names("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_VERIFY=ca")
MYSQL = Names("MYSQL_SSL_CA", "MYSQL_SSL_CERT", "MYSQL_SSL_MODE=VERIFY_CA")


def mysql_context(config: Config) -> ssl.SSLContext | None:
    """The context for asyncmy, as the mysql client's ``--ssl-mode`` reads (None: plain text).

    ``PREFERRED`` and ``REQUIRED`` encrypt without verifying the server (as the mysql client);
    ``VERIFY_CA`` checks the certificate against ``MYSQL_SSL_CA`` (or the system's CAs),
    ``VERIFY_IDENTITY`` its host name too. ``PREFERRED`` over a Unix socket is plain text, as
    with the mysql client: the socket is local. Files are read at each connect, so a renewed
    certificate is picked up by the next connection.
    """
    mode = config.mysql_ssl_mode
    if mode == "DISABLED" or (mode == "PREFERRED" and config.mysql_unix_socket):
        return None
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        # cafile=None: the system's CAs; a file given: that bundle alone (as --ssl-ca).
        context = ssl.create_default_context(cafile=config.mysql_ssl_ca)
        context.check_hostname = mode == "VERIFY_IDENTITY"
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.mysql_ssl_cert:
        context.load_cert_chain(config.mysql_ssl_cert, config.mysql_ssl_key)
    return context


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


def describe_failure(exc: BaseException, names: Names) -> str | None:
    """What went wrong in TLS, if ``exc`` is (or was caused by) a TLS failure; else None."""
    for error in chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            why = str(error.verify_message or error.reason or "not trusted").rstrip(".")
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
            reason = str(error.reason or "")
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
