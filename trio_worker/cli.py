"""``trio-worker``: the command line. Parses arguments and config, then hands over to Trio.

Exit statuses: 0 success; 1 a store failed or a drain ran out of time; 2 bad configuration or
bad arguments (the message names the variable or option).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson
import trio

from trio_worker import ops, service
from trio_worker.bridge import StoreUnavailable
from trio_worker.config import Config, ConfigError, from_env
from trio_worker.logs import setup

EXIT_FAILURE = 1
EXIT_USAGE = 2


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
    p = argparse.ArgumentParser(
        prog="trio-worker",
        description="Moves votes from a Redis list into MySQL, exactly once. "
        "Configured by environment variables (see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the worker service (HTTP /health /ready /metrics)")
    sub.add_parser("check", help="validate the configuration and reach Redis and MySQL")
    prod = sub.add_parser("produce", help="push well-formed test votes onto the queue")
    prod.add_argument("--count", type=_positive_int, required=True, help="how many votes")
    prod.add_argument(
        "--choices", type=_choices, default=None, help="comma-separated votes (default a,b)"
    )
    prod.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="votes per second (default: as fast as possible)",
    )
    st = sub.add_parser("stats", help="queue depth, in flight, dead letters, stored totals")
    st.add_argument("--json", action="store_true", help="print JSON for scripts")
    dlq = sub.add_parser("dlq", help="inspect and handle dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="print dead letters as JSON lines, oldest first")
    dl.add_argument("--limit", type=_positive_int, default=20)
    dr = dsub.add_parser("requeue", help="move dead letters back to the queue")
    group = dr.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true")
    group.add_argument("--limit", type=_positive_int)
    dp = dsub.add_parser("purge", help="delete every dead letter")
    dp.add_argument("--yes", action="store_true", help="don't ask for confirmation")
    return p


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _print_stats(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"queue          {result['queue']}")
    print(f"queue depth    {result['queue_depth']}")
    print(f"in flight      {result['in_flight']}")
    print(f"dead letters   {result['dead_letters']}")
    print(f"stored total   {result['stored_total']}")
    by_vote = result["stored_by_vote"]
    assert isinstance(by_vote, dict)
    for vote, n in by_vote.items():
        print(f"  {vote:<12} {n}")


def dispatch(args: argparse.Namespace, config: Config) -> int:
    cmd = args.command
    if cmd == "run":
        return trio.run(service.run, config)
    if cmd == "check":
        return 0 if trio.run(ops.check, config, print) else EXIT_FAILURE
    if cmd == "produce":
        choices = args.choices or sorted(config.vote_choices or ops.DEFAULT_CHOICES)
        progress = ops.Progress(args.count, "produce")
        sent = trio.run(ops.produce, config, args.count, choices, args.rate, progress)
        print(f"pushed {sent} votes to {config.vote_queue}")
        return 0
    if cmd == "stats":
        _print_stats(trio.run(ops.stats, config), args.json)
        return 0
    if cmd == "dlq":
        if args.dlq_command == "list":
            for item in trio.run(ops.dlq_list, config, args.limit):
                print(orjson.dumps(item).decode())
            return 0
        if args.dlq_command == "requeue":
            moved = trio.run(ops.dlq_requeue, config, None if args.all else args.limit)
            print(f"requeued {moved} dead letters onto {config.vote_queue}")
            return 0
        if not args.yes and not _confirm(
            f"delete every dead letter in {config.dead_letter_queue}?"
        ):
            print("not purged (use --yes to purge without asking)", file=sys.stderr)
            return EXIT_USAGE
        print(f"purged {trio.run(ops.dlq_purge, config)} dead letters")
        return 0
    raise AssertionError(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = from_env()
    except ConfigError as exc:
        print(f"trio-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup(config.log_level, config.log_format)
    try:
        return dispatch(args, config)
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
