#!/usr/bin/env python3
"""A Galera node's health as HTTP, for HAProxy's ``option httpchk`` (deploy/galera/haproxy.cfg).

Runs beside each MariaDB Galera node. Each request reads the node's own state with the
``mariadb`` client and answers 200 only when the node can take writes now:

- ``wsrep_cluster_status`` is ``Primary``: the node is in the component that holds quorum
  (a node that lost quorum refuses every statement with error 1047 or 1180);
- ``wsrep_local_state`` is 4, ``Synced`` (not joining, not a donor, not desynced);
- ``wsrep_ready`` is ``ON`` (the node accepts queries);
- ``read_only`` is ``OFF``.

Anything else, including a node that does not answer, is 503 with the reason in the body.
HAProxy's ``option mysql-check`` cannot tell: it only logs in, which a node without quorum
still lets it do.

Standard library only. The client logs in with ``--defaults-file`` (a ``[client]`` section
with ``user`` and ``password``; the account needs no privilege: ``SHOW GLOBAL STATUS`` and
``SHOW GLOBAL VARIABLES`` are open to every user), or as ``--user`` over ``--socket``.

    clustercheck.py --listen 0.0.0.0:9200 --defaults-file /etc/mysql/clustercheck.cnf
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN"
    " ('wsrep_cluster_status', 'wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_ready');"
    "SHOW GLOBAL VARIABLES LIKE 'read_only'"
)


def verdict(state: dict[str, str]) -> tuple[bool, str]:
    """Whether a node in this state can take writes, and why (or why not)."""
    problems = []
    if state.get("wsrep_cluster_status") != "Primary":
        problems.append(
            f"wsrep_cluster_status={state.get('wsrep_cluster_status', '?')} (not the Primary"
            " Component: no quorum)"
        )
    if state.get("wsrep_local_state") != "4":
        comment = state.get("wsrep_local_state_comment", "?")
        problems.append(f"wsrep_local_state={state.get('wsrep_local_state', '?')} ({comment})")
    if state.get("wsrep_ready") != "ON":
        problems.append(f"wsrep_ready={state.get('wsrep_ready', '?')}")
    if state.get("read_only") != "OFF":
        problems.append(f"read_only={state.get('read_only', '?')}")
    if problems:
        return False, "; ".join(problems)
    return True, "Synced and Primary"


def read_state(client: list[str], timeout_s: float) -> dict[str, str]:
    """The node's wsrep status and read_only, by name; raises ``OSError`` when it can't."""
    try:
        done = subprocess.run(
            [*client, "--batch", "--skip-column-names", "-e", QUERY],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"no answer within {timeout_s:g} s") from exc
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"the client exited with {done.returncode}")
    state = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("\t")
        state[name.strip().lower()] = value.strip()
    return state


def handler(client: list[str], timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Check(BaseHTTPRequestHandler):
        def answer(self, *, body: bool) -> None:
            try:
                ok, why = verdict(read_state(client, timeout_s))
            except OSError as exc:
                ok, why = False, f"cannot read the node's state: {exc}"
            text = f"Galera node {'available' if ok else 'unavailable'}: {why}\n".encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(text)

        def do_GET(self) -> None:
            self.answer(body=True)

        def do_OPTIONS(self) -> None:  # HAProxy's httpchk default method
            self.answer(body=True)

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one request a second per load balancer: not worth a line each

    return Check


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="0.0.0.0:9200", help="address:port (default 0.0.0.0:9200)")
    p.add_argument("--client", default="mariadb", help="the MariaDB client program")
    p.add_argument("--defaults-file", help="a [client] section with user and password")
    p.add_argument("--socket", help="the node's Unix socket")
    p.add_argument("--host", help="the node's address (default: the client's own)")
    p.add_argument("--port", type=int, help="the node's port")
    p.add_argument("--user", help="the account (without --defaults-file)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per check (default 2)")
    args = p.parse_args(argv)
    client = [args.client]
    # --defaults-file must come first: the client reads it before any other option.
    if args.defaults_file:
        client.append(f"--defaults-file={args.defaults_file}")
    else:
        client.append("--no-defaults")
    client.append(f"--connect-timeout={max(1, int(args.timeout))}")
    for option, value in (
        ("socket", args.socket),
        ("host", args.host),
        ("port", args.port),
        ("user", args.user),
    ):
        if value is not None:
            client.append(f"--{option}={value}")
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), handler(client, args.timeout))
    print(f"clustercheck: listening on {args.listen}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
