"""Opening hours and seasons, checked by hand-worked cases."""

from __future__ import annotations

from datetime import datetime

import pytest

from geoservice.hours import is_open, parse_opening_hours

# 2026-07-03 is a Friday; 2026-07-04 a Saturday; 2026-07-05 a Sunday.
FRI_1000 = datetime(2026, 7, 3, 10, 0)
FRI_2300 = datetime(2026, 7, 3, 23, 0)
SAT_0130 = datetime(2026, 7, 4, 1, 30)
SAT_0300 = datetime(2026, 7, 4, 3, 0)
SUN_1000 = datetime(2026, 7, 5, 10, 0)


@pytest.mark.parametrize(("hours", "season", "when", "expected"), [
    ("24/7", None, SAT_0300, True),
    ("Mo-Su 05:30-21:30", None, FRI_1000, True),
    ("Mo-Su 05:30-21:30", None, FRI_2300, False),
    ("Mo-Su 18:00-02:00", None, FRI_2300, True),
    ("Mo-Su 18:00-02:00", None, SAT_0130, True),   # Friday's evening runs past midnight
    ("Mo-Su 18:00-02:00", None, SAT_0300, False),
    ("Mo-Su 18:00-02:00", None, FRI_1000, False),
    ("Mo-Fr 08:00-12:00,14:00-18:00", None, FRI_1000, True),
    ("Mo-Fr 08:00-12:00,14:00-18:00", None, SUN_1000, False),
    ("Mo-Su 08:00-20:00; Su off", None, SUN_1000, False),
    ("Sa-Mo 09:00-11:00", None, SUN_1000, True),    # wrapping day range Sa,Su,Mo
    ("Fr 18:00-02:00", None, SAT_0130, True),
    ("Mo-Su 05:00-23:00", "06-01/09-15", FRI_1000, True),
    ("Mo-Su 05:00-23:00", "09-16/05-31", FRI_1000, False),   # season wraps the new year, July is outside
    ("Mo-Su 05:00-23:00", "12-01/02-28", datetime(2026, 1, 10, 10), True),
    (None, None, FRI_1000, None),
])
def test_is_open(hours, season, when, expected):
    assert is_open(hours, season, when) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("Mo-Xy 08:00-10:00", "unknown day"),
    ("Mo-Fr 8-10", "bad time range"),
    ("Mo-Fr 25:00-26:00", "hours 00-24"),
    ("Mo-Fr", "has no times"),
    ("", "empty opening hours"),
])
def test_bad_opening_hours_say_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        parse_opening_hours(text)
