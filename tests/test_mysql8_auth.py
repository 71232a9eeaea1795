"""MySQL 8's default account plugin, caching_sha2_password, with its full authentication over a
plain connection: the server sends its RSA public key and the client sends the password
encrypted with it (what asyncmy needs ``cryptography`` for).

MariaDB has no caching_sha2_password, so the server here is a small fake that speaks that part
of MySQL 8's protocol and nothing else: the handshake, the fast-auth scramble (checked), "full
authentication needed", the public key, the RSA-OAEP exchange (the password decrypted and
compared), then OK to every query. The driver logs in to it with the worker's own connect
options, its errors mapped by the worker's boundary: the login the worker does against a default
MySQL 8.4 account.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field, replace
from functools import partial

import asyncmy
import trio
import trio_asyncio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trio_worker.bridge import aio
from trio_worker.config import from_env
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql.codes import mysql_errors
from trio_worker.mysql.login import connect_options

PLUGIN = b"caching_sha2_password"
CAPABILITIES = (
    0x1  # LONG_PASSWORD
    | 0x8  # CONNECT_WITH_DB
    | 0x200  # PROTOCOL_41
    | 0x2000  # TRANSACTIONS
    | 0x8000  # SECURE_CONNECTION
    | 0x10000  # MULTI_STATEMENTS
    | 0x20000  # MULTI_RESULTS
    | 0x80000  # PLUGIN_AUTH
    | 0x200000  # PLUGIN_AUTH_LENENC_CLIENT_DATA
)
OK = b"\x00\x00\x00\x02\x00\x00\x00"  # no rows, no id, autocommit status, no warnings


@dataclass
class FakeMySQL8:
    """What the fake server saw: the account's password is ``password``."""

    password: bytes
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    scramble_ok: bool | None = None
    requested_key: bool = False
    decrypted: bytes | None = None
    queries: list[bytes] = field(default_factory=list)


class Packets:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def read(self) -> tuple[int, bytes]:
        header = await self._exactly(4)
        length = int.from_bytes(header[:3], "little")
        return header[3], await self._exactly(length)

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def send(self, seq: int, payload: bytes) -> None:
        await self.stream.send_all(len(payload).to_bytes(3, "little") + bytes([seq]) + payload)


def handshake(nonce: bytes) -> bytes:
    return (
        b"\x0a8.4.0-fake\x00"
        + struct.pack("<I", 7)
        + nonce[:8]
        + b"\x00"
        + struct.pack("<H", CAPABILITIES & 0xFFFF)
        + bytes([45])  # utf8mb4_general_ci
        + struct.pack("<H", 2)  # autocommit
        + struct.pack("<H", CAPABILITIES >> 16)
        + bytes([21])
        + b"\x00" * 10
        + nonce[8:]
        + b"\x00"
        + PLUGIN
        + b"\x00"
    )


def auth_response(payload: bytes) -> bytes:
    """The auth data of a HandshakeResponse41 (length-encoded, as we advertised)."""
    user_end = payload.index(b"\x00", 32)
    length = payload[user_end + 1]
    return payload[user_end + 2 : user_end + 2 + length]


def fast_scramble(password: bytes, nonce: bytes) -> bytes:
    p1 = hashlib.sha256(password).digest()
    p3 = hashlib.sha256(hashlib.sha256(p1).digest() + nonce).digest()
    return bytes(a ^ b for a, b in zip(p1, p3, strict=True))


async def serve_one(server: FakeMySQL8, stream: trio.SocketStream) -> None:
    packets = Packets(stream)
    nonce = bytes(b % 127 + 1 for b in os.urandom(20))  # no NUL: it ends the field
    try:
        await packets.send(0, handshake(nonce))
        _, response = await packets.read()
        server.scramble_ok = auth_response(response) == fast_scramble(server.password, nonce)
        await packets.send(2, b"\x01\x04")  # fast auth failed: perform full authentication
        _, request = await packets.read()
        server.requested_key = request == b"\x02"
        pem = server.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        await packets.send(4, b"\x01" + pem)
        _, encrypted = await packets.read()
        oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        xored = server.key.decrypt(encrypted, oaep)
        server.decrypted = bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(xored))
        if server.decrypted != server.password + b"\x00":
            error = b"\xff" + struct.pack("<H", 1045) + b"#28000Access denied for user 'app'"
            await packets.send(6, error)
            return
        await packets.send(6, OK)
        while True:
            _, command = await packets.read()
            if command[:1] == b"\x01":  # COM_QUIT
                return
            server.queries.append(command[1:])
            await packets.send(1, OK)
    except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def login(
    nursery: trio.Nursery, server: FakeMySQL8, password: str
) -> MySQLUnavailable | None:
    """The driver's login with the worker's own connect options (``mysql.login.connect_options``),
    its errors mapped as the worker maps them; the error it ended with, if any. (The session
    set-up the worker runs next needs a real server's answers; the login is what is tested.)"""
    listeners = await nursery.start(
        partial(trio.serve_tcp, partial(serve_one, server), 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    config = replace(
        from_env({}),
        mysql_host="127.0.0.1",
        mysql_port=port,
        mysql_user="app",
        mysql_password=password,
    )
    options = connect_options(config, database=False)
    refused = None
    async with trio_asyncio.open_loop():
        try:
            with trio.fail_after(20), mysql_errors(config.mysql_address):
                raw = await aio(asyncmy.connect, **options)
                raw.close()
        except MySQLUnavailable as exc:
            refused = exc
    return refused


async def test_the_worker_logs_in_with_caching_sha2_full_authentication(
    nursery: trio.Nursery,
) -> None:
    server = FakeMySQL8(b"s3cret #:@/")
    assert await login(nursery, server, "s3cret #:@/") is None
    assert server.scramble_ok  # the fast path's scramble was right too
    assert server.requested_key
    assert server.decrypted == server.password + b"\x00"
    assert server.queries  # the session answered a query after the login (autocommit off)


async def test_a_wrong_password_is_refused_and_never_shown(nursery: trio.Nursery) -> None:
    server = FakeMySQL8(b"right")
    refused = await login(nursery, server, "wrong-password-1234")
    assert server.decrypted == b"wrong-password-1234\x00"
    assert refused is not None
    assert "wrong-password-1234" not in str(refused)
    assert "1045" in str(refused)
