"""``trio-worker``: the command line. Parses arguments and config, then hands over to Trio.

Exit statuses: 0 success; 1 a store failed, a drain ran out of time, or the operator declined;
2 bad configuration or bad arguments (the message names the variable or option).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import trio

from trio_worker import ops, service
from trio_worker.bridge import StoreUnavailable
from trio_worker.config import Config, ConfigError, from_env
from trio_worker.logs import setup

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EPILOG = """\
configuration comes from environment variables (REDIS_HOST, MYSQL_HOST, VOTE_QUEUE, ...);
see docs/operations.md for the full list.

exit status:
  0  success
  1  a store failed (Redis or MySQL unreachable), the drain deadline passed, or a
     confirmation was declined
  2  bad configuration (the message names the variable) or bad arguments
"""


class UsageError(Exception):
    """Arguments that parse but can't be used together with the configuration."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _choices(text: str) -> list[str]:
    items = [c.strip() for c in text.split(",")]
    if not items or any(not c or len(c) > 10 for c in items):
        raise argparse.ArgumentTypeError("expected comma-separated votes of 1 to 10 characters")
    return items


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="trio-worker",
        description="Moves votes from a Redis list into MySQL, exactly once.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=description, epilog=EPILOG, formatter_class=fmt
        )

    command(
        "run",
        "run the worker service (HTTP /health /ready /metrics)",
        "Run the worker until SIGTERM/SIGINT, then drain within SHUTDOWN_TIMEOUT_S.",
    )
    command(
        "check",
        "validate the configuration and reach Redis and MySQL",
        "Validate the configuration, reach Redis and the MySQL server, and say whether the"
        " database exists yet (`run` creates it).",
    )
    prod = command(
        "produce",
        "push well-formed test votes onto the queue",
        "Push N valid votes with unique voter ids onto VOTE_QUEUE, at the end producers use"
        " (LPUSH, or RPUSH when QUEUE_CONSUME_FROM=left). A progress bar shows on a terminal.",
    )
    prod.add_argument("--count", type=_positive_int, required=True, help="how many votes")
    prod.add_argument(
        "--choices",
        type=_choices,
        default=None,
        help="comma-separated votes to pick from at random (default: VOTE_CHOICES, else a,b)",
    )
    prod.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="votes per second (default: as fast as possible)",
    )
    st = command(
        "stats",
        "queue depth, in flight, dead letters, stored totals",
        "Show queue depth, votes in flight (and which workers hold them), dead letters, and"
        " the rows stored in MySQL by vote.",
    )
    st.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    dlq = command(
        "dlq",
        "inspect and handle dead letters",
        "Inspect, requeue or purge the dead-letter list (DEAD_LETTER_QUEUE).",
    )
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = dsub.add_parser(
        "list",
        help="print dead letters as JSON lines, oldest first",
        description="Print dead-letter envelopes (message, encoding, reason, worker_id, time)"
        " as JSON lines, oldest first. Nothing is removed.",
    )
    dl.add_argument(
        "--limit", type=_positive_int, default=20, help="how many to print (default 20)"
    )
    dr = dsub.add_parser(
        "requeue",
        help="move dead letters back to the queue",
        description="Move dead letters, oldest first, back onto VOTE_QUEUE: each one exactly"
        " once, atomically. A message that is still invalid is dead-lettered again by the"
        " worker. Fix the producer (or VOTE_CHOICES) first.",
    )
    group = dr.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="every dead letter there is now")
    group.add_argument("--limit", type=_positive_int, help="at most this many, oldest first")
    dp = dsub.add_parser(
        "purge",
        help="delete every dead letter",
        description="Delete the dead-letter list. Asks for confirmation on a terminal;"
        " scripts (no terminal) must pass --yes.",
    )
    dp.add_argument("--yes", action="store_true", help="don't ask for confirmation")
    return p


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _print_stats(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"queue           {result['queue']}")
    print(f"queue depth     {result['queue_depth']}")
    held = ", ".join(result["workers_with_in_flight"]) or "no worker"
    print(f"in flight       {result['in_flight']} (held by {held})")
    if result["workers_with_in_flight_dead"]:
        dead = ", ".join(result["workers_with_in_flight_dead"])
        print(f"                stopped workers, awaiting takeover: {dead}")
    print(f"dead letters    {result['dead_letters']} in {result['dead_letter_queue']}")
    if not result["database_exists"]:
        print(f"stored total    0 (database {result['database']!r} has no votes table yet)")
        return
    print(f"stored total    {result['stored_total']} in {result['database']}.votes")
    for vote, n in result["stored_by_vote"].items():
        print(f"  {vote:<13} {n}")


def _report(ok: bool, text: str) -> None:
    if ok:
        print(f"ok: {text}")
    else:
        print(f"error: {text}", file=sys.stderr)


def _produce(args: argparse.Namespace, config: Config) -> int:
    choices: list[str] = args.choices or sorted(config.vote_choices or ops.DEFAULT_CHOICES)
    if config.vote_choices is not None:
        stray = [c for c in choices if c not in config.vote_choices]
        if stray:
            allowed = ",".join(sorted(config.vote_choices))
            raise UsageError(
                f"--choices: {','.join(stray)} not in VOTE_CHOICES ({allowed}); the worker"
                " would dead-letter those votes. Pick from VOTE_CHOICES or change it."
            )
    progress = ops.Progress(args.count, "produce")
    sent = trio.run(ops.produce, config, args.count, choices, args.rate, progress)
    end = ops.producer_push(config)
    print(f"pushed {sent} votes ({','.join(choices)}) to {config.vote_queue} with {end}")
    return 0


def _dlq(args: argparse.Namespace, config: Config) -> int:
    if args.dlq_command == "list":
        for item in trio.run(ops.dlq_list, config, args.limit):
            print(orjson.dumps(item).decode())
        return 0
    if args.dlq_command == "requeue":
        moved = trio.run(ops.dlq_requeue, config, None if args.all else args.limit)
        print(
            f"requeued {moved} dead letters from {config.dead_letter_queue} to {config.vote_queue}"
        )
        return 0
    if not args.yes:
        count = trio.run(ops.dead_letter_count, config)
        question = f"delete all {count} dead letters in {config.dead_letter_queue}?"
        if not sys.stdin.isatty():
            raise UsageError(f"dlq purge: no terminal to confirm ({question}); pass --yes")
        if not _confirm(question):
            print("not purged", file=sys.stderr)
            return EXIT_FAILURE
    print(f"purged {trio.run(ops.dlq_purge, config)} dead letters from {config.dead_letter_queue}")
    return 0


def dispatch(args: argparse.Namespace, config: Config) -> int:
    """Run one parsed command; return its exit status."""
    cmd = args.command
    if cmd == "run":
        return trio.run(service.run, config)
    if cmd == "check":
        print(
            f"ok: configuration (queue {config.vote_queue}, dead letters"
            f" {config.dead_letter_queue}, worker id {config.worker_id})"
        )
        return 0 if trio.run(ops.check, config, _report) else EXIT_FAILURE
    if cmd == "produce":
        return _produce(args, config)
    if cmd == "stats":
        _print_stats(trio.run(ops.stats, config), args.json)
        return 0
    if cmd == "dlq":
        return _dlq(args, config)
    raise AssertionError(cmd)


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
    except (StoreUnavailable, ValueError, OSError, ExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, StoreUnavailable | ValueError | OSError) for e in leaves):
            raise
        for leaf in leaves:
            print(f"trio-worker: {leaf}", file=sys.stderr)
        return EXIT_FAILURE


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, or the exception itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
