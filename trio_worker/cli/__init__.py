"""``trio-worker``: the command line. Parses arguments and config, then hands over to Trio.

Exit statuses: 0 success; 1 a store failed, a drain ran out of time, or the operator declined;
2 bad configuration or bad arguments (the message names the variable or option).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Sequence
from functools import partial

import orjson
import trio

from trio_worker import service
from trio_worker.cli.output import Progress, confirm, print_stats, report
from trio_worker.cli.parser import build_parser
from trio_worker.config import Config, ConfigError, from_env
from trio_worker.errors import StoreUnavailable
from trio_worker.logs import setup
from trio_worker.ops.check import check
from trio_worker.ops.dlq import (
    UnreadableEnvelope,
    dead_letter_count,
    dlq_list,
    dlq_purge,
    dlq_requeue,
)
from trio_worker.ops.produce import DEFAULT_CHOICES, produce
from trio_worker.ops.stats import stats
from trio_worker.ops.stores import producer_push

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Arguments that parse but can't be used together with the configuration."""


def _produce(args: argparse.Namespace, config: Config) -> int:
    choices: list[str] = args.choices or sorted(config.vote_choices or DEFAULT_CHOICES)
    if config.vote_choices is not None:
        stray = [c for c in choices if c not in config.vote_choices]
        if stray:
            allowed = ",".join(sorted(config.vote_choices))
            raise UsageError(
                f"--choices: {','.join(stray)} not in VOTE_CHOICES ({allowed}); the worker"
                " would dead-letter those votes. Pick from VOTE_CHOICES or change it."
            )
    bar = Progress(args.count, "produce")
    sent = trio.run(produce, config, args.count, choices, args.rate, bar.advance)
    end = producer_push(config)
    print(f"pushed {sent} votes ({','.join(choices)}) to {config.vote_queue} with {end}")
    return 0


def _dlq(args: argparse.Namespace, config: Config) -> int:
    if args.dlq_command == "list":
        for item in trio.run(dlq_list, config, args.limit, args.reason):
            print(orjson.dumps(item).decode())
        return 0
    if args.dlq_command == "requeue":
        done = trio.run(dlq_requeue, config, None if args.all else args.limit, args.reason)
        print(
            f"requeued {done.moved} dead letters from {config.dead_letter_queue}"
            f" to {config.vote_queue}"
        )
        if done.left_stale:
            print(
                f"left {done.left_stale} stale_batch letters: their votes may already be stored;"
                " check MySQL, then requeue them with --reason stale_batch",
                file=sys.stderr,
            )
        return 0
    if not args.yes:
        count = trio.run(dead_letter_count, config)
        question = f"delete all {count} dead letters in {config.dead_letter_queue}?"
        if not sys.stdin.isatty():
            raise UsageError(f"dlq purge: no terminal to confirm ({question}); pass --yes")
        if not confirm(question):
            print("not purged", file=sys.stderr)
            return EXIT_FAILURE
    print(f"purged {trio.run(dlq_purge, config)} dead letters from {config.dead_letter_queue}")
    return 0


def dispatch(args: argparse.Namespace, config: Config) -> int:
    """Run one parsed command; return its exit status."""
    cmd = args.command
    if cmd == "run":
        # Outside the service's own handling, a stop signal must not kill the process the
        # default way: one that comes before the service listens is noted, and it honours it;
        # a repeat after it stopped listening (the interpreter's exit included, which resets
        # Python handlers, not ignored signals) is ignored.
        came = threading.Event()
        stops = (signal.SIGTERM, signal.SIGINT)
        # What importing made (some 70,000 objects) lives as long as the process: out of the
        # collector's sight, a full collection over it never stalls a batch (~30 ms here).
        gc.collect()
        gc.freeze()
        for signum in stops:
            signal.signal(signum, lambda *_: came.set())
        status = trio.run(partial(service.run, config, stopped_before=came))
        for signum in stops:
            signal.signal(signum, signal.SIG_IGN)
        return status
    if cmd == "check":
        print(
            f"ok: configuration (queue {config.vote_queue}, dead letters"
            f" {config.dead_letter_queue}, worker id {config.worker_id})"
        )
        return 0 if trio.run(check, config, report) else EXIT_FAILURE
    if cmd == "produce":
        return _produce(args, config)
    if cmd == "stats":
        print_stats(trio.run(stats, config), args.json)
        return 0
    if cmd == "dlq":
        return _dlq(args, config)
    raise AssertionError(cmd)


# What a command may fail with and still be reported in one line: a store that can't
# answer (it names itself), a dead letter that isn't one of ours, or the system (a port in use).
_REPORTED = (StoreUnavailable, UnreadableEnvelope, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trio-worker`` entry point; returns the exit status (argparse exits 2 itself)."""
    args = build_parser().parse_args(argv)
    try:
        config = from_env()
    except ConfigError as exc:
        print(f"trio-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup(config.log_level, config.log_format)
    try:
        return dispatch(args, config)
    except UsageError as exc:
        print(f"trio-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("trio-worker: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (*_REPORTED, ExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, _REPORTED) for e in leaves):
            raise
        for leaf in dict.fromkeys(str(e) for e in leaves):
            print(f"trio-worker: {leaf}", file=sys.stderr)
        return EXIT_FAILURE


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, or the exception itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
