"""The vocabularies of the data model: point kinds, amenities and street classes, with zh-CN and English labels.

This is the one place the labels live. The database enforces the same codes with CHECK constraints (created by
the migrations); changing a list here needs a migration that changes the constraint, and
``tests/test_schema.py`` fails when the two disagree.
"""

from __future__ import annotations

from typing import NamedTuple


class Term(NamedTuple):
    """One vocabulary entry: its code and its labels."""

    code: str
    zh: str
    en: str


POINT_KINDS: tuple[Term, ...] = (
    Term("kiosk", "城管服务岗亭", "Urban-management kiosk"),
    Term("rest_station", "便民服务点", "Rest station"),
    Term("vendor_point", "便民疏导点", "Vendor point"),
    Term("melon_point", "瓜农便民点", "Melon-farmer point"),
    Term("night_market", "夜市外摆点", "Night-market zone"),
    Term("job_board", "零工信息公示牌", "Odd-job notice board"),
    Term("parking", "便民停车场", "Public car park"),
    Term("toilet", "公厕", "Public toilet"),
)

AMENITIES: tuple[Term, ...] = (
    Term("drinking_water", "饮用水", "Drinking water"),
    Term("hot_water", "热水", "Hot water"),
    Term("umbrella", "雨伞", "Umbrella"),
    Term("tyre_pump", "打气筒", "Tyre pump"),
    Term("cooling_oil", "风油精", "Cooling oil"),
    Term("towel", "毛巾", "Towel"),
    Term("phone_charging", "手机充电", "Phone charging"),
    Term("first_aid", "急救箱", "First-aid kit"),
    Term("seating", "座椅", "Seating"),
    Term("shade", "遮阳", "Shade"),
    Term("overnight", "可过夜", "Overnight stay"),
    Term("tent", "帐篷", "Tent"),
    Term("power", "用电", "Power supply"),
    Term("toilet", "厕所", "Toilet"),
)

# OSM highway values a street segment may carry, most important first.
STREET_CLASSES: tuple[str, ...] = (
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "living_street",
    "service",
    "pedestrian",
    "footway",
    "path",
    "cycleway",
    "steps",
    "track",
)

POINT_STATUSES: tuple[str, ...] = ("open", "closed", "planned")

KIND_CODES = tuple(t.code for t in POINT_KINDS)
AMENITY_CODES = tuple(t.code for t in AMENITIES)

def label(code: str, lang: str = "zh") -> str:
    """The label of a kind or amenity code in ``lang`` ("zh" or "en"); the code itself if unknown."""
    for term in POINT_KINDS + AMENITIES:
        if term.code == code:
            return term.zh if lang == "zh" else term.en
    return code
