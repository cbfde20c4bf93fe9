"""The ``datetime`` parameter of OGC API – Features items (Core, /req/core/fc-time-definition): parsing and meaning.

Allowed forms (RFC 3339; a date-time must carry its offset, ``Z`` or ``±hh:mm``):

- an instant: ``2026-01-01T08:00:00Z`` (features whose time is exactly that) or a date ``2026-01-01`` (the whole
  UTC day);
- a closed interval ``start/end`` of those, e.g. ``2026-01-01T00:00:00Z/2026-02-01T00:00:00Z`` (both ends
  included; a date as the end includes that whole day);
- a half-bounded interval: ``../2026-01-01T00:00:00Z``, ``2026-01-01T00:00:00Z/..`` (an empty end, ``/..``'s
  older spelling, is also open).

Which time a feature has is :func:`temporal_property`: the record's last change, ``updated_at``, for every
collection whose table keeps it (all of ours do); a collection without one answers every item whatever
``datetime`` says, and its description says so. ``datetime=2026-01-01T00:00:00Z/..`` is then "what changed since":
what a client that keeps a copy asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from geoservice.catalogue import Table
from geoservice.errors import InvalidParameter

TEMPORAL_PROPERTY = "updated_at"
"""The property ``datetime`` compares with, where a collection has it."""

# Exactly the calendar's days, so that what the OpenAPI document declares is what is accepted (February 29th in
# leap years only: divisible by 4, and by 400 at the turn of a century); years 0001 to 9999.
_LEAP_YEAR = r"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_YEAR = r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
_DATE = (rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
         rf"|02-(?:0[1-9]|1\d|2[0-8]))|{_LEAP_YEAR}-02-29)")
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
_INSTANT = rf"{_DATE}(?:T{_TIME})?"
PATTERN = rf"^(?:{_INSTANT}|(?:{_INSTANT}|\.\.|)/(?:{_INSTANT}|\.\.|))$"
"""What the OpenAPI document declares; :func:`parse_datetime` also checks the calendar and the order of the ends."""
ALLOWED = ("an instant (2026-01-01T08:00:00Z, or a date 2026-01-01 for the whole UTC day) or an interval start/end "
           "with either end open as '..' (2026-01-01T00:00:00Z/2026-02-01T00:00:00Z, ../2026-01-01T00:00:00Z, "
           "2026-01-01T00:00:00Z/..); date-times need their offset (Z or +08:00)")


@dataclass(frozen=True)
class Interval:
    """Times from ``lower`` (included) to ``upper`` (included unless ``upper_open``); None is unbounded."""

    lower: datetime | None
    upper: datetime | None
    upper_open: bool = False

    def sql(self, column: str) -> tuple[str, dict]:
        """The condition on ``column`` and its parameters (``:dt_lower``, ``:dt_upper`` and their offsets).

        Each end is sent as its wall time and its UTC offset, and made a UTC time in SQL: RFC 3339 allows offsets
        up to ±23:59 and years down to 0001, which PostgreSQL refuses as a timestamptz literal (beyond ±15:59) or
        Python cannot turn into UTC (before year 1).
        """
        conditions, params = [], {}
        for name, bound, operator in (("dt_lower", self.lower, ">="),
                                      ("dt_upper", self.upper, "<" if self.upper_open else "<=")):
            if bound is not None:
                conditions.append(f"{column} {operator} (CAST(:{name} AS timestamp) "
                                  f"- make_interval(secs => :{name}_offset)) AT TIME ZONE 'UTC'")
                params[name] = bound.replace(tzinfo=None)
                params[f"{name}_offset"] = bound.utcoffset().total_seconds()
        # "../.." is every feature that has a time at all.
        return (" AND ".join(conditions) or f"{column} IS NOT NULL"), params


def _refuse(raw: str, why: str = "") -> InvalidParameter:
    return InvalidParameter(f"datetime must be {ALLOWED}; got {raw!r}{why}")


def _end(text: str, raw: str, *, upper: bool) -> tuple[datetime | None, bool]:
    """One end of an interval: (time, open above) — a date as the upper end reaches to the next midnight."""
    if text in ("", ".."):
        return None, False
    if not re.fullmatch(_INSTANT, text):
        raise _refuse(raw)
    try:
        if "T" not in text:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if not upper:
                return start, False
            # The last day of the calendar reaches to the end of time.
            return (None, False) if day == date.max else (start + timedelta(days=1), True)
        return datetime.fromisoformat(text), False
    except ValueError as exc:  # a day the month does not have
        raise _refuse(raw, f" ({exc})") from None


def parse_datetime(raw: str | None) -> Interval | None:
    """The interval ``raw`` names, None when absent; :class:`InvalidParameter` naming the forms otherwise."""
    if raw is None:
        return None
    if raw.count("/") > 1:
        raise _refuse(raw)
    if "/" not in raw:
        if raw in ("", ".."):
            raise _refuse(raw, " (an instant cannot be open)")
        lower, _ = _end(raw, raw, upper=False)
        upper, upper_open = _end(raw, raw, upper=True)
        return Interval(lower, upper, upper_open)
    start, end = raw.split("/")
    lower, _ = _end(start, raw, upper=False)
    upper, upper_open = _end(end, raw, upper=True)
    if lower is not None and upper is not None and (lower >= upper if upper_open else lower > upper):
        raise _refuse(raw, " (its start is after its end)")
    return Interval(lower, upper, upper_open)


def temporal_property(collection: Table) -> str | None:
    """The property ``datetime`` filters ``collection`` on, or None when it has no time (every item answers)."""
    names = {p.name for p in collection.properties}
    return TEMPORAL_PROPERTY if TEMPORAL_PROPERTY in names else None
