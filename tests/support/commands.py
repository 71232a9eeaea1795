"""The operator's commands (``trio-worker <command>``) as subprocesses, no terminal, capped in
time; configured like a ``Config`` or by the variables given (``workers.process_env``)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping
from functools import partial

import trio

from tests.support.workers import env_of, process_env
from trio_worker.config import Config

# -P: the package comes from the environment (or TRIO_WORKER_UNDER_TEST), not the current folder.
TRIO_WORKER = [sys.executable, "-P", "-m", "trio_worker"]


def _environment(
    where: Config | Mapping[str, str], env: Mapping[str, str] | None
) -> dict[str, str]:
    extra = dict(env or {})
    return env_of(where, **extra) if isinstance(where, Config) else process_env({**where, **extra})


def run_cli(
    where: Config | Mapping[str, str],
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``trio-worker ARGS``, blocking; ``env``: variables on top of ``where``'s."""
    return subprocess.run(
        [*TRIO_WORKER, *args],
        env=_environment(where, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


async def cli(
    where: Config | Mapping[str, str],
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``run_cli`` in a thread: the test's Trio run goes on meanwhile (a worker in it keeps
    working, another command runs beside it)."""
    return await trio.to_thread.run_sync(
        partial(run_cli, where, *args, env=env, timeout_s=timeout_s)
    )


def on_a_terminal(config: Config, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the command with a pseudo-terminal on stdin, answering its question."""
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [*TRIO_WORKER, *args],
            env=_environment(config, None),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            os.write(controller, answer)
            stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return proc.returncode, stdout.decode()
