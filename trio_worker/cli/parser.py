"""The command line's arguments: every command, option and its help text."""

from __future__ import annotations

import argparse

from trio_worker.config.variables import help_text
from trio_worker.messages import REASONS, STALE_BATCH
from trio_worker.version import version

EXIT_STATUSES = """\
exit status:
    0  success
    1  a store failed (Redis or MySQL unreachable), the drain deadline passed, or a
       confirmation was declined
    2  bad configuration (the message names the variable) or bad arguments, or a
       confirmation needed without a terminal to ask on (pass --yes)
  130  interrupted (Ctrl-C) during a one-shot command (`run` drains on SIGINT instead)
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
    p.add_argument("--version", action="version", version=f"trio-worker {version()}")
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
    chk = command(
        "check",
        "validate the configuration and reach Redis and MySQL",
        "Validate the configuration, reach Redis and the MySQL server, and say whether the"
        " database exists yet (`run` creates it).",
    )
    chk.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object for scripts (the exit status is the same)",
    )
    prod = command(
        "produce",
        "push well-formed test votes onto the queue",
        "Push N valid votes with unique voter ids onto VOTE_QUEUE, at the end producers use"
        " (LPUSH, or RPUSH when QUEUE_CONSUME_FROM=left). A progress bar shows on a terminal."
        " The votes go into the real queue and are stored like any other: on a terminal it"
        " asks first; without one (a script, a pipe) it needs --yes and pushes nothing"
        " otherwise (exit 2).",
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
    prod.add_argument("--yes", action="store_true", help="don't ask for confirmation")
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
        help="show dead letters, oldest first",
        description="Show dead letters, oldest first, one a line: position, time, reason, worker"
        " and the message (shortened). --json prints each whole envelope (message, encoding,"
        " reason, worker_id, time; for too_large ones the message is a preview, with size and"
        " original_key) as one JSON object a line, for scripts. Nothing is removed.",
    )
    shown = dl.add_mutually_exclusive_group()
    shown.add_argument(
        "--limit", type=_positive_int, default=20, help="how many to show (default 20)"
    )
    shown.add_argument("--all", action="store_true", help="every dead letter there is")
    dl.add_argument("--reason", choices=REASONS, help="only letters of this reason")
    dl.add_argument("--json", action="store_true", help="one JSON envelope a line")
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
    dr.add_argument(
        "--dry-run", action="store_true", help="move nothing; say what would move, by reason"
    )
    dp = dsub.add_parser(
        "purge",
        help="delete dead letters (stale_batch ones only when asked for)",
        description="Delete dead letters (and the originals of too_large ones): every reason"
        f" but {STALE_BATCH}, or with --reason R only letters of R. {STALE_BATCH} letters"
        " may hold the only copy of a valid vote: they go only with --reason"
        f' {STALE_BATCH} (see docs/operations.md, "Stale batches"). Shows how many'
        " letters of each reason there are and which go, then asks on a terminal; without"
        " one (a script, a pipe) it needs --yes and removes nothing otherwise (exit 2).",
    )
    dp.add_argument("--reason", choices=REASONS, help="only letters of this reason")
    dp.add_argument("--yes", action="store_true", help="don't ask for confirmation")
    return p
