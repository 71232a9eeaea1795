"""A vote's timestamp: read (ISO 8601 / RFC 3339 text, or seconds since the epoch), stored as
MySQL ``DATETIME`` text in UTC, whole seconds.

``Stamps`` remembers, for one batch, what it has read: parsing a timestamp costs more than the
rest of a vote, and the votes of a batch were mostly cast in the same few seconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# MySQL DATETIME holds years 1000 to 9999.
_MIN_YEAR = 1000


def format_utc(moment: datetime) -> str:
    """A UTC datetime as MySQL DATETIME text, truncated to whole seconds."""
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def moment(value: object) -> datetime | None:
    """A message's ``timestamp`` as a naive UTC datetime, or None if it can't be read."""
    try:
        if isinstance(value, str):
            found = datetime.fromisoformat(value)
            if found.tzinfo is not None:
                found = found.astimezone(UTC).replace(tzinfo=None)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return None
            found = datetime.fromtimestamp(value, tz=UTC).replace(tzinfo=None)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return None if found.year < _MIN_YEAR else found


def _timestamp(value: object) -> str | None:
    """The stored form of a message's timestamp, or None if it can't be read."""
    found = moment(value)
    return None if found is None else format_utc(found)


# What may follow a timestamp's whole seconds and still mean UTC: a fraction, Z, a zero offset.
# ASCII digits only: a str pattern's \d also takes other scripts' digits, which no date reads.
_UTC_TAIL = re.compile(r"(?:\.\d{1,6})?(?:Z|[+-]00:?00)?", re.ASCII)


# datetime.fromtimestamp rounds a float's fraction to the microsecond, half to even: one that
# rounds to a whole million carries into the next second, which is then not its integer part.
_MICROSECONDS = 1_000_000

# The most timestamps a batch remembers as they came: those of a slow producer never repeat.
EXACT_MAX = 256

# What follows the seconds of timestamps read so far, and whether it means UTC, for every batch
# of the process: a producer's millisecond tails (".123Z") recur every second, and a lookup
# is cheaper than a regex match. At most TAILS_MAX of them.
TAILS_MAX = 4096
_utc_tails: dict[str, bool] = {}


class Stamps:
    """Stored timestamps, remembered for one batch: the votes of a batch were mostly cast in
    the same few seconds, and parsing a timestamp costs more than the rest of a vote.

    ``exact`` maps timestamps read so far, strings or numbers as they came, to their text ("" if
    unreadable), up to ``EXACT_MAX`` of them. Producers stamp votes to the second or the
    millisecond, so at any busy rate most of a batch's timestamps repeat one read already, and
    ``parse_all`` looks them up there first. One not seen yet shares the parse of the others of
    its second (``_seen``). Numbers equal across types (1 and 1.0) have the same text; a bool,
    equal to 0 or 1, is never a key."""

    def __init__(self) -> None:
        self.exact: dict[str | int | float, str] = {}
        self._seen: dict[str | int, str] = {}

    def text(self, value: object) -> str | None:
        """``_timestamp(value)``: the same answer, found once per second of time."""
        if type(value) is str:
            key: str | int = value
            # Past whole seconds (HH:MM:SS at [11:19]), a UTC tail (a fraction, Z, +00:00) can't
            # change the stored value. Only then: a shorter time ("08:00+01Z") would make [:19]
            # take an offset's digits for the seconds.
            if len(value) >= 19 and value[13] == ":" == value[16]:
                tail = value[19:]
                utc = _utc_tails.get(tail)
                if utc is None:
                    utc = _UTC_TAIL.fullmatch(tail) is not None
                    if len(_utc_tails) < TAILS_MAX:
                        _utc_tails[tail] = utc
                if utc:
                    key = value[:19]
        elif type(value) is int:
            key = value
        elif (
            type(value) is float
            and 0 <= value < 1e11
            and round(value % 1 * _MICROSECONDS) < _MICROSECONDS
        ):
            key = int(value)  # the stored value is truncated to the second
        else:
            return _timestamp(value)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = _timestamp(key) or ""
        if len(self.exact) < EXACT_MAX:
            self.exact[value] = found
        return found or None
