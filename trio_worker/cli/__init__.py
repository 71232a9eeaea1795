"""``trio-worker``: the command line. Parses arguments and config, then hands over to Trio.

Exit statuses: 0 success; 1 a store failed, a drain ran out of time, or a confirmation was
declined; 2 bad configuration or bad arguments (the message names the variable or option), or a
command that writes to the real queue or deletes dead letters run without a terminal and without
--yes; 130 interrupted (Ctrl-C) during a one-shot command (``run`` drains on SIGINT instead).
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
from trio_worker.cli.output import (
    Progress,
    confirm,
    print_check_json,
    print_letters,
    print_purge_plan,
    print_stats,
    report,
)
from trio_worker.cli.parser import build_parser
from trio_worker.config import Config, ConfigError, from_env
from trio_worker.errors import StoreUnavailable
from trio_worker.logs import setup
from trio_worker.ops.check import Finding, check
from trio_worker.ops.dlq import (
    UnreadableEnvelope,
    dead_letter_reasons,
    dlq_list,
    dlq_purge,
    dlq_requeue,
    purged_by,
)
from trio_worker.ops.produce import DEFAULT_CHOICES, produce
from trio_worker.ops.stats import stats
from trio_worker.ops.stores import producer_push

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


# The commands that use MySQL; the others need only Redis and never read a MySQL setting.
MYSQL_COMMANDS = frozenset({"run", "check", "stats"})


class UsageError(Exception):
    """Arguments that parse but can't be used together with the configuration."""


def _confirmed(what: str, question: str) -> bool:
    """Asked on a terminal (stdin); without one, only ``--yes`` goes ahead: a script that
    forgot it must do nothing rather than something it can't take back."""
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: no terminal to confirm ({question}); pass --yes")
    return confirm(question)


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
    end = producer_push(config)
    question = (
        f"push {args.count} test votes into {config.vote_queue} on Redis at"
        f" {config.redis_address}? They are stored like real votes"
    )
    if not args.yes and not _confirmed("produce", question):
        print("nothing pushed", file=sys.stderr)
        return EXIT_FAILURE
    bar = Progress(args.count, "produce")
    sent = trio.run(produce, config, args.count, choices, args.rate, bar.advance)
    print(f"pushed {sent} votes ({','.join(choices)}) to {config.vote_queue} with {end}")
    return 0


def _dlq(args: argparse.Namespace, config: Config) -> int:
    if args.dlq_command == "list":
        listing = trio.run(dlq_list, config, None if args.all else args.limit, args.reason)
        if args.json:
            for item in listing.letters:
                print(orjson.dumps(item).decode())
        else:
            print_letters(listing, config.dead_letter_queue, args.reason)
        return 0
    if args.dlq_command == "requeue":
        return _requeue(args, config)
    return _purge(args, config)


def _requeue(args: argparse.Namespace, config: Config) -> int:
    limit = None if args.all else args.limit
    done = trio.run(partial(dlq_requeue, config, limit, args.reason, dry_run=args.dry_run))
    verb = "would requeue" if args.dry_run else "requeued"
    by_reason = ", ".join(f"{n} {reason}" for reason, n in sorted(done.by_reason.items()))
    print(
        f"{verb} {done.moved} dead letters from {config.dead_letter_queue}"
        f" to {config.vote_queue}{f' ({by_reason})' if by_reason else ''}"
    )
    if done.left_stale:
        print(
            f"{'would leave' if args.dry_run else 'left'} {done.left_stale} stale_batch letters:"
            " their votes may already be stored; check MySQL, then requeue them with --reason"
            " stale_batch",
            file=sys.stderr,
        )
    return 0


def _purge(args: argparse.Namespace, config: Config) -> int:
    counts = trio.run(dead_letter_reasons, config)
    going = sum(n for reason, n in counts.items() if purged_by(reason, args.reason))
    print_purge_plan(counts, args.reason, config.dead_letter_queue)
    if not going:
        print("nothing to purge")
        return 0
    question = f"delete {going} dead letters in {config.dead_letter_queue}?"
    if not args.yes and not _confirmed("dlq purge", question):
        print("not purged", file=sys.stderr)
        return EXIT_FAILURE
    done = trio.run(dlq_purge, config, args.reason)
    print(f"purged {done.removed.total()} dead letters from {config.dead_letter_queue}")
    if done.kept:
        kept = ", ".join(f"{n} {reason}" for reason, n in sorted(done.kept.items()))
        print(f"kept {done.kept.total()} ({kept})")
    return 0


def _check(args: argparse.Namespace, config: Config) -> int:
    if not args.json:
        print(
            f"ok: configuration (queue {config.vote_queue}, dead letters"
            f" {config.dead_letter_queue}, worker id {config.worker_id})"
        )
        return 0 if trio.run(check, config, report) else EXIT_FAILURE
    findings: list[Finding] = []
    ok = trio.run(check, config, findings.append)
    print_check_json(config, findings, ok)
    return 0 if ok else EXIT_FAILURE


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
        return _check(args, config)
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
        config = from_env(mysql=args.command in MYSQL_COMMANDS)
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
