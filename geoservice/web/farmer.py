"""The farmer finder (/farmer): the nearest rest points for a melon farmer on a phone, Chinese first.

The template ``farmer.html`` holds the big button, the quick filters and an empty results list around the map;
``static/js/farmer.js`` does the rest in the browser: the browser's geolocation (or a tap on the map),
``/api/v1/nearest?mode=walk`` for the three nearest points, ``/api/v1/grids/at`` for the squad that looks after the
spot, and — offline — our own streets from ``/api/v1/layers/streets?bbox`` for the current view. No data is
inlined: the HTML is the same size for any city. The visible text starts in zh-CN, from ``geoservice.web.i18n``;
the script switches it to English in place.
"""

from __future__ import annotations

from geoservice.config import Settings
from geoservice.web.maps import render_page

# Every search asks for rest points (``geoservice.query``: a kiosk, rest station, vendor or melon-farmer point with
# water, seats, shade or a night's stay), not the nearest notice board or car park.
BASE_QUERY = {"mode": "walk", "rest": "true"}
# Quick filters: (code, message key, query parameters). "Overnight" means a place to sleep that has room tonight.
# Most narrow the rest points; "toilet" widens the search to any place with a toilet, public toilets included.
FILTERS: tuple[tuple[str, str, dict[str, str | list[str]]], ...] = (
    ("overnight", "filter_overnight", {"vacancy": "true", "amenity": ["overnight"]}),
    ("drinking_water", "filter_water", {"amenity": ["drinking_water"]}),
    ("phone_charging", "filter_charging", {"amenity": ["phone_charging"]}),
    ("toilet", "filter_toilet", {"amenity": ["toilet"], "rest": "false"}),
    ("open_now", "filter_open_now", {"open_now": "true"}),
)
# Filters pressed when the page opens: a farmer looks for a place that is open now.
DEFAULT_FILTERS = ("open_now",)
RESULTS = 3


def farmer_page(settings: Settings) -> str:
    """The HTML of the farmer finder (/farmer)."""
    return render_page("farmer.html", settings, page="farmer", zoom=15, config={
        "base_query": BASE_QUERY,
        "filters": {code: params for code, _, params in FILTERS},
        "results": RESULTS,
    }, filters=FILTERS, default_filters=DEFAULT_FILTERS)
