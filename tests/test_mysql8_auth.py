"""MySQL 8's default account plugin (caching_sha2_password) needs RSA on a plain connection."""

from __future__ import annotations

import asyncmy.auth


def test_asyncmy_can_do_caching_sha2_full_authentication() -> None:
    # Without `cryptography`, asyncmy raises RuntimeError on the first connect to MySQL 8.4
    # (deploy/docker-compose.yml's default account); MariaDB here can't exercise that path.
    assert asyncmy.auth._have_cryptography
