"""Opening hours and seasons: is a point open at a given moment (in the city's time zone)?

Hours use the common subset of OpenStreetMap's ``opening_hours`` syntax that the bureau's data needs:

- ``24/7``
- rules separated by ``;``, each ``[days] ranges`` — days ``Mo``..``Su`` as lists and ranges (``Mo-Fr,Su``), ranges
  ``HH:MM-HH:MM`` separated by ``,``; an end before the start runs past midnight (``18:00-02:00``); a rule of
  days followed by ``off`` closes those days. A later rule for a day replaces earlier ones, as in OSM.

A season is ``MM-DD/MM-DD`` (inclusive, may wrap the new year); outside its season a point is closed.
Anything else is refused with a ``ValueError`` that says what is allowed (importers report it per row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_TIME_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_SEASON = re.compile(r"^(\d{2})-(\d{2})/(\d{2})-(\d{2})$")
SYNTAX_HELP = "expected '24/7' or rules like 'Mo-Fr 08:00-18:00; Sa,Su 09:00-12:00' or 'Mo-Su 18:00-02:00'"


@dataclass(frozen=True)
class Rule:
    """The opening ranges (minutes since midnight; end may exceed 1440) on a set of weekdays (0 = Monday)."""

    days: frozenset[int]
    ranges: tuple[tuple[int, int], ...]


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ValueError(f"unknown day(s) {part!r}: use {', '.join(DAYS)}, ranges like Mo-Fr, lists like Sa,Su")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
    return frozenset(days)


def _parse_ranges(text: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in text.split(","):
        match = _TIME_RANGE.match(part.strip())
        if not match:
            raise ValueError(f"bad time range {part!r}: use HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"bad time range {part!r}: hours 00-24, minutes 00-59")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        ranges.append((start, end if end > start else end + 24 * 60))
    return tuple(ranges)


def parse_opening_hours(text: str) -> tuple[Rule, ...]:
    """Parse ``text``; raises ValueError naming what is wrong and what is allowed."""
    text = text.strip()
    if text == "24/7":
        return (Rule(frozenset(range(7)), ((0, 24 * 60),)),)
    rules = []
    for raw in filter(None, (r.strip() for r in text.split(";"))):
        head, _, tail = raw.partition(" ")
        if head[:2] in DAYS:
            days, body = _parse_days(head), tail.strip()
        else:
            days, body = frozenset(range(7)), raw
        if not body:
            raise ValueError(f"rule {raw!r} has no times; {SYNTAX_HELP}")
        rules.append(Rule(days, () if body == "off" else _parse_ranges(body)))
    if not rules:
        raise ValueError(f"empty opening hours; {SYNTAX_HELP}")
    return tuple(rules)


def parse_season(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``MM-DD/MM-DD`` → ((month, day), (month, day)); raises ValueError otherwise."""
    match = _SEASON.match(text.strip())
    if not match:
        raise ValueError(f"bad season {text!r}: use MM-DD/MM-DD, e.g. 06-01/09-15")
    m1, d1, m2, d2 = map(int, match.groups())
    for month, day in ((m1, d1), (m2, d2)):
        if not (1 <= month <= 12 and 1 <= day <= 31):
            raise ValueError(f"bad season {text!r}: months 01-12, days 01-31")
    return (m1, d1), (m2, d2)


def in_season(season: str | None, when: datetime) -> bool:
    """Whether ``when`` falls in ``season`` (always, when there is no season)."""
    if not season:
        return True
    start, end = parse_season(season)
    today = (when.month, when.day)
    return start <= today <= end if start <= end else today >= start or today <= end


def _day_rules(rules: tuple[Rule, ...], weekday: int) -> tuple[tuple[int, int], ...] | None:
    """The ranges in force on ``weekday`` (the last rule naming it wins); None if no rule names it."""
    ranges = None
    for rule in rules:
        if weekday in rule.days:
            ranges = rule.ranges
    return ranges


def is_open(opening_hours: str | None, season: str | None, when: datetime) -> bool | None:
    """Whether a point is open at ``when`` (a local time); None when its hours are unknown.

    A range past midnight that started the day before counts (``Fr 18:00-02:00`` is open Saturday 01:00).
    """
    if not opening_hours:
        return None
    if not in_season(season, when):
        return False
    rules = parse_opening_hours(opening_hours)
    minute = when.hour * 60 + when.minute
    today = _day_rules(rules, when.weekday()) or ()
    yesterday = _day_rules(rules, (when.weekday() - 1) % 7) or ()
    return any(start <= minute < end for start, end in today) or any(
        minute + 24 * 60 < end for _start, end in yesterday)


def local_now(timezone: str) -> datetime:
    """The current time in ``timezone`` (e.g. Asia/Shanghai)."""
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(timezone))


__all__ = ["DAYS", "Rule", "in_season", "is_open", "local_now", "parse_opening_hours", "parse_season"]
