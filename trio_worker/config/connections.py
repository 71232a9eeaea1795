"""How to reach Redis and MySQL: addresses, URLs, TLS, Sentinel, Cluster.

Conflicting settings stop the worker at start (exit 2) instead of one silently winning: a URL
and the variables it replaces, TLS files with TLS off, a CA with a MySQL mode that never reads
it. Nothing here ever falls back to plain text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from trio_worker.config.model import SSL_MODES, ConfigError
from trio_worker.config.reader import Env

# Replaced by REDIS_URL: setting both is a mistake worth stopping for.
_URL_REPLACES = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "REDIS_USERNAME")
_TLS_FILES = ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE")


def redis_settings(env: Env) -> dict[str, Any]:
    """The Config fields for Redis."""
    url = env.raw("REDIS_URL")
    sentinels = _sentinels(env)
    cluster = env.flag("REDIS_CLUSTER")
    out: dict[str, Any] = {}
    if url is not None:
        for name in _URL_REPLACES:
            if env.is_set(name):
                raise ConfigError(name, f"to be unset when REDIS_URL is set (it replaces {name})")
        if sentinels:
            raise ConfigError("REDIS_SENTINELS", "to be unset when REDIS_URL is set")
        out.update(_parse_url(url))
    else:
        out.update(
            redis_host=env.text("REDIS_HOST"),
            redis_port=env.integer("REDIS_PORT", low=1, high=65535),
            redis_db=env.integer("REDIS_DB", low=0, high=1 << 20),
            redis_username=env.optional("REDIS_USERNAME"),
        )
    # A Unix socket has no host or port; a URL or the variables may give no password.
    out.setdefault("redis_host", env.text("REDIS_HOST"))
    out.setdefault("redis_port", env.integer("REDIS_PORT", low=1, high=65535))
    out.setdefault("redis_unix_socket", None)
    out.setdefault("redis_password", None)
    password = env.secret("REDIS_PASSWORD", "REDIS_PASSWORD_FILE")
    if password.value is not None:
        if out.get("redis_password") is not None:
            raise ConfigError("REDIS_PASSWORD_FILE", "to be unset when REDIS_URL has a password")
        out["redis_password"] = password.value
    out["redis_password_file"] = password.path
    sentinel_password = env.secret("REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_PASSWORD_FILE")
    url_tls = out.pop("url_tls", None)
    tls = env.flag("REDIS_TLS", bool(url_tls))
    if url_tls is not None and url_tls != tls:
        raise ConfigError(
            "REDIS_TLS", f"{'true' if url_tls else 'false'} as REDIS_URL's scheme says"
        )
    files = {name: env.readable_file(name) for name in _TLS_FILES}
    if not tls:
        for name, path in files.items():
            if path is not None:
                raise ConfigError(name, "REDIS_TLS=true or a rediss:// URL (TLS is off)")
    elif out.get("redis_unix_socket"):
        raise ConfigError("REDIS_TLS", "false with a unix:// socket")
    if files["REDIS_TLS_KEY_FILE"] and not files["REDIS_TLS_CERT_FILE"]:
        raise ConfigError("REDIS_TLS_CERT_FILE", "a client certificate for REDIS_TLS_KEY_FILE")
    out.update(
        redis_tls=tls,
        redis_tls_ca_file=files["REDIS_TLS_CA_FILE"],
        redis_tls_cert_file=files["REDIS_TLS_CERT_FILE"],
        redis_tls_key_file=files["REDIS_TLS_KEY_FILE"],
        redis_tls_verify=env.choice("REDIS_TLS_VERIFY", ("full", "ca")),
        redis_sentinels=sentinels,
        redis_sentinel_master=env.text("REDIS_SENTINEL_MASTER"),
        redis_sentinel_password=sentinel_password.value,
        redis_sentinel_password_file=sentinel_password.path,
        redis_wait_replicas=env.integer("REDIS_WAIT_REPLICAS", low=0, high=100),
        redis_cluster=cluster,
    )
    if cluster:
        if sentinels:
            raise ConfigError("REDIS_SENTINELS", "to be unset with REDIS_CLUSTER=true")
        if out.get("redis_unix_socket"):
            raise ConfigError("REDIS_URL", "a redis:// or rediss:// URL with REDIS_CLUSTER=true")
        if out.get("redis_db"):
            raise ConfigError("REDIS_DB", "0 with REDIS_CLUSTER=true (a cluster has one database)")
    return out


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes, if it has a tag (Redis' own rule)."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def check_cluster_queue(env: Env, queue: str, dead: str) -> None:
    """In a cluster every key of the worker must hash to one slot, for the scripts' sake."""
    if not env.flag("REDIS_CLUSTER"):
        return
    tag = hash_tag(queue)
    if tag is None:
        raise ConfigError("VOTE_QUEUE", "a hash tag with REDIS_CLUSTER=true, e.g. '{votes}'", queue)
    if hash_tag(dead) != tag:
        raise ConfigError("DEAD_LETTER_QUEUE", f"the queue's hash tag {{{tag}}}", dead)


def _parse_url(url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("REDIS_URL", f"a redis://, rediss:// or unix:// URL ({exc})") from None
    scheme = parts.scheme.lower()
    out: dict[str, Any] = {
        "redis_username": unquote(parts.username) if parts.username else None,
        "redis_password": unquote(parts.password) if parts.password is not None else None,
    }
    query = parse_qs(parts.query)
    if scheme == "unix":
        if not parts.path:
            raise ConfigError("REDIS_URL", "unix:///path/to/socket")
        out.update(
            redis_unix_socket=parts.path, redis_db=_db(query.get("db", ["0"])[0]), url_tls=False
        )
        return out
    if scheme not in ("redis", "rediss"):
        raise ConfigError(
            "REDIS_URL", "a redis://, rediss:// or unix:// URL (not shown: it may hold a password)"
        )
    if not parts.hostname:
        raise ConfigError("REDIS_URL", "a host name in the URL")
    path = parts.path.strip("/")
    out.update(
        redis_host=parts.hostname,
        redis_port=port or 6379,
        redis_db=_db(path or query.get("db", ["0"])[0]),
        url_tls=scheme == "rediss",
    )
    return out


def _db(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError("REDIS_URL", "a database number after the host (/0)") from None
    if not 0 <= value <= 1 << 20:
        raise ConfigError("REDIS_URL", "a database number from 0")
    return value


def _sentinels(env: Env) -> tuple[tuple[str, int], ...]:
    raw = env.optional("REDIS_SENTINELS")
    if raw is None:
        return ()
    found = []
    for item in raw.split(","):
        host, sep, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not (sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError("REDIS_SENTINELS", "host:port,host:port,...", raw)
        found.append((host, int(port)))
    return tuple(found)


def mysql_settings(env: Env) -> dict[str, Any]:
    """The Config fields for MySQL's address and TLS."""
    socket = env.optional("MYSQL_UNIX_SOCKET")
    if socket is not None:
        for name in ("MYSQL_HOST", "MYSQL_PORT"):
            if env.is_set(name):
                raise ConfigError(name, "to be unset when MYSQL_UNIX_SOCKET is set")
    ca = env.readable_file("MYSQL_SSL_CA")
    cert = env.readable_file("MYSQL_SSL_CERT")
    key = env.readable_file("MYSQL_SSL_KEY")
    # As the mysql client: a CA given without a mode means "verify the server with it".
    default_mode = "VERIFY_CA" if ca is not None else "PREFERRED"
    mode = env.choice("MYSQL_SSL_MODE", SSL_MODES, upper=True, otherwise=default_mode)
    if ca is not None and mode not in ("VERIFY_CA", "VERIFY_IDENTITY"):
        raise ConfigError(
            "MYSQL_SSL_MODE", "VERIFY_CA or VERIFY_IDENTITY when MYSQL_SSL_CA is set", mode
        )
    if mode == "DISABLED":
        for name, value in (("MYSQL_SSL_CERT", cert), ("MYSQL_SSL_KEY", key)):
            if value is not None:
                raise ConfigError(name, "to be unset with MYSQL_SSL_MODE=DISABLED")
    if key is not None and cert is None:
        raise ConfigError("MYSQL_SSL_CERT", "a client certificate for MYSQL_SSL_KEY")
    return {
        "mysql_host": env.text("MYSQL_HOST"),
        "mysql_port": env.integer("MYSQL_PORT", low=1, high=65535),
        "mysql_unix_socket": socket,
        "mysql_ssl_mode": mode,
        "mysql_ssl_ca": ca,
        "mysql_ssl_cert": cert,
        "mysql_ssl_key": key,
    }
