"""MySQL's TLS context, from ``MYSQL_SSL_MODE``.

Redis' TLS is redis-py's own (its ``ssl_*`` options, see ``queue.client``); MySQL's is an
``ssl.SSLContext`` handed to asyncmy (``mysql.login``). Either way a handshake that fails is a
store failure whose message names the certificate problem (``failures.tls_failure``): never a
crash, never a fall-back to plain text.
"""

from __future__ import annotations

import ssl

from trio_worker.config import Config


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
