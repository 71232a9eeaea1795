"""The command line's arguments: every command, option and its help text."""

from __future__ import annotations

import argparse

from trio_worker.config.variables import help_text
from trio_worker.messages import REASONS

EXIT_STATUSES = """\
exit status:
  0  success
  1  a store failed (Redis or MySQL unreachable), the drain deadline passed, or a
     confirmation was declined
  2  bad configuration (the message names the variable) or bad arguments
"""
EPILOG = (
    "configuration comes from environment variables; `trio-worker run --help` lists them all.\n\n"
    + EXIT_STATUSES
)
RUN_EPILOG = f"environment variables:\n{help_text()}\n\n{EXIT_STATUSES}"


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

    sub.add_parser(
        "run",
        help="run the worker service (HTTP /health /ready /live /metrics)",
        description="Run the worker until SIGTERM/SIGINT, then drain within SHUTDOWN_TIMEOUT_S.",
        epilog=RUN_EPILOG,
        formatter_class=fmt,
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
        description="Print dead-letter envelopes (message, encoding, reason, worker_id, time;"
        " for too_large ones the message is a preview, with size and original_key) as JSON"
        " lines, oldest first. Nothing is removed.",
    )
    dl.add_argument(
        "--limit", type=_positive_int, default=20, help="how many to print (default 20)"
    )
    dl.add_argument("--reason", choices=REASONS, help="only letters of this reason")
    dr = dsub.add_parser(
        "requeue",
        help="move dead letters back to the queue",
        description="Move dead letters, oldest first, back onto VOTE_QUEUE: each one exactly"
        " once, atomically (too_large ones from the list that keeps their original). A message"
        " that is still invalid is dead-lettered again by the worker. Fix the producer (or"
        " VOTE_CHOICES, or MAX_MESSAGE_BYTES) first. stale_batch letters stay unless asked for"
        " with --reason stale_batch: their votes may already be stored (check MySQL first).",
    )
    group = dr.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="every dead letter there is now")
    group.add_argument("--limit", type=_positive_int, help="at most this many, oldest first")
    dr.add_argument("--reason", choices=REASONS, help="only letters of this reason")
    dp = dsub.add_parser(
        "purge",
        help="delete every dead letter",
        description="Delete the dead-letter list. Asks for confirmation on a terminal;"
        " scripts (no terminal) must pass --yes.",
    )
    dp.add_argument("--yes", action="store_true", help="don't ask for confirmation")
    return p
